"""How a run drives its optimizer class: the implementation (fused, foreach, for-loop), whether
``step`` takes a closure and backward keeps the gradient's graph, and what the built optimizer
records.  ``validate.optimizer_kwargs`` resolves the class and its arguments before any of this."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from omegaconf import DictConfig

from ..errors import ConfigError

# Optimizers shipped with torch or adaxbench: known not to need a probe (and checked against
# schema.HYPERPARAMETERS).
BUILTIN_OPTIMIZER_MODULES = ("torch.optim", "adaxbench.optim")


def needs_create_graph(cls: type, kwargs: dict[str, Any], setting: bool | None = None) -> bool:
    """Whether backward must keep the gradient's graph (``create_graph=True``) for ``cls.step``:
    second-order optimizers that estimate the Hessian from it (AdaHessian, SophiaH).  Said by
    ``optimizer.create_graph``, else by a class attribute ``create_graph = True``, else by the
    class's docstring asking for ``backward(create_graph=True)`` (pytorch-optimizer's do)."""
    if setting is not None:
        return bool(setting)
    declared = getattr(cls, "create_graph", None)
    if isinstance(declared, bool):
        return declared
    return "create_graph=True" in (inspect.getdoc(cls) or "")


def effective_hparams(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The hyperparameters the built optimizer holds, class defaults included: its first param
    group without ``params`` (as JSON: tuples as lists, tensors as numbers, other objects by name).
    Packed and per-layer groups differ in ``params`` only, and so are one setting."""
    def plain(v: Any) -> Any:
        if isinstance(v, (bool, int, float, str)) or v is None:
            return v
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            return v.item()
        if isinstance(v, type):
            return f"{v.__module__}.{v.__qualname__}"
        return repr(v)
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    return {k: plain(v) for k, v in group.items() if k != "params"}


def needs_closure(cls: type, kwargs: dict[str, Any]) -> bool:
    """Whether ``cls.step`` must be given a closure that re-evaluates the loss on the same
    batch (torch.optim.LBFGS, SAM-style two-pass steps).  Said by a class attribute
    ``requires_closure = True``, or by ``step(self, closure)`` without a default; else, for a
    user's optimizer, a probe: one ``step()`` without a closure on a dummy parameter, which
    such optimizers refuse with an error that names the closure (SAM's ``assert closure``)."""
    declared = getattr(cls, "requires_closure", None)
    if isinstance(declared, bool):
        return declared
    try:
        closure = inspect.signature(cls.step).parameters.get("closure")
    except (TypeError, ValueError):
        closure = None
    if closure is not None and closure.default is inspect.Parameter.empty:
        return True
    if cls.__module__.startswith(BUILTIN_OPTIMIZER_MODULES):
        return False
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.ones(1)
    try:
        cls([p], **kwargs).step()
    except Exception as e:
        return "closure" in f"{type(e).__name__} {e}".lower()
    return False


def name_optimizer(cfg: DictConfig, cls: type) -> None:
    """Record a nameless optimizer (``optimizer=custom``) under its class name, so a user's
    optimizer is never reported as one of ours."""
    from omegaconf import open_dict

    if isinstance(cfg.get("optimizer"), DictConfig) and not cfg.optimizer.get("name"):
        with open_dict(cfg.optimizer):
            cfg.optimizer.name = cls.__name__


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
