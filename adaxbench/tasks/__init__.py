"""Benchmark problems: real image classification tasks and synthetic ones."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .base import Task, TaskError

KINDS = ("image", "synthetic")


def build_task(cfg: Mapping[str, Any], data_cfg: Mapping[str, Any], device: torch.device, seed: int,
               train_limit: int | None = None, channels_last: bool = False,
               eval_batch_size: int = 1000, eval_limit: int | None = None) -> Task:
    """Build the task named by a ``configs/task/*.yaml`` mapping, with its data on ``device``:
    the user's own task when the mapping has a ``_target_`` (see ``tasks/user.py``).  The mapping's
    types and ranges are not checked here: pass a run config that ``train.validate.check_config``
    accepted (the runner, the packed launcher and ``adaxbench.run`` do)."""
    if "_target_" in cfg:
        from .user import build_user_task

        return build_user_task(cfg, data_cfg, device, seed, train_limit=train_limit, eval_limit=eval_limit,
                               eval_batch_size=eval_batch_size, channels_last=channels_last)
    kind = cfg.get("kind")
    if kind == "image":
        from .image import ImageClassificationTask

        return ImageClassificationTask(cfg, data_cfg, device, train_limit=train_limit, channels_last=channels_last,
                                       eval_limit=eval_limit, eval_batch_size=eval_batch_size)
    if kind == "synthetic":
        from .synthetic import build_synthetic

        return build_synthetic(cfg, device, seed)
    raise TaskError(f"task.kind={kind!r} is unknown; accepted: {', '.join(KINDS)}")


__all__ = ["Task", "TaskError", "build_task", "KINDS"]
