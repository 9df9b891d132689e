"""Check a composed config before any data is read or any step is taken.

Every problem becomes a ``ConfigError`` with one line naming the key, what was given and
what is accepted.  The optimizer is also constructed once on a dummy parameter, so
torch.optim's own argument checks (and unknown keyword arguments) surface here too.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Mapping

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..optim.schedules import SCHEDULES
from . import threads

# Keys of the optimizer config that are bookkeeping, not constructor arguments.
OPTIMIZER_META = ("name", "_target_")
PRECISIONS = ("fp32", "bf16")
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "forloop")


class ConfigError(ValueError):
    """A user-facing configuration problem (one line)."""


def _plain(cfg: Any) -> Any:
    """OmegaConf containers as plain dicts/lists (so list checks see lists)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # a broken interpolation, e.g. ${oc.env:...} typo
            raise ConfigError(f"config cannot be resolved: {str(e).splitlines()[0]}") from None
    return cfg


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _number(key: str, v: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = True) -> float:
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    what = f"a number in {lo}, {hi}" if lo and hi else (f"a number {'>' if low_open else '>='} {low:g}" if lo else "a number")
    if not _is_number(v):
        raise ConfigError(f"{key} must be {what}, got {v!r}")
    v = float(v)
    if v != v or (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        raise ConfigError(f"{key} must be {what}, got {v!r}")
    return v


def _int(key: str, v: Any, *, low: int = 1, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        extra = " or null" if allow_none else ""
        raise ConfigError(f"{key} must be an integer >= {low}{extra}, got {v!r}")
    return v


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {v!r}")
    return v


# Range checks for hyperparameters shared by many optimizers (key -> checker).
def _check_hyper(key: str, v: Any) -> None:
    full = f"optimizer.{key}"
    if key == "lr":
        _number(full, v, low=0, low_open=True, high=None)
    elif key == "betas":
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ConfigError(f"{full} must be a list of two numbers in [0, 1), got {v!r}")
        for i, b in enumerate(v):
            _number(f"{full}[{i}]", b, low=0, high=1)
    elif key in ("beta1", "momentum", "dampening", "alpha"):
        _number(full, v, low=0, high=1, high_open=(key != "dampening"))
    elif key == "beta2":
        if v is not None:
            _number(full, v, low=0, high=1)
    elif key in ("eps", "weight_decay", "lr_decay", "initial_accumulator_value"):
        if key == "eps" and isinstance(v, (list, tuple)):  # Adafactor's (eps1, eps2)
            for i, e in enumerate(v):
                if e is not None:
                    _number(f"{full}[{i}]", e, low=0)
        else:
            _number(full, v, low=0)
    elif key in ("decay_rate", "d"):
        _number(full, v, low=0, low_open=True)
    elif key in ("amsgrad", "nesterov", "centered", "maximize", "bias_correction1", "decoupled_weight_decay"):
        _bool(full, v)


def optimizer_kwargs(opt_cfg: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """Resolve ``optimizer`` config to (class, constructor kwargs), validating everything."""
    opt_cfg = _plain(opt_cfg)
    target = opt_cfg.get("_target_")
    name = opt_cfg.get("name", target)
    if not isinstance(target, str):
        raise ConfigError(f"optimizer {name!r} has no _target_ class; add e.g. `_target_: torch.optim.Adam`")
    try:
        cls = get_class(target)
    except Exception:
        raise ConfigError(f"optimizer._target_={target!r} cannot be imported") from None
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "params")]
    kwargs: dict[str, Any] = {}
    for key, value in opt_cfg.items():
        if key in OPTIMIZER_META:
            continue
        if key not in params:
            raise ConfigError(f"optimizer.{key} is not a hyperparameter of {target}; accepted: {', '.join(accepted)}")
        _check_hyper(key, value)
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    # Let the optimizer's own checks speak too (e.g. torch.optim's ValueErrors), on a dummy tensor.
    try:
        cls([torch.zeros(1, requires_grad=True)], **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer {name}: {str(e).splitlines()[0]}") from None
    return cls, kwargs


def check_config(cfg: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """Validate the parts of the run config the runner consumes (raises ConfigError).
    Returns the optimizer class and constructor kwargs it resolved on the way."""
    cfg = _plain(cfg)
    _int("seed", cfg.get("seed"), low=0)
    task = cfg.get("task")
    if not isinstance(task, Mapping) or "name" not in task:
        raise ConfigError("task is missing; choose one with task=NAME (see `adaxbench list`)")
    _int("task.batch_size", task.get("batch_size"))
    _int("task.epochs", task.get("epochs"))
    opt = cfg.get("optimizer")
    if not isinstance(opt, Mapping):
        raise ConfigError("optimizer is missing; choose one with optimizer=NAME (see `adaxbench list`)")
    optimizer = optimizer_kwargs(opt)

    sched = cfg.get("lr_schedule") or task.get("lr_schedule") or {"name": "constant"}
    if sched.get("name") not in SCHEDULES:
        raise ConfigError(f"lr_schedule.name={sched.get('name')!r} is unknown; accepted: {', '.join(SCHEDULES)}")
    _int("lr_schedule.warmup_steps", sched.get("warmup_steps", 0), low=0)
    if sched.get("name") == "step":
        ms = sched.get("milestones", [])
        if not isinstance(ms, (list, tuple)) or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in ms):
            raise ConfigError(f"lr_schedule.milestones must be a list of positive epoch numbers, got {ms!r}")
        _number("lr_schedule.gamma", sched.get("gamma", 0.1), low=0, low_open=True, high=None)
    if sched.get("name") == "cosine":
        _number("lr_schedule.min_factor", sched.get("min_factor", 0.0), low=0, high=1, high_open=False)

    tr = cfg.get("trainer", {})
    _int("trainer.epochs", tr.get("epochs"), allow_none=True)
    _int("trainer.train_limit", tr.get("train_limit"), allow_none=True)
    _int("trainer.eval_limit", tr.get("eval_limit"), allow_none=True)
    _int("trainer.log_every", tr.get("log_every", 50))
    _int("trainer.eval_batch_size", tr.get("eval_batch_size", 1000))
    if tr.get("optimizer_impl", "auto") not in OPTIMIZER_IMPLS:
        raise ConfigError(f"trainer.optimizer_impl must be one of {', '.join(OPTIMIZER_IMPLS)}, "
                          f"got {tr.get('optimizer_impl')!r}")
    if tr.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {tr.get('precision')!r}")
    try:
        threads.parse_setting(tr.get("threads", "auto"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for key in ("compile", "channels_last", "checkpoint"):
        _bool(f"trainer.{key}", tr.get(key, False))
    if tr.get("progress", "auto") not in ("auto", True, False):
        raise ConfigError(f"trainer.progress must be auto, true or false, got {tr.get('progress')!r}")
    resolve_device(tr.get("device", "auto"))
    _bool("resume", cfg.get("resume", False))
    data = cfg.get("data", {})
    if not isinstance(data.get("root", "data"), str):
        raise ConfigError(f"data.root must be a path, got {data.get('root')!r}")
    _bool("data.download", data.get("download", False))
    return optimizer


def resolve_device(spec: Any) -> torch.device:
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {spec!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec} but CUDA is not available here; use trainer.device=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={spec} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device=mps but MPS is not available here; use trainer.device=cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {spec!r}")
    return device


def choose_impl(cls: type, kwargs: dict[str, Any], impl: str, device: torch.device) -> tuple[dict[str, Any], str]:
    """Pick the optimizer's implementation: ``auto`` = fused where the class supports it on
    this device, else foreach, else the for-loop.  An explicit ``optimizer.fused``/``foreach``
    in the optimizer config wins.  Returns (kwargs, the implementation used)."""
    if kwargs.get("fused"):
        return kwargs, "fused"
    if kwargs.get("foreach") is not None:
        return kwargs, "foreach" if kwargs["foreach"] else "forloop"
    accepted = inspect.signature(cls.__init__).parameters
    for candidate in {"auto": ("fused", "foreach"), "fused": ("fused",), "foreach": ("foreach",)}.get(impl, ()):
        if candidate not in accepted:
            continue
        trial = {**kwargs, candidate: True}
        try:
            cls([torch.zeros(1, device=device, requires_grad=True)], **trial)
        except (RuntimeError, ValueError, TypeError):
            continue
        return trial, candidate
    if impl in ("fused", "foreach"):
        raise ConfigError(f"trainer.optimizer_impl={impl} is not supported by {cls.__name__} on {device}; "
                          "use auto, foreach or forloop")
    if "foreach" in accepted:
        kwargs = {**kwargs, "foreach": False}
    return kwargs, "forloop"
