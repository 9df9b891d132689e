"""Image classification on in-memory tensors (MNIST, Fashion-MNIST, CIFAR-10/100).

The whole dataset sits on the device as uint8; a batch is an index slice of a seeded
per-epoch permutation, converted to float, augmented and normalised on the device.
No DataLoader, no per-sample Python.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .augment import random_crop_flip
from .base import TaskError
from .datasets import load_dataset
from .models import build_model, l2_parameters

# The validation split is drawn once with this fixed seed, so every run (whatever its
# seed) holds out the same examples and validation numbers are comparable across runs.
SPLIT_SEED = 20200420


class ImageClassificationTask:
    has_accuracy = True

    def __init__(self, cfg: Mapping[str, Any], data_cfg: Mapping[str, Any], device: torch.device,
                 train_limit: int | None = None, channels_last: bool = False, eval_limit: int | None = None,
                 eval_batch_size: int = 1000):
        self.name = cfg["name"]
        self.device = device
        self.cfg = cfg
        arrays = load_dataset(cfg["dataset"], data_cfg.get("root", "data"), bool(data_cfg.get("download", False)))
        self.source = arrays.source
        self.num_classes = arrays.num_classes

        n = arrays.train_x.shape[0]
        valid_size = int(cfg.get("valid_size", 0) or 0)
        if not 0 <= valid_size < n:
            raise TaskError(f"task.valid_size={valid_size} must be in [0, {n}) for {cfg['dataset']}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        valid_idx, train_idx = order[:valid_size].sort().values, order[valid_size:].sort().values
        if train_limit is not None:
            if int(train_limit) < 1:
                raise TaskError(f"trainer.train_limit must be a positive integer or null, got {train_limit}")
            train_idx = train_idx[: int(train_limit)]

        def put(x: torch.Tensor) -> torch.Tensor:
            return x.to(device, non_blocking=True)

        self.train_x, self.train_y = put(arrays.train_x[train_idx]), put(arrays.train_y[train_idx])
        self.valid_x, self.valid_y = put(arrays.train_x[valid_idx]), put(arrays.train_y[valid_idx])
        self.test_x, self.test_y = put(arrays.test_x), put(arrays.test_y)
        eval_size = int(cfg.get("train_eval_size", 10000) or 0)
        if eval_limit is not None:  # smoke runs: evaluate on the first N examples of each split
            eval_size = min(eval_size, eval_limit)
            self.valid_x, self.valid_y = self.valid_x[:eval_limit], self.valid_y[:eval_limit]
            self.test_x, self.test_y = self.test_x[:eval_limit], self.test_y[:eval_limit]
        self.train_eval = (self.train_x[:eval_size], self.train_y[:eval_size])

        self.num_train = self.train_x.shape[0]
        self.batch_size = min(int(cfg["batch_size"]), self.num_train)
        # Drop the last partial batch (DeepOBS does too): every step sees batch_size examples.
        self.steps_per_epoch = self.num_train // self.batch_size
        self.augment = bool(cfg.get("augment", False))
        self.padding = int(cfg.get("crop_padding", 4))
        self.l2_reg = float(cfg.get("l2_reg", 0.0) or 0.0)
        self.eval_batch_size = int(eval_batch_size)
        self.channels_last = channels_last
        shape = (1, arrays.train_x.shape[1], 1, 1)
        self.mean = torch.tensor(arrays.mean, device=device, dtype=torch.float32).view(shape)
        self.std = torch.tensor(arrays.std, device=device, dtype=torch.float32).view(shape)
        self.in_channels, self.image_size = arrays.train_x.shape[1], arrays.train_x.shape[-1]

    def model(self) -> nn.Module:
        model = build_model(self.cfg["model"], self.num_classes, self.in_channels, self.image_size).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float().div_(255.0) - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        perm = torch.randperm(self.num_train, device=self.device, generator=generator)
        for i in range(self.steps_per_epoch):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.train_x[idx]
            if self.augment:
                x = random_crop_flip(x, self.padding, generator)
            yield self._inputs(x), self.train_y[idx]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        if self.l2_reg:
            # DeepOBS's regulariser: l2_reg * sum ||w||^2 / 2 over the weights it names. The weights
            # are looked up in `model` (not cached) and normed one by one, so that packed runs can
            # call this under torch.func.vmap; on CPU _foreach_norm did exactly this.
            norms = [torch.linalg.vector_norm(w) for w in l2_parameters(model)]
            loss = loss + 0.5 * self.l2_reg * torch.stack(norms).square().sum()
        return loss, (logits.argmax(1) == y).sum()

    def after_step(self, model: nn.Module) -> None:
        pass

    @torch.no_grad()
    def _measure(self, model: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> dict[str, float]:
        if xs.shape[0] == 0:
            return {}
        total_loss = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for i in range(0, xs.shape[0], self.eval_batch_size):
            logits = model(self._inputs(xs[i:i + self.eval_batch_size])).float()
            y = ys[i:i + self.eval_batch_size]
            total_loss += F.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
        n = xs.shape[0]
        # Evaluation loss is the data loss alone (no regulariser), comparable across tasks.
        return {"loss": total_loss.item() / n, "accuracy": correct.item() / n}

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        was_training = model.training
        model.eval()
        out = {"train": self._measure(model, *self.train_eval),
               "valid": self._measure(model, self.valid_x, self.valid_y),
               "test": self._measure(model, self.test_x, self.test_y)}
        model.train(was_training)
        return {split: m for split, m in out.items() if m}

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        return {}
