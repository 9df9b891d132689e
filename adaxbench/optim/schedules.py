"""Learning-rate schedules as multiplicative factors of the base lr, per optimizer step.

``build_lr_lambda`` returns ``f(s)`` for ``torch.optim.lr_scheduler.LambdaLR``, which the
runner steps once per optimizer step: optimizer step ``t = s + 1`` (1-based) uses
``lr * f(s)``.  Milestones of the ``step`` schedule are given in epochs, as papers state them.

Own schedules (``lr_schedule._target_=...``), built by ``build_scheduler``:

* any ``torch.optim.lr_scheduler`` class (``StepLR``, ``OneCycleLR``, ``CosineAnnealingLR``...):
  constructed as ``cls(optimizer, **keys)`` and stepped once per *optimizer step*, so its
  periods (``step_size``, ``T_max``...) count optimizer steps, not epochs;
* a ``step -> factor`` callable (a function, or a class whose instances are one): the lr of
  optimizer step ``t = s + 1`` is ``lr * f(s)``, exactly as for the built-in schedules.

A class or function that declares ``total_steps`` or ``steps_per_epoch`` gets them filled in
when the config leaves them unset (e.g. ``OneCycleLR``'s ``total_steps``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

SCHEDULES = ("constant", "step", "cosine", "inverse_sqrt")
# Keys of an own schedule's config that are not arguments of its class/function.
SCHEDULE_META = ("_target_", "name", "warmup_steps")
# Facts the runner fills in when a schedule declares them.
SCHEDULE_CONTEXT = ("total_steps", "steps_per_epoch")


def build_lr_lambda(cfg: Mapping[str, Any], steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    name = cfg.get("name", "constant")
    warmup = int(cfg.get("warmup_steps", 0) or 0)
    if name not in SCHEDULES:
        raise ValueError(f"lr_schedule.name={name!r} is unknown; accepted: {', '.join(SCHEDULES)}")
    if warmup < 0:
        raise ValueError(f"lr_schedule.warmup_steps must be >= 0, got {warmup}")

    if name == "constant":
        def decay(s: int) -> float:
            return 1.0
    elif name == "step":
        milestones = sorted(int(m) for m in cfg.get("milestones", []))
        gamma = float(cfg.get("gamma", 0.1))

        def decay(s: int) -> float:
            epoch = s // steps_per_epoch  # the epoch optimizer step s+1 belongs to
            return gamma ** sum(epoch >= m for m in milestones)
    elif name == "cosine":
        floor = float(cfg.get("min_factor", 0.0))
        span = max(1, total_steps - warmup)

        def decay(s: int) -> float:
            progress = min(1.0, max(0, s - warmup) / span)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # inverse_sqrt: alpha / sqrt(t) with t the 1-based step
        def decay(s: int) -> float:
            return 1.0 / math.sqrt(s + 1)

    return _warmed_up(decay, warmup)


def _warmed_up(decay: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    if warmup == 0:
        return decay
    return lambda s: decay(s) * min(1.0, (s + 1) / warmup)


def _is_scheduler_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.optim.lr_scheduler.LRScheduler)


def check_schedule_target(cfg: Mapping[str, Any]) -> None:
    """One-line ``ConfigError`` for an own schedule (``lr_schedule._target_``) that cannot be
    imported, is neither a scheduler class nor a callable, or gets arguments it does not take."""
    from ..plugins import arguments, check_arguments, locate
    from ..errors import ConfigError

    target = locate(cfg.get("_target_"), "lr_schedule")
    kwargs = arguments(cfg, SCHEDULE_META)
    warmup = cfg.get("warmup_steps", 0) or 0
    if _is_scheduler_class(target):
        if issubclass(target, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ConfigError("lr_schedule._target_: ReduceLROnPlateau needs a metric at every step and is not "
                              "supported; use a step -> factor callable or another torch.optim.lr_scheduler class")
        if warmup:
            raise ConfigError("lr_schedule.warmup_steps works with the built-in schedules and step -> factor "
                              f"callables, not with {cfg['_target_']}; chain a LinearLR warm-up in your own class")
        check_arguments(target, kwargs, "lr_schedule", context=SCHEDULE_CONTEXT, positional=1)
    elif isinstance(target, type):
        check_arguments(target, kwargs, "lr_schedule", context=SCHEDULE_CONTEXT)
        if "__call__" not in dir(target):  # its instances must be step -> factor callables
            raise ConfigError(f"lr_schedule._target_={cfg['_target_']!r} is a class that is neither a "
                              "torch.optim.lr_scheduler class nor callable as step -> factor")
    elif callable(target):
        check_arguments(target, kwargs, "lr_schedule", context=SCHEDULE_CONTEXT, positional=1)
        _check_takes_step(target, kwargs, cfg["_target_"])
    else:
        raise ConfigError(f"lr_schedule._target_={cfg['_target_']!r} is neither a torch.optim.lr_scheduler class "
                          "nor a step -> factor callable")


def _check_takes_step(fn: Callable, kwargs: Mapping[str, Any], name: str) -> None:
    """A step -> factor callable is called as ``fn(step, **kwargs)``: it must take the step."""
    from ..plugins import _signature, accepts
    from ..errors import ConfigError

    context = {k: 1 for k in SCHEDULE_CONTEXT if k not in kwargs and accepts(fn, k)}  # the runner fills these in
    try:
        _signature(fn).bind(0, **kwargs, **context)
    except TypeError:
        raise ConfigError(f"lr_schedule._target_={name!r} does not take the step as its first argument: give a "
                          "step -> factor callable (def f(step): return factor) or a torch.optim.lr_scheduler "
                          "class") from None


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], steps_per_epoch: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler the runner steps once per optimizer step: a built-in schedule (by
    ``name``) or an own one (by ``_target_``, see the module docstring)."""
    if "_target_" not in cfg:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda(cfg, steps_per_epoch, total_steps))
    import functools

    from ..plugins import accepts, arguments, call_with_context, locate

    target = locate(cfg["_target_"], "lr_schedule")
    kwargs = arguments(cfg, SCHEDULE_META)
    context = {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch}
    if _is_scheduler_class(target):
        return call_with_context(target, kwargs, context, optimizer)
    if isinstance(target, type):
        factor = call_with_context(target, kwargs, context)
    else:
        full = {**kwargs, **{k: v for k, v in context.items() if k not in kwargs and accepts(target, k)}}
        factor = functools.partial(target, **full) if full else target
    warmup = int(cfg.get("warmup_steps", 0) or 0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _warmed_up(lambda s: float(factor(s)), warmup))
