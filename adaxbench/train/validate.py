"""Check a composed config before any data is read or any step is taken: ``check_config``.

The runner, the packed launcher, the Python API and ``adaxbench run``'s preflight (on every job
of a sweep before the first starts) all call it.  Every problem becomes a ``ConfigError``, one
line naming the key, what was given and what is accepted.  Keys, types and ranges are declared
once, in the schema (``schema.py``); ``check_schema`` and ``check_value`` apply them.  The
optimizer is also constructed on a dummy parameter, so its own argument checks speak here too.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import os
import re
import tempfile
import typing
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import ConfigError, first_line, not_a_key
from ..plugins import locate
from . import schema as S
from . import threads
from .optimizer import BUILTIN_OPTIMIZER_MODULES, needs_closure, needs_create_graph
from .schema import MAX_SEED

# Keys of the optimizer config that are not constructor arguments: bookkeeping, and the switches
# optimizer.allow_extra (pass keys a class takes only through **kwargs) and optimizer.create_graph
# (backward with create_graph=True for second-order optimizers; null = detect).
OPTIMIZER_META = ("name", "_target_", "allow_extra", "create_graph")
# A key an optimizer config leaves at ??? (configs/optimizer/custom.yaml's lr): the class's default.
UNSET = "???"


def _plain(cfg: Any) -> Any:
    """OmegaConf containers as plain dicts/lists (so list checks see lists)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # a broken interpolation, e.g. ${oc.env:...} typo
            raise ConfigError(f"config cannot be resolved: {first_line(e)}") from None
    return cfg


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# ------------------------------------------------------------------ values (one rule vocabulary)

def accepts(kind: Any, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = True, choices: tuple | None = None, null: bool = False, listed: bool = False,
            length: int | None = None, **_: Any) -> str:
    """What a value of ``kind`` (a list of them where ``listed``) may be under these rules, in a message's words."""
    if kind is bool:
        what = "true or false"
    elif choices is not None:
        what = f"one of {', '.join(map(str, choices))}"
    elif kind not in (int, float):
        what = "a string" if kind is str else "a value"
    elif kind is int:
        what = "an integer" + ("" if low is None else f" >= {low}")
    elif low is not None and high is not None:
        what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    else:
        what = "a number" + ("" if low is None else f" {'>' if low_open else '>='} {low:g}")
    if listed or length is not None:
        each = what.replace("a number", "numbers").replace("an integer", "integers")
        what = f"a list of {'two ' if length == 2 else ''}{each}"
    return what + (" or null" if null else "")


def _in_range(v: float, low: float | None = None, high: float | None = None, low_open: bool = False,
              high_open: bool = True, **_: Any) -> bool:
    return (low is None or v > low or (v == low and not low_open)) and \
        (high is None or v < high or (v == high and not high_open))


def check_value(key: str, v: Any, kind: Any = float, *, says: str | None = None, listed: bool = False,
                length: int | None = None, **rules: Any) -> None:
    """One value against the rules of a schema field (``schema.checked``) or of a hyperparameter
    (``schema.HYPERPARAMETERS``); ``says`` names what is accepted in place of the derived words."""
    try:
        if v is None and rules.get("null"):
            return
        if listed or length is not None:
            if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length):
                raise ConfigError(f"{key} must be {accepts(kind, listed=True, length=length, **rules)}, got {v!r}")
            for i, item in enumerate(v):
                check_value(f"{key}[{i}]", item, kind, **rules)
            return
        what = accepts(kind, **rules)
        if kind is bool or "choices" in rules:
            ok = isinstance(v, bool) if kind is bool else v in rules["choices"]
        elif "pattern" in rules:
            ok = isinstance(v, str) and re.fullmatch(rules["pattern"], v) is not None
        elif kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool) and _in_range(v, **rules)
        else:
            if _is_number(v) and not math.isfinite(v):
                raise ConfigError(f"{key} must be a finite {what[2:]}, got {v!r}")
            ok = _is_number(v) and _in_range(float(v), **rules)
        if not ok:
            raise ConfigError(f"{key} must be {what}, got {v!r}")
    except ConfigError:
        if says is None:
            raise
        raise ConfigError(f"{key} must be {says}, got {v!r}") from None


def _finite_numbers(key: str, v: Any) -> None:
    """A user's optimizer's values: every number finite (lists too)."""
    if isinstance(v, (list, tuple)):
        for i, item in enumerate(v):
            _finite_numbers(f"{key}[{i}]", item)
    elif _is_number(v):
        check_value(key, v)


def _argument(key: str, value: Any) -> Any:
    """A config value as a constructor argument: lists become tuples (torch's betas), and a
    mapping with ``_target_`` is instantiated by Hydra (e.g. SAM's base optimizer class:
    ``+optimizer.base_optimizer._target_=hydra.utils.get_class +optimizer.base_optimizer.path=torch.optim.SGD``)."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, Mapping) and "_target_" in value:
        from hydra.utils import instantiate
        try:
            return instantiate(dict(value))
        except Exception as e:
            cause = e.__cause__ or e
            raise ConfigError(f"{key}: {value['_target_']} cannot be instantiated: "
                              f"{first_line(cause)}") from None
    return value


def optimizer_class(opt_cfg: Mapping[str, Any]) -> type:
    """The optimizer class ``optimizer._target_`` names (a ``torch.optim.Optimizer`` subclass)."""
    target = opt_cfg.get("_target_")
    if target in (None, "???", "") or not isinstance(target, str):
        name = opt_cfg.get("name")
        which = f"optimizer {name!r}" if name else "this optimizer config"
        raise ConfigError(f"optimizer._target_ is not set ({which}); give the class, e.g. "
                          "optimizer=custom optimizer._target_=torch.optim.SGD (any torch.optim.Optimizer subclass)")
    cls = locate(target, "optimizer")  # the one target policy
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer._target_={target!r} is not a torch.optim.Optimizer subclass")
    return cls


@functools.lru_cache(maxsize=1)
def shipped_optimizers() -> dict[str, str]:
    """Name -> class of the optimizer configs shipped in configs/optimizer/."""
    from importlib import resources

    out = {}
    for f in resources.files("adaxbench.configs").joinpath("optimizer").iterdir():
        if f.name.endswith(".yaml"):
            c = OmegaConf.create(f.read_text())
            if isinstance(c.get("name"), str) and c.get("_target_", "???") != "???":
                out[c.name] = c._target_
    return out


def optimizer_kwargs(opt_cfg: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """Resolve ``optimizer`` config to (class, constructor kwargs), validating everything."""
    opt_cfg = _plain(opt_cfg)
    cls = optimizer_class(opt_cfg)
    target = opt_cfg["_target_"]
    name = opt_cfg.get("name") or cls.__name__
    ours = shipped_optimizers().get(name)
    if ours is not None and ours != target:  # optimizer=adam optimizer._target_=mypkg.MyOpt
        raise ConfigError(f"optimizer._target_={target} under the name {name!r} (our {ours}) would be reported as "
                          f"{name}; use optimizer=custom optimizer._target_={target} (recorded as {cls.__name__}), "
                          "or set optimizer.name")
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    accepted = [p for p, v in params.items() if p not in ("self", "params")
                and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]
    builtin = cls.__module__.startswith(BUILTIN_OPTIMIZER_MODULES)
    for key in ("allow_extra", "create_graph"):
        check_value(f"optimizer.{key}", opt_cfg.get(key), bool, null=True)
    kwargs: dict[str, Any] = {}
    for key, value in opt_cfg.items():
        if key in OPTIMIZER_META or value == UNSET:
            continue
        if key not in accepted and not takes_any:
            raise not_a_key(key, f"a hyperparameter of {target}", accepted, "optimizer.")
        if builtin or key == "lr" and not isinstance(value, Mapping):
            rules = S.HYPERPARAMETERS.get(key)
            if key == "eps" and isinstance(value, list) and isinstance(params["eps"].default, tuple):
                rules = {**rules, "listed": True, "null": True}  # Adafactor's (eps1, eps2)
            if rules is not None:
                check_value(f"optimizer.{key}", value, **rules)
        elif not (key in params and value == params[key].default):  # e.g. Prodigy's own growth_rate=inf
            _finite_numbers(f"optimizer.{key}", value)
        kwargs[key] = _argument(f"optimizer.{key}", value)
    # Let the optimizer's own checks speak too (e.g. torch.optim's ValueErrors), on a dummy tensor.
    try:
        cls([torch.zeros(1, requires_grad=True)], **kwargs)
    except Exception as e:
        raise ConfigError(f"optimizer {name} ({target}) rejects its arguments: {first_line(e)}") from None
    # A key only **kwargs takes may be swallowed unused (+optimizer.betaz=... on Lion): refuse it,
    # unless a base optimizer given as an argument (SAM's) names it, as **kwargs go on to it.
    forwarded = [p for v in kwargs.values() if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
                 for p in inspect.signature(v.__init__).parameters]
    extra = [k for k in kwargs if k not in accepted and k not in forwarded]
    if extra and not opt_cfg.get("allow_extra"):
        where = f"a named parameter of {cls.__qualname__} ({target}): it would only reach its **kwargs"
        raise ConfigError(f"{not_a_key(extra[0], where, accepted, 'optimizer.', listing='named parameters')}; "
                          "set optimizer.allow_extra=true to pass it anyway")
    _check_second_order(cls, kwargs, name, opt_cfg.get("create_graph"))
    return cls, kwargs


def _check_second_order(cls: type, kwargs: dict[str, Any], name: str, setting: bool | None) -> None:
    """One step on a dummy cubic, backward as the runner will do it: an optimizer that needs the
    gradient's graph and does not get it fails here, before training, with one line."""
    if cls.__module__.startswith(BUILTIN_OPTIMIZER_MODULES) or needs_closure(cls, kwargs):
        return
    create_graph = needs_create_graph(cls, kwargs, setting)
    p = torch.ones(2, requires_grad=True)
    try:
        optimizer = cls([p], **kwargs)
        with warnings.catch_warnings():  # torch's reference-cycle note: this dummy is dropped at once
            warnings.simplefilter("ignore")
            (p ** 3).sum().backward(create_graph=create_graph)
        optimizer.step()
    except RuntimeError as e:
        if not create_graph and "grad" in str(e):
            raise ConfigError(f"optimizer {name} ({cls.__qualname__}) fails its first step with a plain backward "
                              f"({first_line(e)}): a second-order optimizer needs "
                              "optimizer.create_graph=true (add + for a config without the key)") from None
    except Exception:  # other probe failures are the run's to report
        pass


# --------------------------------------------------------- a mapping against its schema dataclass

def field_kind(hint: Any) -> tuple[Any, bool]:
    """A field's type as (the type of a value, whether a list of them): Optional[List[float]] -> float, True."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:
        return field_kind(args[0])
    return (args[0], True) if typing.get_origin(hint) in (list, typing.List) else (hint, False)


def describe(hint: Any) -> str:
    """A schema type in a message's words (``Optional[int]``: an integer or null)."""
    kind, listed = field_kind(hint)
    return accepts(kind, listed=listed, null=type(None) in typing.get_args(hint))


def _same_type(raw: Any, typed: Any) -> bool:
    """OmegaConf converts '5' -> 5 and 'no' -> False; the schema here is strict: only an int
    where a number is expected is taken as it is."""
    if raw is None:
        return True
    if isinstance(raw, (list, tuple)) and isinstance(typed, (list, tuple)):
        return len(raw) == len(typed) and all(_same_type(a, b) for a, b in zip(raw, typed))
    return type(raw) is type(typed) or (type(raw) is int and type(typed) is float)


def check_schema(node: Mapping[str, Any], schema: type, prefix: str = "", *,
                 allowed: tuple[str, ...] | None = None, complete: bool = False) -> None:
    """A plain mapping against a schema dataclass: unknown keys, nested schema nodes, types and
    required keys (through OmegaConf's structured configs, strictly), then each field's rules.
    ``complete``: every key with a default other than null must be there (the run config's)."""
    from omegaconf.errors import OmegaConfBaseException

    hints = typing.get_type_hints(schema)
    fields = [f for f in dataclasses.fields(schema) if allowed is None or f.name in allowed]
    names = [f.name for f in fields]
    for key in node:
        if key not in names:
            where = f"a key of {prefix[:-1]}" if prefix else "a top-level key"
            raise not_a_key(str(key), where, names, prefix, "" if prefix else top_level_hint(node, key))
    for f in fields if complete else ():  # every key of the run config is there, unless deleted (~seed)
        if f.name not in node and f.default is not None:
            what = f"its keys with {prefix}{f.name}.KEY=VALUE" if dataclasses.is_dataclass(hints[f.name]) else \
                f"it with {prefix}{f.name}=VALUE ({describe(hints[f.name])})"
            raise ConfigError(f"{prefix}{f.name} is missing (deleted by a ~ override?): the run reads it; set {what}")
    flat = {}
    for key, value in node.items():
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{key} must be a mapping of {key} settings, got {value!r}")
            check_schema(value, hints[key], f"{prefix}{key}.", complete=complete)
        else:
            flat[key] = value
    try:
        typed = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), flat))
        wrong = next((key for key in flat if not _same_type(flat[key], typed[key])), None)
    except OmegaConfBaseException as e:
        wrong = str(getattr(e, "full_key", "") or "").split(".")[0].split("[")[0]
        if wrong not in hints:
            raise ConfigError(f"{prefix[:-1] or 'config'}: {first_line(e)}") from None
    if wrong is not None:
        raise ConfigError(f"{prefix}{wrong} must be {describe(hints[wrong])}, got {node.get(wrong)!r}")
    for f in fields:
        key, value = f.name, flat.get(f.name)
        if flat.get(key, f.default) == UNSET:
            raise ConfigError(f"{prefix}{key} is required ({describe(hints[key])}); set it with +{prefix}{key}=VALUE")
        kind, listed = field_kind(hints[key])
        if value is not None and (f.metadata or kind is float):
            check_value(f"{prefix}{key}", value, kind, listed=listed, **f.metadata)


def top_level_hint(cfg: Mapping[str, Any], key: str) -> str:
    """``+lr=0.1``: point to the nested key of that name (optimizer.lr)."""
    for group in ("optimizer", "task", "trainer", "lr_schedule", "data"):
        node = cfg.get(group)
        if isinstance(node, Mapping) and key in node:
            return f" (did you mean {group}.{key}?)"
    return ""


# ------------------------------------------------------------------------------ task, schedule

def check_schedule(sched: Any, key: str) -> None:
    """A built-in lr schedule against its schema; ``_target_`` schedules are checked by their own code."""
    if not isinstance(sched, Mapping):
        raise ConfigError(f"{key} must be a schedule config such as {{name: constant}}, got {sched!r}")
    if "_target_" in sched:
        return
    names = tuple(S.SCHEDULE_SCHEMAS)
    check_value(f"{key}.name", sched.get("name"), choices=names,
                says=f"one of {', '.join(names)} (or {key}._target_=a torch.optim.lr_scheduler class)")
    check_schema(sched, S.SCHEDULE_SCHEMAS[sched["name"]], f"{key}.")


def check_task(task: Any) -> None:
    """A built-in task (``kind`` image or synthetic) against the schema of its kind; a task
    with ``_target_`` is a user's plug-in, checked by its own code."""
    from ..tasks.datasets import DATASETS
    from ..tasks.models import MODELS
    from ..tasks.synthetic import SYNTHETIC, TRAIN_SIZES

    if task is None:
        raise ConfigError("task is missing; choose one with task=NAME (see `adaxbench list`)")
    if not isinstance(task, Mapping):
        raise ConfigError(f"task must be a task config (a mapping of its keys), got {task!r}")
    if "_target_" in task:
        return
    kind, problem = task.get("kind"), task.get("problem")
    check_value("task.kind", kind, choices=tuple(S.TASK_SCHEMAS),
                says=f"one of {', '.join(S.TASK_SCHEMAS)} (or give task._target_=your task class)")
    if kind == "synthetic":
        check_value("task.problem", problem, choices=tuple(SYNTHETIC))
    common = [f.name for f in dataclasses.fields(S.TaskSchema)]
    allowed = (*common, "problem", *S.SYNTHETIC_KEYS[problem]) if kind == "synthetic" else None
    check_schema(task, S.TASK_SCHEMAS[kind], "task.", allowed=allowed)
    if kind == "image":
        for key, names, file in (("dataset", DATASETS, ", a torch.save file (.pt)"), ("model", MODELS, "")):
            value = task.get(key)
            # A mapping (_target_) or, for data, a file of tensors is a user's part, checked by its own code.
            if not (isinstance(value, Mapping) or file and str(value).endswith((".pt", ".pth"))):
                check_value(f"task.{key}", value, choices=tuple(names),
                            says=f"one of {', '.join(names)}{file} (or task.{key}._target_=your class)")
    elif task.get("train_size") is not None:
        check_value("task.train_size", task["train_size"], int, low=task["batch_size"])
    elif task["batch_size"] > TRAIN_SIZES.get(problem, math.inf):
        raise ConfigError(f"task.batch_size must be at most {TRAIN_SIZES[problem]} ({problem}'s training set when "
                          f"task.train_size is not set), got {task['batch_size']}; or set task.train_size")
    if problem in ("reddi_online", "reddi_stochastic") and task["batch_size"] != 1:
        raise ConfigError(f"task.batch_size must be 1 for {problem} (one loss f_t per step), "
                          f"got {task['batch_size']}")
    if task.get("lr_schedule") is not None:
        check_schedule(task["lr_schedule"], "task.lr_schedule")


def check_targets(cfg: Mapping[str, Any]) -> None:
    """Every user ``_target_`` of a run config (plain, its task checked), each by the layer that owns it: the
    task, its model and dataset (``tasks.user``), the lr schedule (``optim.schedules``), the logger."""
    from ..optim.schedules import check_schedule_target
    from ..tasks import user
    from .loggers import check_logger

    task = cfg["task"]
    if "_target_" in task:
        user.check_task(task)
    else:
        user.check_image_parts(task, cfg.get("data") or {})
    sched = cfg.get("lr_schedule") or task.get("lr_schedule")
    if isinstance(sched, Mapping) and "_target_" in sched:
        check_schedule_target(sched)
    if isinstance(cfg.get("logger"), Mapping):
        check_logger(cfg["logger"])


def check_config(cfg: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """Validate the parts of the run config the runner consumes (raises ConfigError).
    Returns the optimizer class and constructor kwargs it resolved on the way."""
    # The hydra node is Hydra's own (and holds per-job values a pre-check cannot resolve).
    cfg = {k: _plain(cfg[k]) for k in cfg if k != "hydra"}
    check_schema(cfg, S.RunConfig, complete=True)
    if cfg.get("seed", 0) > MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, {MAX_SEED}], got {cfg['seed']}")
    task = cfg.get("task")
    check_task(task)
    opt = cfg.get("optimizer")
    if not isinstance(opt, Mapping):
        raise ConfigError("optimizer is missing; choose one with optimizer=NAME (see `adaxbench list`)")
    cls, kwargs = optimizer_kwargs(opt)
    check_targets(cfg)
    if cfg.get("lr_schedule") is not None:
        check_schedule(cfg["lr_schedule"], "lr_schedule")
    tr = cfg.get("trainer", {})
    limit, batch = tr.get("train_limit"), task.get("batch_size")
    if limit is not None and task.get("kind") == "image" and isinstance(batch, int) and limit < batch:
        raise ConfigError(f"trainer.train_limit={limit} is smaller than task.batch_size={batch}: no full batch to "
                          f"train on; use trainer.train_limit >= {batch} or a smaller task.batch_size")
    impl = tr.get("optimizer_impl", "auto")
    if impl in ("fused", "foreach") and impl not in inspect.signature(cls.__init__).parameters:
        # (whether the device supports it is known only where the run starts: choose_impl)
        raise ConfigError(f"trainer.optimizer_impl={impl} is not supported by {cls.__name__} (it has no {impl} "
                          "argument); use auto, foreach or forloop")
    threads.parse_setting(tr.get("threads", "auto"))
    resolve_device(tr.get("device", "auto"))
    return cls, kwargs


def check_output_dir(path: str | os.PathLike, key: str) -> None:
    """The run (or sweep) directory can be created and written: its nearest existing
    ancestor is a writable directory in which a directory can be made (a probe, removed again:
    /proc and read-only mounts pass os.access as root)."""
    if not str(path).strip():
        raise ConfigError(f"{key} is empty; give a directory (leave {key} out for the default runs/DATE/TIME)")
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path} is a file, not a directory; choose another {key}")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {probe} is a file; choose another {key}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} cannot be written: no write permission in {probe}; choose another {key}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".adaxbench-probe-", dir=probe))
    except OSError as e:
        raise ConfigError(f"{key}={path} cannot be created: {e.strerror or e} in {probe}; choose another {key}") from None


def resolve_device(spec: Any) -> torch.device:
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {spec!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec} but CUDA is not available here; use trainer.device=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={spec} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device=mps but MPS is not available here; use trainer.device=cpu or auto")
    return device
