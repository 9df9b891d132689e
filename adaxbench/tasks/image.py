"""Image classification on in-memory tensors (MNIST, Fashion-MNIST, CIFAR-10/100).

The whole dataset sits on the device as uint8; a batch is an index slice of a seeded
per-epoch permutation, cropped/flipped, converted to float in [0, 1], colour-jittered and
normalised on the device.  No DataLoader, no per-sample Python.  The protocol keys of a
task config (see docs/protocols.md for each task's values and their sources):

- ``augment``: random crop (``crop_padding`` px of zero padding) + horizontal flip, then
  ``color_jitter`` if set; training batches only.
- ``color_jitter``: null, or torchvision ColorJitter's ``brightness``/``contrast``/``saturation``.
- ``normalize``: ``dataset`` (per-channel mean/std of the training images, the default),
  ``none`` (inputs stay in [0, 1]) or ``{mean: [...], std: [...]}`` (published constants).
- ``drop_last``: drop the last partial batch of an epoch (default true, as DeepOBS) or keep
  it (as a torch DataLoader with ``drop_last=False``).
- ``valid_size``: training examples held out as the validation split (0: none).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .augment import color_jitter, jitter_ranges, random_crop_flip
from .base import TaskError
from .datasets import load_dataset
from .models import build_model, l2_parameters
from .user import build_user_model

# The validation split is drawn once with this fixed seed, so every run (whatever its
# seed) holds out the same examples and validation numbers are comparable across runs.
SPLIT_SEED = 20200420


class ImageClassificationTask:
    has_accuracy = True

    def __init__(self, cfg: Mapping[str, Any], data_cfg: Mapping[str, Any], device: torch.device,
                 train_limit: int | None = None, channels_last: bool = False, eval_limit: int | None = None,
                 eval_batch_size: int = 1000):
        self.name = cfg["name"]
        self.device = device
        self.cfg = cfg
        arrays = load_dataset(cfg["dataset"], data_cfg.get("root", "data"), bool(data_cfg.get("download", False)))
        self.source = arrays.source
        self.num_classes = arrays.num_classes

        n = arrays.train_x.shape[0]
        valid_size = int(cfg.get("valid_size", 0) or 0)
        if not 0 <= valid_size < n:
            raise TaskError(f"task.valid_size={valid_size} must be in [0, {n}) for {cfg['dataset']}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        valid_idx, train_idx = order[:valid_size].sort().values, order[valid_size:].sort().values
        if train_limit is not None:
            train_idx = train_idx[: int(train_limit)]

        def put(x: torch.Tensor) -> torch.Tensor:
            return x.to(device, non_blocking=True)

        self.train_x, self.train_y = put(arrays.train_x[train_idx]), put(arrays.train_y[train_idx])
        self.valid_x, self.valid_y = put(arrays.train_x[valid_idx]), put(arrays.train_y[valid_idx])
        self.test_x, self.test_y = put(arrays.test_x), put(arrays.test_y)
        eval_size = int(cfg.get("train_eval_size", 10000) or 0)
        if eval_limit is not None:  # smoke runs: evaluate on the first N examples of each split
            eval_size = min(eval_size, eval_limit)
            self.valid_x, self.valid_y = self.valid_x[:eval_limit], self.valid_y[:eval_limit]
            self.test_x, self.test_y = self.test_x[:eval_limit], self.test_y[:eval_limit]
        self.train_eval = (self.train_x[:eval_size], self.train_y[:eval_size])

        self.num_train = self.train_x.shape[0]
        self.batch_size = min(int(cfg["batch_size"]), self.num_train)
        # DeepOBS drops the last partial batch (every step sees batch_size examples); a plain
        # DataLoader, as in the AdaX authors' code, keeps it.
        self.drop_last = cfg.get("drop_last", True)
        self.augment = cfg.get("augment", False)
        self.padding = cfg.get("crop_padding", 4)
        self.steps_per_epoch = steps_per_epoch(self.num_train, self.batch_size, self.drop_last)
        self.jitter = _jitter_cfg(cfg.get("color_jitter"), arrays.train_x.shape[1]) if self.augment else None
        self.l2_reg = float(cfg.get("l2_reg", 0.0) or 0.0)
        self.eval_batch_size = int(eval_batch_size)
        self.channels_last = channels_last
        mean, std = normalization(cfg.get("normalize", "dataset"), arrays)
        shape = (1, arrays.train_x.shape[1], 1, 1)
        self.mean = None if mean is None else torch.tensor(mean, device=device, dtype=torch.float32).view(shape)
        self.std = None if std is None else torch.tensor(std, device=device, dtype=torch.float32).view(shape)
        if self.jitter is not None:
            self.jitter = self.jitter.to(device)
        self.in_channels, self.image_size = arrays.train_x.shape[1], arrays.train_x.shape[-1]

    def model(self) -> nn.Module:
        spec = self.cfg["model"]  # one of MODELS, or {_target_: the user's nn.Module}
        build = build_model if isinstance(spec, str) else build_user_model
        model = build(spec, self.num_classes, self.in_channels, self.image_size).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _inputs(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.float().div_(255.0)
        if generator is not None and self.jitter is not None:
            x = color_jitter(x, self.jitter, generator)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        # Draws from ``generator``, in this order: the epoch's permutation, then per batch the
        # crop offsets and flips (random_crop_flip), then the jitter (draw_jitter).
        perm = torch.randperm(self.num_train, device=self.device, generator=generator)
        for i in range(self.steps_per_epoch):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.train_x[idx]
            if self.augment:
                x = random_crop_flip(x, self.padding, generator)
            yield self._inputs(x, generator if self.augment else None), self.train_y[idx]

    def stacked_batches(self, epoch: int, generators: list[torch.Generator]) -> Iterator[Any] | None:
        """Packed members' batches, images (members, batch, C, H, W) and labels (members, batch):
        member k's in the order ``batches`` draws from ``generators[k]``, cut for all members
        with one gather a step. None where each member draws per batch too (augmentation) or
        channels_last (4-d only): the pack then stacks the members' own ``batches``."""
        if self.augment or self.channels_last:
            return None
        perms = torch.stack([torch.randperm(self.num_train, device=self.device, generator=g) for g in generators])
        return ((self._inputs(self.train_x[idx]), self.train_y[idx])
                for idx in perms[:, :self.steps_per_epoch * self.batch_size].split(self.batch_size, dim=1))

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        if self.l2_reg:
            # DeepOBS's regulariser: l2_reg * sum ||w||^2 / 2 over the weights it names. The weights
            # are looked up in `model` (not cached) and normed one by one, so that packed runs can
            # call this under torch.func.vmap; on CPU _foreach_norm did exactly this.
            norms = [torch.linalg.vector_norm(w) for w in l2_parameters(model)]
            loss = loss + 0.5 * self.l2_reg * torch.stack(norms).square().sum()
        return loss, (logits.argmax(1) == y).sum()

    def after_step(self, model: nn.Module) -> None:
        pass

    @torch.no_grad()
    def _measure(self, model: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, float]:
        if xs.shape[0] == 0:
            return {}
        total_loss = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for i in range(0, xs.shape[0], self.eval_batch_size):
            logits = model(self._inputs(xs[i:i + self.eval_batch_size])).float()
            y = ys[i:i + self.eval_batch_size]
            total_loss += F.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
        n = xs.shape[0]
        # Evaluation loss is the data loss alone (no regulariser), comparable across tasks.
        return {"loss": total_loss.item() / n, "accuracy": correct.item() / n}

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        was_training = model.training
        model.eval()
        out = {"train": self._measure(model, *self.train_eval),
               "valid": self._measure(model, self.valid_x, self.valid_y),
               "test": self._measure(model, self.test_x, self.test_y)}
        model.train(was_training)
        return {split: m for split, m in out.items() if m}

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        return {}


def steps_per_epoch(num_train: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimizer steps in one epoch of ``num_train`` examples."""
    return num_train // batch_size if drop_last else math.ceil(num_train / batch_size)


def normalization(spec: Any, arrays) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(mean, std) per channel for ``task.normalize``: ``dataset`` -> the training images'
    own statistics, ``none``/null -> no normalisation, ``{mean, std}`` -> those constants."""
    channels = arrays.train_x.shape[1]
    if spec is None or spec == "none":
        return None, None
    if spec == "dataset":
        return tuple(arrays.mean), tuple(arrays.std)
    if isinstance(spec, Mapping) and set(spec) == {"mean", "std"}:
        mean, std = spec["mean"], spec["std"]
        ok = all(isinstance(v, Sequence) and not isinstance(v, str) and len(v) == channels
                 and all(isinstance(e, (int, float)) for e in v) for v in (mean, std))
        if ok and all(s > 0 for s in std):
            return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    raise TaskError(f"task.normalize must be 'dataset', 'none' or {{mean: [...], std: [...]}} with {channels} "
                    f"number(s) each (std > 0), got {spec!r}")


def _jitter_cfg(spec: Any, channels: int) -> torch.Tensor | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not set(spec) <= {"brightness", "contrast", "saturation"}:
        raise TaskError(f"task.color_jitter must be null or a mapping with keys brightness, contrast, "
                        f"saturation (torchvision ColorJitter's arguments), got {spec!r}")
    if channels != 3:
        raise TaskError(f"task.color_jitter needs RGB images; this dataset has {channels} channel(s)")
    try:
        return jitter_ranges(**{k: (list(v) if isinstance(v, Sequence) else v) for k, v in spec.items()})
    except (TypeError, ValueError) as e:
        raise TaskError(f"task.color_jitter: {e}") from None
