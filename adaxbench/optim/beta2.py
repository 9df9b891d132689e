"""β̂₂ schedules: the per-step second-moment decay of Adam, AdaX and AdaFactor.

Every optimizer here keeps the *bias-corrected* second moment as an EMA,
``v̂_t = β̂₂,t · v̂_{t-1} + (1 - β̂₂,t) · g²``, so only the schedule differs:

- adam:      β̂₂,t = β2 (1 - β2^{t-1}) / (1 - β2^t)
- adax:      β̂₂,t = 1 - β2 / ((1 + β2)^t - 1)        (Li et al. 2020, arXiv 2004.09740)
- adafactor: β̂₂,t = 1 - t^{-c}                         (Shazeer & Stern 2018)

All three give β̂₂,1 = 0 (v̂_1 = g²).  Both β̂₂ and 1 - β̂₂ are evaluated in closed forms
built from exp/expm1/log1p that never form (1+β2)^t or β2^t themselves, so they are
accurate to a few ulps and finite for any t (the naive (1+β2)**t raises OverflowError
near t = 7e6 at β2 = 1e-4, and float32 overflows near t = 9e5).
"""

from __future__ import annotations

import math
import numbers

SCHEDULES = ("adam", "adax", "adafactor")
# β2 used when the caller passes beta2=None.
DEFAULT_BETA2 = {"adam": 0.999, "adax": 1e-4, "adafactor": None}


def check_schedule(schedule: str, beta2: float | None, decay_rate: float) -> float | None:
    """Validate a schedule's hyperparameters and return β2 with its default filled in.

    Raises ValueError (one line, naming the argument) on anything invalid.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if schedule == "adafactor":
        if beta2 is not None:
            raise ValueError(f"beta2 is not used by schedule 'adafactor' (set decay_rate); got beta2={beta2!r}")
        if not _is_real(decay_rate) or not 0.0 <= decay_rate < math.inf:
            raise ValueError(f"decay_rate must be a finite float >= 0; got {decay_rate!r}")
        return None
    if beta2 is None:
        return DEFAULT_BETA2[schedule]
    # adam tolerates beta2 = 0 (as torch.optim.Adam does); adax needs (1+β2)^t - 1 > 0.
    lo_ok = beta2 >= 0.0 if schedule == "adam" else beta2 > 0.0
    if not _is_real(beta2) or not (lo_ok and beta2 < 1.0):
        interval = "[0, 1)" if schedule == "adam" else "(0, 1)"
        raise ValueError(f"beta2 must be a float in {interval} for schedule {schedule!r}; got {beta2!r}")
    return float(beta2)


def beta2_hat_and_gain(schedule: str, t: int, beta2: float | None, decay_rate: float) -> tuple[float, float]:
    """(β̂₂,t, 1 - β̂₂,t), each computed directly (no cancellation), for step t >= 1.

    ``beta2`` must already be resolved (see :func:`check_schedule`); this is the hot-path
    helper and does no validation.
    """
    if t == 1:
        return 0.0, 1.0
    if schedule == "adax":
        x = math.log1p(beta2)
        # β̂ = 1 - β2/B_t with B_t = (1+β2)^t - 1 = e^{tx} - 1, rewritten with e^{-tx}.
        hat = math.expm1(-(t - 1) * x) / math.expm1(-t * x)
        gain = beta2 * math.exp(-t * x) / -math.expm1(-t * x)
        return hat, gain
    if schedule == "adam":
        if beta2 == 0.0:
            return 0.0, 1.0
        lb = math.log(beta2)
        hat = beta2 * math.expm1((t - 1) * lb) / math.expm1(t * lb)
        gain = (1.0 - beta2) / -math.expm1(t * lb)
        return hat, gain
    # adafactor
    lt = math.log(t)
    return -math.expm1(-decay_rate * lt), math.exp(-decay_rate * lt)


def adax_inv_sqrt_normalizer(t: int, beta2: float) -> float:
    """1/√((1+β2)^t - 1), underflowing to 0 instead of overflowing.

    The authors' AdaX adds eps to √v_t *before* dividing by √((1+β2)^t - 1); in terms of
    v̂ that is eps · this factor added to √v̂.
    """
    x = math.log1p(beta2)
    return math.sqrt(math.exp(-t * x) / -math.expm1(-t * x))


def beta2_hat(schedule: str, t: int | float, beta2: float | None = None, decay_rate: float = 0.8) -> float:
    """β̂₂ at step ``t`` (1-based) of ``schedule`` in {'adam', 'adax', 'adafactor'}.

    ``beta2`` defaults to 0.999 for adam and 1e-4 for adax (unused by adafactor);
    ``decay_rate`` is AdaFactor's c.  Accurate to a few ulps and finite for any t,
    e.g. ``beta2_hat('adax', 10**9) == 1.0``.
    """
    if isinstance(t, bool) or not _is_real(t) or t != int(t) or t < 1:
        raise ValueError(f"t must be an integer step >= 1; got {t!r}")
    beta2 = check_schedule(schedule, beta2, decay_rate)
    return beta2_hat_and_gain(schedule, int(t), beta2, float(decay_rate))[0]


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)
