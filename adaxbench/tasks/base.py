"""The contract between a benchmark problem and the training runner.

A task is built once per run (data decoded, moved to the device, model created) and then
driven by the runner: ``batches`` yields one epoch of training batches, ``loss`` turns a
batch into a scalar loss (plus the number of correct predictions, for classifiers), and
``evaluate`` measures the model on fixed evaluation splits.  Everything lives on the
task's device; nothing here synchronises with the host except ``evaluate`` and
``log_metrics``, which the runner calls only on log/eval steps.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import torch
from torch import nn


class TaskError(ValueError):
    """A task cannot be built as configured (bad name, missing data...).

    The message is one line meant for the user: what was wrong and what is accepted.
    """


class Task(Protocol):
    name: str
    device: torch.device
    # Number of optimizer steps in one epoch and examples seen per step (for samples/s).
    steps_per_epoch: int
    batch_size: int
    # Whether ``loss`` returns a correct-count (classification) or None.
    has_accuracy: bool

    def model(self) -> nn.Module:
        """The module whose parameters are optimised (created once, seeded by the runner)."""

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        """One epoch of training batches, in an order drawn from ``generator``.

        ``generator`` lives on ``self.device`` and is the only randomness the task may
        use for data order and augmentation, so runs are reproducible and resumable.
        """

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean training loss of ``batch`` (a 0-d tensor) and, for classifiers, the
        number of correct predictions as a 0-d tensor (else None). Must not sync."""

    def after_step(self, model: nn.Module) -> None:
        """Hook run after every optimizer step (e.g. projection onto a feasible set)."""

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        """Full evaluation: ``{split: {metric: value}}`` with splits among
        ``train`` (a fixed train-eval subset), ``valid`` and ``test``."""

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        """Task-specific metrics logged on log steps under split ``batch``
        (e.g. the iterate ``x`` of the Reddi problems). Usually empty."""
