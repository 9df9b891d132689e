"""AdaX and AdaX-W (Li, Zhang, Wang & Luo 2020, "AdaX: Adaptive Gradient Descent with
Exponential Long Term Memory", arXiv 2004.09740), matching the authors' PyTorch code
(switchablenorms/AdaX, AdaX.py) step for step, but overflow-free at any step count.

    m_t = β1 m + (1 - β1) g                     (no bias correction)
    v_t = (1 + β2) v + β2 g²,   v̂_t = v_t / ((1 + β2)^t - 1)
    θ  ← θ - lr m_t / (√v̂_t + eps')

The authors add eps to √v_t before the correction, i.e. eps' = eps / √((1+β2)^t - 1)
(``eps_mode="official"``).  v̂ is kept directly, as the EMA v̂_t = β̂₂ v̂ + (1 - β̂₂) g² with
β̂₂ = 1 - β2 / ((1+β2)^t - 1), so nothing grows like (1+β2)^t.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._core import Beta2Optimizer, Hyper, _real


class AdaX(Beta2Optimizer):
    """AdaX with L2 regularisation (the authors' ``AdaX``).

    Args:
        params: parameters or param-group dicts.
        lr: step size (authors' default 1.5e-3).
        betas: (β1, β2); β1 in [0, 1), β2 in (0, 1).  The paper uses β2 = 1e-4.
        eps: denominator term, placed according to ``eps_mode``.
        weight_decay: L2 penalty added to the gradient (``p.grad`` itself is not modified).
        eps_mode: ``"official"`` lr·m/(√v̂ + eps/√((1+β2)^t - 1)) as the authors' code,
            ``"outside"`` lr·m/(√v̂ + eps), ``"inside"`` lr·m/√(v̂ + eps).
        foreach, fused: implementation, as in torch.optim (None: foreach on CUDA, else a
            for-loop).  fused drives torch's fused Adam kernel; it does not support 'inside'.
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.5e-3,
        betas: tuple[float, float] = (0.9, 1e-4),
        eps: float = 1e-12,
        weight_decay: float = 0.0,
        *,
        eps_mode: str = "official",
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        eps_mode=eps_mode, foreach=foreach, fused=fused)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        _real("betas[0]", betas[0], 0.0, 1.0)
        _real("betas[1]", betas[1], 0.0, 1.0, lo_open=True)
        super()._check_group(group)

    def _hyper(self, group: dict[str, Any]) -> Hyper:
        beta1, beta2 = group["betas"]
        return Hyper(group["lr"], beta1, "adax", beta2, 0.8, group["eps"], group["eps_mode"],
                     False, group["weight_decay"], self._decoupled)


class AdaXW(AdaX):
    """AdaX with decoupled weight decay (the authors' recommended ``AdaXW``):
    θ ← θ (1 - lr·weight_decay), then the AdaX step.

    Same arguments as :class:`AdaX`; the defaults are the authors' (lr=5e-3, weight_decay=5e-2).
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 5e-3,
        betas: tuple[float, float] = (0.9, 1e-4),
        eps: float = 1e-12,
        weight_decay: float = 5e-2,
        *,
        eps_mode: str = "official",
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, eps_mode=eps_mode, foreach=foreach, fused=fused)
