"""One Adam skeleton for every β̂₂ schedule (AdaX, AdaX-W and ScheduledBeta2 subclass it).

State per parameter: ``step`` (a Python int, exact at any step count), ``exp_avg`` (m) and
``exp_avg_sq_hat`` (v̂, the *bias-corrected* second moment).  Keeping v̂ rather than the
raw accumulator is what makes AdaX overflow-free: the authors' v_t grows like (1+β2)^t,
v̂ stays on the scale of g².  The key is deliberately not torch's ``exp_avg_sq`` (which is
uncorrected), so a torch.optim.Adam state cannot be loaded here by mistake.

Three interchangeable implementations, chosen like torch.optim's:
for-loop (default on CPU), foreach (default on CUDA) and fused, which drives torch's own
fused Adam kernel with per-step scalars: a huge step count makes its bias corrections
exactly 1, β̂₂,t goes in as its beta2, lr / (1 - β1^t) as its lr and the AdaX eps
correction as its eps.  So fused costs exactly what torch's fused Adam costs.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from .beta2 import adax_inv_sqrt_normalizer, beta2_hat_and_gain, check_schedule

EPS_MODES = ("official", "outside", "inside")

# Step count handed to the fused kernel: β^step underflows to 0 for every β < 1 in double
# (the CPU kernel's math), so its bias corrections are exactly 1.
_KERNEL_STEP = float(2**62)
# Largest double below 1: β̂₂ rounds to 1.0 only when 1 - β̂₂ < 1.1e-16; clamping it
# keeps β^step = 0 and changes v̂ by less than one float64 ulp.
_BELOW_ONE = math.nextafter(1.0, 0.0)
# torch's CUDA kernel forms its bias corrections in float32: a β that rounds to 1.0f would
# give 1 - β^step = 0, so such steps take the (identical) foreach math instead.
_F32_ROUNDS_TO_ONE = 1.0 - 2.0**-25


class Hyper(NamedTuple):
    """A param group's hyperparameters in the skeleton's terms."""

    lr: float
    beta1: float
    schedule: str
    beta2: float | None
    decay_rate: float
    eps: float
    eps_mode: str
    bias_correction1: bool
    weight_decay: float
    decoupled: bool


class Scalars(NamedTuple):
    """Everything one step needs, computed on the host in float64."""

    beta2_hat: float
    gain: float  # 1 - β̂₂, computed directly
    lr_t: float  # lr / (1 - β1^t) with bias_correction1, else lr
    eps_t: float  # eps added to √v̂ (official: eps / √((1+β2)^t - 1)); eps inside the root for 'inside'


def step_scalars(h: Hyper, t: int, dtype: torch.dtype = torch.float64) -> Scalars:
    """Host-side scalars of step ``t`` (>= 1) for hyperparameters ``h`` and parameters of ``dtype``."""
    hat, gain = beta2_hat_and_gain(h.schedule, t, h.beta2, h.decay_rate)
    lr_t = h.lr
    if h.bias_correction1 and h.beta1 > 0.0:
        lr_t = h.lr / -math.expm1(t * math.log(h.beta1))
    eps_t = h.eps
    if h.eps_mode == "official" and h.eps > 0.0:
        # eps/√((1+β2)^t - 1) underflows to 0 after ~1e6 steps (float32); a coordinate whose
        # gradient was always 0 (m = v̂ = 0) would then step by 0/0.  The authors' code gives 0
        # there, and so does the smallest normal number, which is < 1e-19 √v̂ everywhere else.
        eps_t = max(h.eps * adax_inv_sqrt_normalizer(t, h.beta2), torch.finfo(dtype).tiny)
    return Scalars(hat, gain, lr_t, eps_t)


def _real(name: str, value: Any, lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        hi_s = "inf" if hi == math.inf else f"{hi:g}"
        raise ValueError(f"{name} must be a finite float in {left}{lo:g}, {hi_s}{right}; got {value!r}")
    return float(value)


def _flag(name: str, value: Any, allow_none: bool = False) -> None:
    if not (isinstance(value, bool) or (allow_none and value is None)):
        accepted = "True, False or None" if allow_none else "True or False"
        raise ValueError(f"{name} must be {accepted}; got {value!r}")


class Beta2Optimizer(Optimizer):
    """Base class: Adam with a step-dependent β̂₂ and v̂ kept bias-corrected.

    Subclasses map their param-group keys onto :class:`Hyper` via ``_hyper`` and list the
    eps modes they accept in ``_eps_modes``.
    """

    _eps_modes: tuple[str, ...] = EPS_MODES

    def _hyper(self, group: dict[str, Any]) -> Hyper:
        raise NotImplementedError

    def _resolved_hyper(self, group: dict[str, Any]) -> Hyper:
        h = self._hyper(group)
        if h.beta2 is None and h.schedule != "adafactor":
            h = h._replace(beta2=check_schedule(h.schedule, None, h.decay_rate))
        return h

    # ---- validation -------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; its hyperparameters (defaults filled in) are validated."""
        super().add_param_group(param_group)
        try:
            self._check_group(self.param_groups[-1])
        except ValueError:
            self.param_groups.pop()
            raise

    def _check_group(self, group: dict[str, Any]) -> None:
        h = self._hyper(group)
        _real("lr", h.lr, 0.0)
        _real("beta1", h.beta1, 0.0, 1.0)
        check_schedule(h.schedule, h.beta2, h.decay_rate)
        _real("eps", h.eps, 0.0)
        _real("weight_decay", h.weight_decay, 0.0)
        if h.eps_mode not in self._eps_modes:
            raise ValueError(f"eps_mode must be one of {', '.join(self._eps_modes)}; got {h.eps_mode!r}")
        _flag("bias_correction1", h.bias_correction1)
        _flag("decoupled_weight_decay", h.decoupled)
        _flag("foreach", group["foreach"], allow_none=True)
        _flag("fused", group["fused"], allow_none=True)
        if group["foreach"] and group["fused"]:
            raise ValueError("foreach and fused cannot both be True; set at most one")
        if group["fused"] and h.eps_mode == "inside":
            raise ValueError("fused=True supports eps_mode 'official' or 'outside'; got 'inside' (use foreach)")

    # ---- step ------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            h = self._resolved_hyper(group)
            buckets: dict[tuple[torch.device, torch.dtype, int], list[list[Tensor]]] = {}
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:  # check everything before touching any state
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients; use dense gradients")
                if torch.is_complex(p) or torch.is_complex(p.grad):
                    raise RuntimeError(f"{type(self).__name__} does not support complex parameters; use real tensors")
            for p in params:
                g = p.grad
                state = self.state[p]
                if not state:
                    if group["fused"] and p.device.type not in ("cpu", "cuda"):
                        raise RuntimeError(f"fused=True needs CPU or CUDA tensors; got {p.device.type}")
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq_hat"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                lists = buckets.setdefault((p.device, p.dtype, state["step"]), [[], [], [], []])
                lists[0].append(p)
                lists[1].append(g)
                lists[2].append(state["exp_avg"])
                lists[3].append(state["exp_avg_sq_hat"])
            if not buckets:
                continue
            fused, foreach = group["fused"], group["foreach"]
            if fused is None and foreach is None:
                # torch.optim's default: foreach when everything is on CUDA, else a for-loop.
                foreach = all(p.is_cuda for p in group["params"])
            for (device, dtype, t), (ps, gs, ms, vs) in buckets.items():
                s = step_scalars(h, t, dtype)
                if fused and _kernel_is_exact(device, dtype, h.beta1, s.beta2_hat):
                    _fused_update(ps, gs, ms, vs, h, s)
                elif fused or foreach:
                    _foreach_update(ps, gs, ms, vs, h, s)
                else:
                    _single_update(ps, gs, ms, vs, h, s)
        return loss

    # ---- diagnostics (log steps only) ----------------------------------------------
    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """β̂₂ of the first param group at its current step, and the mean and median over all
        coordinates of the effective step lr/(√v̂ + eps) (lr/√(v̂ + eps) for eps_mode 'inside';
        eps corrected as the eps_mode says; lr is the group's base lr, the step applied to the
        bias-corrected momentum).  Syncs; call on log steps only.  {} before the first step.
        """
        h0 = self._resolved_hyper(self.param_groups[0])
        t0 = max((self.state[p]["step"] for p in self.param_groups[0]["params"] if self.state.get(p)), default=0)
        if t0 == 0:
            return {}
        parts: list[Tensor] = []
        for group in self.param_groups:
            h = self._resolved_hyper(group)
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                s = step_scalars(h, state["step"], state["exp_avg_sq_hat"].dtype)
                v = state["exp_avg_sq_hat"].detach().flatten()
                v = v.double() if v.dtype == torch.float64 else v.float()
                den = (v + h.eps).sqrt_() if h.eps_mode == "inside" else v.sqrt().add_(s.eps_t)
                parts.append(den.reciprocal_().mul_(h.lr))
        dev = parts[0].device
        eff = torch.cat([x.to(dev) for x in parts])
        n = eff.numel()
        # True median (mean of the two middle values when n is even), O(n) via kthvalue.
        hi = eff.kthvalue(n // 2 + 1).values.double()
        median = hi if n % 2 else (eff.kthvalue(n // 2).values.double() + hi) / 2
        return {
            "beta2_hat": beta2_hat_and_gain(h0.schedule, t0, h0.beta2, h0.decay_rate)[0],
            "eff_lr_mean": eff.mean(dtype=torch.float64).item(),
            "eff_lr_median": median.item(),
        }


def _kernel_is_exact(device: torch.device, dtype: torch.dtype, beta1: float, hat: float) -> bool:
    if device.type == "cpu" or dtype == torch.float64:
        return True  # the CPU kernel forms its bias corrections in float64
    return beta1 < _F32_ROUNDS_TO_ONE and hat < _F32_ROUNDS_TO_ONE


_step_tensors: dict[torch.device, Tensor] = {}


def _fused_update(ps: list[Tensor], gs: list[Tensor], ms: list[Tensor], vs: list[Tensor], h: Hyper, s: Scalars) -> None:
    device = ps[0].device
    big = _step_tensors.get(device)
    if big is None:
        big = _step_tensors[device] = torch.tensor(_KERNEL_STEP, dtype=torch.float32, device=device)
    kw = dict(lr=s.lr_t, beta1=h.beta1, beta2=min(s.beta2_hat, _BELOW_ONE), eps=s.eps_t, amsgrad=False, maximize=False)
    if h.decoupled:
        # The kernel decays by lr_t * wd; we want lr * wd (as torch.optim.AdamW).
        wd = h.weight_decay * h.lr / s.lr_t if s.lr_t > 0.0 else 0.0
        torch._fused_adamw_(ps, gs, ms, vs, [], [big] * len(ps), weight_decay=wd, **kw)
    else:
        torch._fused_adam_(ps, gs, ms, vs, [], [big] * len(ps), weight_decay=h.weight_decay, **kw)


def _foreach_update(ps: list[Tensor], gs: list[Tensor], ms: list[Tensor], vs: list[Tensor], h: Hyper, s: Scalars) -> None:
    if h.weight_decay != 0.0:
        if h.decoupled:
            torch._foreach_mul_(ps, 1.0 - h.lr * h.weight_decay)
        else:
            gs = torch._foreach_add(gs, ps, alpha=h.weight_decay)  # a copy: p.grad stays untouched
    torch._foreach_lerp_(ms, gs, 1.0 - h.beta1)
    torch._foreach_mul_(vs, s.beta2_hat)
    torch._foreach_addcmul_(vs, gs, gs, value=s.gain)
    if h.eps_mode == "inside":
        den = torch._foreach_add(vs, s.eps_t)
        torch._foreach_sqrt_(den)
    else:
        den = torch._foreach_sqrt(vs)
        torch._foreach_add_(den, s.eps_t)
    torch._foreach_addcdiv_(ps, ms, den, value=-s.lr_t)


def _single_update(ps: list[Tensor], gs: list[Tensor], ms: list[Tensor], vs: list[Tensor], h: Hyper, s: Scalars) -> None:
    for p, g, m, v in zip(ps, gs, ms, vs):
        if h.weight_decay != 0.0:
            if h.decoupled:
                p.mul_(1.0 - h.lr * h.weight_decay)
            else:
                g = g.add(p, alpha=h.weight_decay)
        m.lerp_(g, 1.0 - h.beta1)
        v.mul_(s.beta2_hat).addcmul_(g, g, value=s.gain)
        den = v.add(s.eps_t).sqrt_() if h.eps_mode == "inside" else v.sqrt().add_(s.eps_t)
        p.addcdiv_(m, den, value=-s.lr_t)
