"""ScheduledBeta2: one Adam skeleton whose second-moment decay β̂₂,t follows a schedule.

    m_t = β1 m + (1 - β1) g,               m̂ = m_t / (1 - β1^t) if bias_correction1
    v̂_t = β̂₂,t v̂ + (1 - β̂₂,t) g²          (v̂ is already bias-corrected)
    θ  ← θ - lr m̂ / (√v̂_t + eps)           ("outside"; "inside": √(v̂_t + eps))

With schedule="adam" this is torch.optim.Adam (AdamW with decoupled_weight_decay=True);
with schedule="adax", bias_correction1=False, eps_mode="outside" it is
AdaX(eps_mode="outside"); schedule="adafactor" uses AdaFactor's β̂₂,t = 1 - t^{-c}.
So a comparison between them changes nothing but the schedule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._core import Beta2Optimizer, Hyper


class ScheduledBeta2(Beta2Optimizer):
    """Adam with a β̂₂ schedule in {'adam', 'adax', 'adafactor'} (see :func:`beta2_hat`).

    Args:
        params: parameters or param-group dicts.
        lr: step size.
        beta1: first-moment decay in [0, 1).
        schedule: 'adam', 'adax' or 'adafactor'.
        beta2: the schedule's β2 (None: 0.999 for adam, 1e-4 for adax; must be None for adafactor).
        decay_rate: AdaFactor's c (used by 'adafactor' only).
        eps: denominator term.
        eps_mode: 'outside' lr·m̂/(√v̂ + eps) or 'inside' lr·m̂/√(v̂ + eps).
        bias_correction1: divide m by (1 - β1^t) as Adam does.
        weight_decay: L2 penalty, or decoupled decay θ ← θ(1 - lr·wd) if decoupled_weight_decay.
        foreach, fused: implementation, as in torch.optim.  fused does not support 'inside'.
    """

    _eps_modes = ("outside", "inside")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        beta1: float = 0.9,
        schedule: str = "adam",
        beta2: float | None = None,
        decay_rate: float = 0.8,
        eps: float = 1e-8,
        *,
        eps_mode: str = "outside",
        bias_correction1: bool = True,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(lr=lr, beta1=beta1, schedule=schedule, beta2=beta2, decay_rate=decay_rate, eps=eps,
                        eps_mode=eps_mode, bias_correction1=bias_correction1, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, foreach=foreach, fused=fused)
        super().__init__(params, defaults)

    def _hyper(self, group: dict[str, Any]) -> Hyper:
        return Hyper(group["lr"], group["beta1"], group["schedule"], group["beta2"], group["decay_rate"],
                     group["eps"], group["eps_mode"], group["bias_correction1"], group["weight_decay"],
                     group["decoupled_weight_decay"])
