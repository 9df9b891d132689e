"""The schedule-divergence check: can a run of this length tell two β̂₂ schedules apart?

Every optimizer with a known β̂₂,t keeps its second moment as ``v̂_t = β̂₂,t v̂_{t-1} + (1 − β̂₂,t) g_t²``,
so ``v̂_t = Σ_s w_s g_s²`` with ``w_s = (1 − β̂₂,s) Π_{k=s+1..t} β̂₂,k``: a weighting of the past squared
gradients (it sums to 1 because β̂₂,1 = 0).  Two optimizers whose weightings are nearly the same over a
run's steps take nearly the same steps, whatever their schedules do later, so a comparison of the two
at that budget cannot say anything about their schedules.  The measure is the total-variation distance
between the two weightings: TV = ½ Σ_s |w_s − w'_s|, 0 for the same weighting and 1 for disjoint ones.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

# Below this the check warns: the two optimizers weight past squared gradients almost identically.
WARN_BELOW = 0.2
# The distance at which two weightings count as clearly different ("the step count needed").
APART = 0.5
MAX_STEPS = 10**6  # the search for the step where TV first reaches APART stops here

# Optimizer names whose v̂ follows a known schedule.  AMSGrad's v is Adam's EMA (it only steps with its
# running maximum); adamw / adaxw differ from adam / adax in the weight decay only.
SCHEDULES = {"adam": "adam", "adamw": "adam", "amsgrad": "adam", "sched_adam": "adam",
             "adax": "adax", "adaxw": "adax", "sched_adax": "adax",
             "adafactor": "adafactor", "sched_adafactor": "adafactor"}
_TARGETS = {"torch.optim.Adam": "adam", "torch.optim.AdamW": "adam", "adaxbench.optim.AdaX": "adax",
            "adaxbench.optim.AdaXW": "adax", "torch.optim.Adafactor": "adafactor"}
Schedule = tuple[str, "float | None", float]  # (schedule, β2, AdaFactor's decay rate c)


def beta2_schedule(setting: dict[str, Any]) -> Schedule | None:
    """(schedule, β2, decay rate c) of a flattened optimizer setting, or None (sgd, rmsprop…).

    Known: adam, adamw, amsgrad, adax, adaxw, torch's Adafactor and every ``ScheduledBeta2`` (by its
    ``schedule`` key, whatever the config's name), by name or by ``_target_``."""
    name = str(setting.get("optimizer.name", ""))
    target = str(setting.get("optimizer._target_", ""))
    if target.endswith("ScheduledBeta2") and setting.get("optimizer.schedule") in ("adam", "adax", "adafactor"):
        sched = setting["optimizer.schedule"]
    else:
        sched = SCHEDULES.get(name) or _TARGETS.get(target)
    if sched is None:
        return None
    betas = setting.get("optimizer.betas")
    beta2 = setting.get("optimizer.beta2", betas[1] if isinstance(betas, (list, tuple)) and len(betas) > 1 else None)
    if sched == "adam":
        return sched, float(0.999 if beta2 is None else beta2), 0.8
    if sched == "adax":
        return sched, float(1e-4 if beta2 is None else beta2), 0.8
    if "optimizer.beta2_decay" in setting:  # torch.optim.Adafactor: beta2_decay = −c
        c = -float(setting["optimizer.beta2_decay"])
    else:
        c = float(setting.get("optimizer.decay_rate", 0.8))
    return sched, None, c


@lru_cache(maxsize=8)  # 16 MB per schedule at MAX_STEPS
def _log_terms(schedule: Schedule, t_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(ln(1 − β̂₂,k), C_k) for k = 1…t_max, where C_k = Σ_{j=2..k} ln β̂₂,j, from closed forms that
    never form β2^k or (1+β2)^k (see adaxbench.optim.beta2)."""
    name, beta2, c = schedule
    k = np.arange(1, t_max + 1, dtype=float)
    with np.errstate(divide="ignore"):
        if name == "adam":
            lb = math.log(beta2)
            log_gain = math.log1p(-beta2) - np.log(-np.expm1(k * lb))
            log_hat = math.log(beta2) + np.log(np.expm1((k - 1) * lb) / np.expm1(k * lb))
        elif name == "adax":
            x = math.log1p(beta2)
            log_gain = math.log(beta2) - k * x - np.log(-np.expm1(-k * x))
            log_hat = np.log(np.expm1(-(k - 1) * x) / np.expm1(-k * x))
        else:  # adafactor: 1 − β̂₂,k = k^{−c}
            log_gain = -c * np.log(k)
            log_hat = np.log(-np.expm1(-c * np.log(k)))
    log_hat[0] = 0.0  # β̂₂,1 = 0 never multiplies an older gradient: the products start at k = 2
    return log_gain, np.cumsum(log_hat)


def _weights(schedule: Schedule, t: int, t_max: int) -> np.ndarray:
    """The normalised weights w_1…w_t of past squared gradients in v̂_t."""
    log_gain, cum = _log_terms(schedule, t_max)
    w = np.exp(log_gain[:t] + cum[t - 1] - cum[:t])
    return w / w.sum()


def tv_distance(a: Schedule, b: Schedule, t: int, t_max: int | None = None) -> float:
    """Total-variation distance between the weightings of ``a`` and ``b`` after ``t`` steps."""
    t_max = max(t, t_max or t)
    return 0.5 * float(np.abs(_weights(a, t, t_max) - _weights(b, t, t_max)).sum())


@lru_cache(maxsize=256)
def steps_to_apart(a: Schedule, b: Schedule, level: float = APART, t_max: int = MAX_STEPS) -> int | None:
    """The first step at which the distance reaches ``level`` (None: not within ``t_max`` steps).

    A geometric grid (ratio 1.1) finds the first grid step at or above ``level``; bisection between it
    and the grid step before gives the exact step where the distance is monotone there (it rises with t
    for every pair of schedules above)."""
    if a == b:
        return None
    grid = np.unique(np.round(np.geomspace(1, t_max, 150)).astype(int))
    prev = 1
    for t in grid:
        if tv_distance(a, b, int(t), t_max) >= level:
            lo, hi = prev, int(t)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if tv_distance(a, b, mid, t_max) >= level else (mid, hi)
            return hi
        prev = int(t)
    return None


def describe(schedule: Schedule) -> str:
    """``adam β2=0.999``, ``adax β2=0.0001``, ``adafactor c=0.8``."""
    name, beta2, c = schedule
    return f"{name} c={c:g}" if name == "adafactor" else f"{name} β2={beta2:g}"
