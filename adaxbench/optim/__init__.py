"""Optimizers under comparison: AdaX, AdaX-W and the β̂₂-schedule family (ScheduledBeta2)."""

from .adax import AdaX, AdaXW
from .beta2 import SCHEDULES, beta2_hat
from .scheduled_beta2 import ScheduledBeta2

__all__ = ["AdaX", "AdaXW", "ScheduledBeta2", "beta2_hat", "SCHEDULES", "build_lr_lambda"]

from .schedules import build_lr_lambda  # noqa: E402  (lr schedules: factors for LambdaLR)
