"""The task protocol: the contract between a benchmark problem and the training runner.

This is a public API: ``adaxbench run task=custom task._target_=mypkg.MyTask`` trains any
class that follows it (docs/how-to/your-task.md).

**Construction.** The runner builds the task once per run, with every key of the task config
except ``name``, ``epochs``, ``target``, ``lr_schedule``, ``kind`` and ``_target_`` as keyword
arguments (``batch_size`` included; add your own with ``+task.KEY=VALUE``).  It also passes
each of these when the constructor declares a parameter of that name:

* ``device`` (``torch.device``): where the data and model must live;
* ``seed`` (int): the run's seed (the runner has already seeded torch, numpy and random);
* ``data_root`` (str), ``download`` (bool): ``data.root`` and ``data.download``;
* ``train_limit``, ``eval_limit`` (int or None): smoke-run limits (``trainer.*``);
* ``eval_batch_size`` (int), ``channels_last`` (bool): ``trainer.*``.

A constructor that raises ``TaskError`` (e.g. data not found) ends the run with that one line
and exit status 2.  Decode data once here, onto ``device``, as tensors.

**Driving.** Then the runner: creates the model (``model``); evaluates it (``evaluate``);
and for each epoch iterates ``batches``, computing ``loss`` for each batch, stepping the
optimizer and calling ``after_step``; it evaluates again after every epoch.  Everything lives
on the task's device; nothing but ``evaluate`` and ``log_metrics`` may synchronise with the
host, and the runner calls those only on log/eval steps.

Required: ``steps_per_epoch``, ``batch_size``, ``model``, ``batches``, ``loss``, ``evaluate``.
Optional for own tasks (defaults shown in the class below): ``has_accuracy``, ``after_step``,
``log_metrics``, ``name`` (default ``task.name``, i.e. the class name), ``device``.
Subclassing ``Task`` is allowed (it gives the defaults), not required.
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
    has_accuracy: bool = False

    def model(self) -> nn.Module:
        """The module whose parameters are optimised, on the task's device. Called once per
        run, after the runner seeded torch, so its initialisation is reproducible."""

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        """One epoch of training batches (``steps_per_epoch`` of them), in an order drawn from
        ``generator``.

        ``generator`` lives on ``self.device`` and is the only randomness the task may
        use for data order and augmentation, so runs are reproducible and resumable.
        """

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean training loss of ``batch`` (a 0-d tensor) and, for classifiers, the
        number of correct predictions as a 0-d tensor (else None). Must not sync.
        (Own tasks may return the loss alone.)  ``batch[1]`` must be the targets when a
        count is returned: the runner divides it by ``len(batch[1])``."""

    def after_step(self, model: nn.Module) -> None:
        """Hook run after every optimizer step (e.g. projection onto a feasible set)."""

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        """Full evaluation: ``{split: {metric: value}}`` with splits among
        ``train`` (a fixed train-eval subset), ``valid`` and ``test``; metrics such as
        ``loss`` and ``accuracy``. A non-finite ``loss`` ends the run as diverged."""

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        """Task-specific metrics logged on log steps under split ``batch``
        (e.g. the iterate ``x`` of the Reddi problems). Usually empty."""
        return {}
