"""A user's own code, as the plug-in tests import it by ``_target_`` (tests/ is on sys.path;
subprocesses get it through PYTHONPATH)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SEEN: dict = {}  # the arguments the runner passed, for the tests to look at


class LeastSquares:
    """mean (x·w − y)² on fixed data, full batch by default: a task of the documented protocol
    whose first SGD step can be worked out by hand."""

    has_accuracy = False

    def __init__(self, batch_size: int, dim: int = 3, n: int = 32, *, device: torch.device, seed: int):
        SEEN.update(batch_size=batch_size, dim=dim, n=n, device=device, seed=seed)
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, dim, generator=g, dtype=torch.float64).to(device)
        self.y = self.x @ torch.arange(1.0, dim + 1, dtype=torch.float64, device=device)
        self.dim, self.n, self.device = dim, n, device
        self.batch_size = min(batch_size, n)
        self.steps_per_epoch = n // self.batch_size

    def model(self) -> nn.Module:
        model = nn.Linear(self.dim, 1, bias=False).double().to(self.device)
        nn.init.zeros_(model.weight)
        return model

    def batches(self, epoch, generator):
        perm = torch.randperm(self.n, generator=generator, device=self.device)
        for i in range(self.steps_per_epoch):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]

    def loss(self, model, batch):
        x, y = batch
        return (model(x).squeeze(1) - y).square().mean(), None

    @torch.no_grad()
    def evaluate(self, model):
        return {"test": {"loss": (model(self.x).squeeze(1) - self.y).square().mean().item()}}


class NoLoss:
    """Lacks most of the protocol."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size


class TinyNet(nn.Module):
    """A user's image model: declares the data's shape, which the runner fills in."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: int = 8):
        super().__init__()
        SEEN.update(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, width), nn.ReLU(),
                                 nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


class TrainTestImages(torch.utils.data.Dataset):
    """A torchvision-style dataset with ``train=``, returning (uint8 CHW tensor, label)."""

    def __init__(self, root: str, train: bool = True, size: int = 24):
        SEEN.setdefault("dataset_roots", []).append(root)
        g = torch.Generator().manual_seed(0 if train else 1)
        self.images = torch.randint(0, 256, (size, 3, 6, 6), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 4, (size,), generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def linear_to_zero(step: int, total_steps: int) -> float:
    """A step -> factor schedule that asks for the run's total number of steps."""
    return 1.0 - step / total_steps


def as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy()


class SignSGD(torch.optim.Optimizer):
    """p <- p - lr * sign(grad): a user's optimizer, its first step known by hand."""

    def __init__(self, params, lr: float = 0.01):
        if lr <= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


class HalveEvery:
    """A step -> factor callable class: its instances are the schedule."""

    def __init__(self, every: int):
        self.every = every

    def __call__(self, step: int) -> float:
        return 0.5 ** (step // self.every)
