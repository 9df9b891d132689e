"""Learning-rate schedules as multiplicative factors of the base lr, per optimizer step.

``build_lr_lambda`` returns ``f(s)`` for ``torch.optim.lr_scheduler.LambdaLR``, which the
runner steps once per optimizer step: optimizer step ``t = s + 1`` (1-based) uses
``lr * f(s)``.  Milestones of the ``step`` schedule are given in epochs, as papers state them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

SCHEDULES = ("constant", "step", "cosine", "inverse_sqrt")


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

    if warmup == 0:
        return decay

    def warmed(s: int) -> float:
        return decay(s) * min(1.0, (s + 1) / warmup)

    return warmed
