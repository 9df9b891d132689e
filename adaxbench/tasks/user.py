"""Users' own tasks, models and datasets, named by ``_target_``.

Three ways in, from most to least work for the user:

* ``task=custom task._target_=mypkg.MyTask``: a whole task implementing the protocol of
  ``adaxbench.tasks.base.Task`` (model, batches, loss, evaluate).
* ``task.model={_target_:mypkg.Net}`` on an image task: our data pipeline, the user's
  ``nn.Module``.  Names (``mlp``, ``resnet20``...) keep working.
* ``task.dataset={_target_:torchvision.datasets.KMNIST}`` or ``task.dataset=/path/data.pt``
  (``task=custom_image`` starts from an image task with both left open): the user's data,
  decoded once into uint8 tensors and then handled exactly like ours (on the device,
  batches by index, augmentation on the device).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .base import TaskError

# Keys of a task config the runner reads itself; every other key goes to the task's constructor.
TASK_META = ("_target_", "name", "kind", "epochs", "target", "lr_schedule")
# What the runner passes to a task's constructor when it declares a parameter of that name.
TASK_CONTEXT = ("device", "seed", "data_root", "download", "train_limit", "eval_limit", "eval_batch_size",
                "channels_last")
# What the runner passes to a model's constructor when it declares a parameter of that name.
MODEL_CONTEXT = ("num_classes", "in_channels", "image_size")
# Keys of a dataset config that are ours, not the dataset class's.
DATASET_META = ("_target_", "train_kwargs", "test_kwargs", "num_classes")
REQUIRED = ("steps_per_epoch", "batch_size", "model", "batches", "loss", "evaluate")


def _plain(cfg: Any) -> Any:
    """A config node as plain Python (OmegaConf containers resolved), as constructors expect."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


# ------------------------------------------------------------------------------- own tasks


def check_task(cfg: Mapping[str, Any]) -> None:
    """Up-front check of ``task._target_``: importable, a class or factory, arguments bind."""
    from ..plugins import arguments, check_arguments, locate
    from ..errors import ConfigError

    target = locate(cfg.get("_target_"), "task")
    if not callable(target):
        raise ConfigError(f"task._target_={cfg['_target_']!r} is not a class or function that builds a task")
    lacking = [m for m in ("batches", "loss", "evaluate") if isinstance(target, type) and not hasattr(target, m)]
    if lacking:  # a class must define the protocol's methods (its attributes may be set in __init__)
        raise ConfigError(f"task._target_={cfg['_target_']!r} is not a task class: it lacks {', '.join(lacking)} "
                          "of the task protocol (see adaxbench.tasks.base.Task)")
    check_arguments(target, arguments(cfg, TASK_META), "task", context=TASK_CONTEXT)


class UserTask:
    """Wraps a user's task object: checks the protocol once, supplies the optional parts
    (``after_step``, ``log_metrics``, ``has_accuracy``, ``name``, ``device``)."""

    def __init__(self, inner: Any, name: str, device: torch.device):
        missing = [a for a in REQUIRED if not hasattr(inner, a)]
        if missing:
            raise TaskError(f"task {type(inner).__qualname__} lacks {', '.join(missing)} of the task protocol "
                            "(see adaxbench.tasks.base.Task)")
        for attr in ("steps_per_epoch", "batch_size"):
            value = getattr(inner, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskError(f"task {type(inner).__qualname__}.{attr} must be an integer >= 1, got {value!r}")
        self.inner = inner
        self.name = getattr(inner, "name", None) or name
        self.device = getattr(inner, "device", device)
        self.steps_per_epoch = inner.steps_per_epoch
        self.batch_size = inner.batch_size
        self.has_accuracy = bool(getattr(inner, "has_accuracy", False))
        self.source = getattr(inner, "source", None)

    def model(self) -> nn.Module:
        model = self.inner.model()
        if not isinstance(model, nn.Module):
            raise TaskError(f"task {type(self.inner).__qualname__}.model() must return an nn.Module, "
                            f"got {type(model).__name__}")
        return model

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        return self.inner.batches(epoch, generator)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.inner.loss(model, batch)
        return out if isinstance(out, tuple) else (out, None)

    def after_step(self, model: nn.Module) -> None:
        if hasattr(self.inner, "after_step"):
            self.inner.after_step(model)

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return self.inner.evaluate(model)

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        return self.inner.log_metrics(model) if hasattr(self.inner, "log_metrics") else {}


def build_user_task(cfg: Mapping[str, Any], data_cfg: Mapping[str, Any], device: torch.device, seed: int,
                    **context: Any) -> UserTask:
    """Construct ``task._target_`` with the config's keys and the context it declares."""
    from ..plugins import arguments, call_with_context, locate

    cfg, data_cfg = _plain(cfg), _plain(data_cfg)
    target = locate(cfg["_target_"], "task")
    context = {"device": device, "seed": seed, "data_root": str(data_cfg.get("root", "data")),
               "download": bool(data_cfg.get("download", False)), **context}
    inner = call_with_context(target, arguments(cfg, TASK_META), context)
    return UserTask(inner, str(cfg.get("name") or getattr(target, "__name__", "task")), device)


# ------------------------------------------------------------------------------ own models


def check_image_parts(cfg: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> None:
    """Up-front check of an image task's own model (``task.model._target_``) and dataset
    (``task.dataset._target_`` or a ``torch.save`` file)."""
    from ..plugins import arguments, check_arguments, locate
    from ..errors import ConfigError

    model, dataset = cfg.get("model"), cfg.get("dataset")
    if isinstance(model, Mapping) and model.get("_target_") == "???":
        from .models import MODELS
        raise ConfigError(f"task.model is missing: give task.model=NAME ({', '.join(MODELS)}) or "
                          "task.model._target_=mypkg.Net (your nn.Module)")
    if isinstance(dataset, Mapping) and dataset.get("_target_") == "???":
        raise ConfigError("task.dataset is missing: give task.dataset=PATH (a torch.save file of train_x, train_y, "
                          "test_x, test_y) or task.dataset._target_=a torchvision-style dataset class")
    if isinstance(model, Mapping):
        target = locate(model.get("_target_"), "task.model")
        if not callable(target):
            raise ConfigError(f"task.model._target_={model['_target_']!r} is not a class or function")
        check_arguments(target, arguments(model), "task.model", context=MODEL_CONTEXT)
    if isinstance(dataset, Mapping):
        target = locate(dataset.get("_target_"), "task.dataset")
        if not callable(target):
            raise ConfigError(f"task.dataset._target_={dataset['_target_']!r} is not a dataset class")
        for split in ("train", "test"):
            kwargs = _dataset_kwargs(target, dataset, split, data_cfg)
            check_arguments(target, kwargs, "task.dataset")
        if not (_split_argument(target) or (dataset.get("train_kwargs") and dataset.get("test_kwargs"))):
            raise ConfigError(f"task.dataset: {dataset['_target_']} takes neither train= nor split=; give "
                              "+task.dataset.train_kwargs={...} and +task.dataset.test_kwargs={...} to tell the "
                              "splits apart")
    elif isinstance(dataset, str) and _is_file_path(dataset) and not Path(dataset).expanduser().is_file():
        raise ConfigError(f"task.dataset={dataset}: no such file (expected a torch.save file of "
                          "train_x, train_y, test_x, test_y)")
    elif isinstance(dataset, str) and _is_file_path(dataset) and not _looks_like_torch_save(Path(dataset).expanduser()):
        raise ConfigError(f"task.dataset={dataset} is not a readable torch.save file (neither the zip archive nor "
                          "the legacy pickle torch.save writes)")


def _looks_like_torch_save(path: Path) -> bool:
    """The first bytes of what ``torch.save`` writes: a zip archive, or (before torch 1.6, or with
    ``_use_new_zipfile_serialization=False``) a pickle of protocol 2 or later.  Cheap enough to
    check before the run dir exists; the full load happens in the run."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(2)
        return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80 and head[1] >= 2)
    except OSError:
        return False


def build_user_model(cfg: Mapping[str, Any], num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The user's ``nn.Module`` from ``task.model``'s ``_target_`` and keys, given the data's
    shape where the constructor asks for it (``num_classes``, ``in_channels``, ``image_size``)."""
    from ..plugins import arguments, call_with_context, locate

    cfg = _plain(cfg)
    target = locate(cfg.get("_target_"), "task.model")
    model = call_with_context(target, arguments(cfg), {"num_classes": num_classes, "in_channels": in_channels,
                                                       "image_size": image_size})
    if not isinstance(model, nn.Module):
        raise TaskError(f"task.model._target_={cfg['_target_']!r} built a {type(model).__name__}, not an nn.Module")
    return model


# ---------------------------------------------------------------------------- own datasets


def _is_file_path(name: str) -> bool:
    return os.sep in name or name.endswith((".pt", ".pth"))


def is_user_dataset(spec: Any) -> bool:
    """Whether ``task.dataset`` names a user's dataset (a mapping or a file path), not ours."""
    return isinstance(spec, Mapping) or (isinstance(spec, str) and _is_file_path(spec))


def _split_argument(cls: Any) -> str | None:
    from ..plugins import accepts
    return "train" if accepts(cls, "train") else "split" if accepts(cls, "split") else None


def _dataset_kwargs(cls: Any, cfg: Mapping[str, Any], split: str, data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    from ..plugins import accepts, arguments

    kwargs = arguments(cfg, DATASET_META)
    which = _split_argument(cls)
    if which == "train":
        kwargs.setdefault("train", split == "train")
    elif which == "split":
        kwargs.setdefault("split", split)
    if accepts(cls, "root"):
        kwargs.setdefault("root", str(Path(str(data_cfg.get("root", "data"))).expanduser()))
    if accepts(cls, "download"):
        kwargs.setdefault("download", bool(data_cfg.get("download", False)))
    kwargs.update(dict(cfg.get(f"{split}_kwargs") or {}))
    return kwargs


def _as_images(x: Any, what: str) -> torch.Tensor:
    """uint8 [N, C, H, W] from the layouts datasets use: [N, H, W], [N, C, H, W], [N, H, W, C]."""
    import numpy as np

    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TaskError(f"{what}: expected a tensor of images, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TaskError(f"{what}: images must be uint8 (0..255), got {x.dtype}; "
                        "save (x * 255).round().to(torch.uint8)")
    if x.ndim == 3:
        return x.unsqueeze(1).contiguous()
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    if x.ndim == 4:
        return x.contiguous()
    raise TaskError(f"{what}: images must be [N, H, W], [N, C, H, W] or [N, H, W, C], got shape {tuple(x.shape)}")


def _labels(y: Any, what: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.ndim != 1:
        raise TaskError(f"{what}: labels must be a 1-d integer tensor, got {y.dtype} of shape {tuple(y.shape)}")
    return y.long()


def _decode(ds: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All of a torchvision-style dataset as (uint8 images, labels), decoded once.

    Datasets that keep their pixels in ``.data`` (MNIST, CIFAR...) are taken whole, after
    checking that the first example reads back identically; others are read item by item
    (PIL image or uint8 tensor, label), once, at load time.
    """
    from torchvision.transforms.functional import pil_to_tensor

    def item(i: int) -> tuple[torch.Tensor, int]:
        img, label = ds[i][:2]
        if not isinstance(img, torch.Tensor):
            img = pil_to_tensor(img)
        return _as_images(img.unsqueeze(0), what)[0], int(label)

    n = len(ds)
    if n == 0:
        raise TaskError(f"{what} is empty")
    data, targets = getattr(ds, "data", None), getattr(ds, "targets", getattr(ds, "labels", None))
    if data is not None and targets is not None and len(data) == n and len(targets) == n \
            and getattr(ds, "transform", None) is None:
        try:
            x, y = _as_images(data, what), _labels(targets, what)
            first, label = item(0)
            if torch.equal(x[0], first) and int(y[0]) == label:
                return x, y
        except (TaskError, TypeError, ValueError):
            pass  # an unusual layout: read item by item below
    pairs = [item(i) for i in range(n)]
    shapes = {tuple(p[0].shape) for p in pairs}
    if len(shapes) != 1:
        raise TaskError(f"{what}: images differ in shape ({', '.join(map(str, sorted(shapes)[:3]))}...); "
                        "resize them to one shape")
    return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs], dtype=torch.long)


def load_user_dataset(spec: Any, root: str | os.PathLike, download: bool = False):
    """``(train_x, train_y, test_x, test_y, num_classes, source)`` from a dataset class config
    (``{_target_: ..., **kwargs}``) or a ``torch.save`` file holding a dict with ``train_x,
    train_y, test_x, test_y`` (optionally ``num_classes``); ``datasets.load_dataset`` makes
    them the ``ImageArrays`` of ours."""
    spec = _plain(spec)
    if isinstance(spec, Mapping):
        from ..plugins import locate

        cls = locate(spec.get("_target_"), "task.dataset")
        data_cfg = {"root": root, "download": download}
        parts = {}
        for split in ("train", "test"):
            try:
                ds = cls(**_dataset_kwargs(cls, spec, split, data_cfg))
            except (RuntimeError, OSError, ValueError, TypeError) as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise TaskError(f"task.dataset {spec['_target_']} ({split}) cannot be loaded: {reason}") from None
            parts[split] = _decode(ds, f"task.dataset {spec['_target_']} ({split})")
            classes = getattr(ds, "classes", None)
        source = f"{spec['_target_']} ({root})"
    else:
        path = Path(str(spec)).expanduser()
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise TaskError(f"task.dataset={spec}: no such file") from None
        except Exception as e:
            raise TaskError(f"task.dataset={spec} is not a readable torch.save file "
                            f"({(str(e).splitlines() or [type(e).__name__])[0]})") from None
        keys = ("train_x", "train_y", "test_x", "test_y")
        if not isinstance(blob, Mapping) or any(k not in blob for k in keys):
            raise TaskError(f"task.dataset={spec} must hold a dict with keys {', '.join(keys)}")
        parts = {s: (_as_images(blob[f"{s}_x"], f"{spec}: {s}_x"), _labels(blob[f"{s}_y"], f"{spec}: {s}_y"))
                 for s in ("train", "test")}
        classes = None
        spec = {"num_classes": blob.get("num_classes")}
        source = str(path.resolve())
    (train_x, train_y), (test_x, test_y) = parts["train"], parts["test"]
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if len(x) != len(y):
            raise TaskError(f"task.dataset: {split} has {len(x)} images but {len(y)} labels")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise TaskError(f"task.dataset: train images {tuple(train_x.shape[1:])} and test images "
                        f"{tuple(test_x.shape[1:])} differ in shape")
    num_classes = spec.get("num_classes") or (len(classes) if classes else None) or \
        int(max(train_y.max(), test_y.max() if len(test_y) else 0)) + 1
    return train_x, train_y, test_x, test_y, int(num_classes), source
