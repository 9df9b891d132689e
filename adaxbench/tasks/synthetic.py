"""Synthetic benchmark problems: no data to download, optimum known in closed form.

* ``quadratic_deep``: DeepOBS's 100-d noisy quadratic with a deep-learning-like Hessian
  spectrum (Schneider, Balles & Hennig, ICLR 2019; ``deepobs/tensorflow/testproblems/
  quadratic_deep.py``, ``_quadratic.py``, ``datasets/quadratic.py``).
* ``rosenbrock_2d``: DeepOBS's ``two_d_rosenbrock`` (``testproblems/two_d_rosenbrock.py``,
  ``datasets/two_d.py``).
* ``reddi_online`` / ``reddi_stochastic``: the 1-d counterexamples on which Adam converges
  to the worst point of [-1, 1] (Reddi, Kale & Kumar, "On the Convergence of Adam and
  Beyond", ICLR 2018, Sec. 3 and the synthetic experiments of Sec. 5).

The DeepOBS problems rebuild DeepOBS's fixed data and Hessian from the same NumPy seeds
and draw order, so they are the same problem instances, not look-alikes.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from adaxbench.tasks.base import Task, TaskError

SYNTHETIC = ("quadratic_deep", "rosenbrock_2d", "reddi_online", "reddi_stochastic")
# The fixed training sets' sizes where task.train_size is not set (the configs set DeepOBS's).
TRAIN_SIZES = {"quadratic_deep": 1000, "rosenbrock_2d": 10_000}

# Reddi et al.: f_t(x) = C x once every `period` steps, else -x, scaled by 10 as in their
# experiments (C = 101). Over one period the sum is 1010 - 100 * 10 = +10 > 0, so the best
# fixed point is x = -1, but Adam's short memory lets the 100 small gradients win.
REDDI_BIG, REDDI_SMALL, REDDI_PERIOD, REDDI_P_BIG = 1010.0, -10.0, 101, 0.01


class Params(nn.Module):
    """A bag of named parameters: the 'model' of a problem that has no network."""

    def __init__(self, **init: torch.Tensor) -> None:
        super().__init__()
        for name, value in init.items():
            setattr(self, name, nn.Parameter(value.clone()))


# Each problem's ``loss``, ``evaluation`` and ``after_step`` also take a pack's members stacked along a
# leading dimension (each parameter and buffer (M, ...); a batch (M, ...), or one shared by all) and give
# each member's values as (M,) tensors: ``broadcasts_members`` tells a pack (``train/packed.py``) to call
# them once for all members, without vmap's cost per operation.


def _get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
    value = cfg.get(key, default)
    return default if value is None else value


def _epoch_orders(n: int, batch_size: int, generators: list[torch.Generator], device: torch.device) -> torch.Tensor:
    """Each member's shuffled indices of one epoch as (members, steps, batch_size), member k's drawn
    from ``generators[k]``; the remainder is dropped as in DeepOBS."""
    steps = n // batch_size
    return torch.stack([torch.randperm(n, generator=g, device=device)[: steps * batch_size].view(steps, batch_size)
                        for g in generators])


def _floats(results: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, float]]:
    """``evaluate``'s numbers from ``evaluation``'s tensors.  ``evaluation`` (optional, no host
    sync) lets a pack evaluate all its members in one vmapped call."""
    return {split: {metric: value.item() for metric, value in values.items()} for split, values in results.items()}


# --------------------------------------------------------------------------- quadratic_deep


def random_rotation(dim: int, rng: np.random.RandomState) -> np.ndarray:
    """Haar-random orthogonal matrix by the subgroup algorithm (Diaconis & Shahshahani 1987).

    Consumes ``rng`` in the same order as DeepOBS's ``random_rotation`` (one uniform, then one
    normal vector per dimension), so the same seed gives DeepOBS's matrix.
    """
    angle = 2 * np.pi * rng.uniform()
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    for d in range(2, dim):
        v = rng.normal(size=(d + 1, 1))
        v /= np.linalg.norm(v)
        e1 = np.zeros((d + 1, 1))
        e1[0] = 1.0
        h = (e1 - v) / np.linalg.norm(e1 - v)
        block = np.zeros((d + 1, d + 1))
        block[0, 0] = 1.0
        block[1:, 1:] = rot
        rot = block - 2 * h @ (h.T @ block)  # Householder reflection of the embedded SO(d)
    return -rot


def quadratic_deep_hessian() -> np.ndarray:
    """DeepOBS's fixed ``quadratic_deep`` Hessian: Q = R^T diag(eig) R, 90 eigenvalues from
    U(0, 1) and 10 from U(30, 60), then the rotation, all drawn from one ``RandomState(42)``
    (float64). DeepOBS's generator is module-level, so this is its first instance in a process."""
    rng = np.random.RandomState(42)
    eig = np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])
    rot = random_rotation(100, rng)
    return rot.T @ np.diag(eig) @ rot


class QuadraticDeep:
    """0.5 (theta - x)^T Q (theta - x) averaged over a batch of fixed "data" x ~ N(0, 0.6^2 I).

    DeepOBS constants: dim 100, train set 1000 points from RandomState(42), test set 1000
    points from RandomState(43), noise std 0.6, theta_0 = 1, batch 128 with the remainder
    dropped (7 steps/epoch), 100 epochs. The expected loss is 0.5 theta^T Q theta + 0.5 *
    0.36 * tr(Q), minimised at theta = 0. ``evaluate``: ``train`` is the mean over all 1000
    training points; ``test`` is, as in DeepOBS (whose loaders drop the last partial batch),
    the mean over the first 7 * 128 = 896 test points, so it matches DeepOBS's baselines.

    The loss is computed as the same quadratic expanded, 0.5 theta^T Q theta - theta . mean(Q x)
    + 0.5 mean(x^T Q x), in float64 and rounded to float32 at the end: Q x and x^T Q x of every
    fixed point are computed once, so a batch is its points' means as one vector
    [mean Q x (100 values), 0.5 mean x^T Q x] (one epoch's batches gathered at once), and a step
    costs one 100x100 matrix-vector product instead of a 128x100x100 one. Many packed seeds
    are then cheap, and the float64 sums make a packed member's values those of its run alone.
    """

    has_accuracy = False
    broadcasts_members = True

    def __init__(self, cfg: Mapping[str, Any], device: torch.device) -> None:
        self.name = str(_get(cfg, "name", "quadratic_deep"))
        self.device = device
        self.batch_size = int(_get(cfg, "batch_size", 128))
        self.noise_level = float(_get(cfg, "noise_level", 0.6))
        train_size = int(_get(cfg, "train_size", TRAIN_SIZES["quadratic_deep"]))
        self.steps_per_epoch = train_size // self.batch_size
        self.hessian = torch.as_tensor(quadratic_deep_hessian(), device=device)  # float64
        self.half_hessian = 0.5 * self.hessian

        def draw(seed: int, n: int) -> torch.Tensor:  # the data are float32, as in DeepOBS
            x = np.random.RandomState(seed).normal(0.0, self.noise_level, (train_size, 100))[:n]
            return torch.as_tensor(np.float32(x), device=device)

        self.train_x = draw(42, train_size)
        test_x = draw(43, self.steps_per_epoch * self.batch_size)
        train_rows = self._rows(self.train_x)
        # The training rows divided by the batch size, so a batch's sum is its mean; float32:
        # half the memory traffic of every epoch's gather.
        self.train_table = (train_rows / self.batch_size).float()
        # evaluate() needs only the means over each whole set
        self.eval_sets = {"train": train_rows.mean(0), "test": self._rows(test_x).mean(0)}

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """Per point, [Q x, 0.5 x^T Q x] (float64)."""
        qx = x.double() @ self.hessian
        return torch.cat([qx, 0.5 * (qx * x.double()).sum(1, keepdim=True)], 1)

    def model(self) -> nn.Module:
        return Params(theta=torch.ones(100, device=self.device))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        return iter(self.stacked_batches(epoch, [generator]).squeeze(1))

    def stacked_batches(self, epoch: int, generators: list[torch.Generator]) -> torch.Tensor:
        """Packed members' batches, (steps, members, 101): member k's from ``generators[k]``."""
        orders = _epoch_orders(len(self.train_x), self.batch_size, generators, self.device)
        # the epoch's batches in one gather-and-sum (its "sum" mode is faster than "mean")
        sums = F.embedding_bag(orders.flatten(0, 1), self.train_table, mode="sum")
        return sums.view(len(generators), self.steps_per_epoch, -1).transpose(0, 1)

    def _loss(self, theta: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        # theta (100,) and means (101,), or a pack's members' stacked: (M, 100) and (M, 101) or (101,).
        # float64, then float32: also keeps a bf16 autocast run from rounding Q to 3 digits.
        with torch.autocast(self.device.type, enabled=False):
            t, means = theta.double(), means.double()
            return ((t * (t @ self.half_hessian - means[..., :-1])).sum(-1) + means[..., -1]).float()

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self._loss(model.theta, batch), None

    def after_step(self, model: nn.Module) -> None:
        pass

    @torch.no_grad()
    def evaluation(self, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        return {split: {"loss": self._loss(model.theta, means)} for split, means in self.eval_sets.items()}

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return _floats(self.evaluation(model))

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        return {}


# ---------------------------------------------------------------------------- rosenbrock_2d


class Rosenbrock2D:
    """(1 - u)^2 + 100 (v - u^2)^2 + u x + v y with noise (x, y) ~ N(0, 1) per example.

    DeepOBS constants: start (u, v) = (-0.5, 1.5); train set 10,000 pairs from
    RandomState(42) (x drawn before y), valid set from RandomState(44), test set all zeros,
    i.e. the noise-free Rosenbrock with minimum 0 at (1, 1). DeepOBS fixes no batch size or
    budget for its 2-D problems; the config's defaults (batch 128 = 78 steps/epoch, 100
    epochs) are ours. ``evaluate``: ``train`` over all training pairs, ``valid`` over the
    first 78 * 128 pairs (DeepOBS drops the last partial batch), ``test`` noise-free.
    """

    has_accuracy = False
    broadcasts_members = True

    def __init__(self, cfg: Mapping[str, Any], device: torch.device) -> None:
        self.name = str(_get(cfg, "name", "rosenbrock_2d"))
        self.device = device
        self.batch_size = int(_get(cfg, "batch_size", 128))
        noise_level = float(_get(cfg, "noise_level", 1.0))
        train_size = int(_get(cfg, "train_size", TRAIN_SIZES["rosenbrock_2d"]))
        self.steps_per_epoch = train_size // self.batch_size
        self.start = tuple(float(s) for s in _get(cfg, "start", (-0.5, 1.5)))

        def draw(seed: int) -> torch.Tensor:
            rng = np.random.RandomState(seed)
            x = rng.normal(0.0, noise_level, train_size)
            y = rng.normal(0.0, noise_level, train_size)
            return torch.as_tensor(np.float32(np.stack([x, y], 1)), device=device)

        self.train = draw(42)
        self.eval_sets = {"train": self.train, "valid": draw(44)[: self.steps_per_epoch * self.batch_size],
                          "test": torch.zeros(1, 2, device=device)}

    def model(self) -> nn.Module:
        u, v = (torch.tensor(s, device=self.device) for s in self.start)
        return Params(u=u, v=v)

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        return iter(self.stacked_batches(epoch, [generator]).squeeze(1))

    def stacked_batches(self, epoch: int, generators: list[torch.Generator]) -> torch.Tensor:
        """Packed members' batches, (steps, members, batch, 2): member k's from ``generators[k]``."""
        orders = _epoch_orders(len(self.train), self.batch_size, generators, self.device)
        return self.train[orders.transpose(0, 1)]

    @staticmethod
    def _loss(u: torch.Tensor, v: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # u, v 0-d and noise (B, 2), or a pack's members' stacked: (M,) and (M, B, 2) or (B, 2).
        if u.dim():  # a pack's (M,) against its noise's (M, B)
            u, v = u[:, None], v[:, None]
        return ((1 - u) ** 2 + 100 * (v - u**2) ** 2 + u * noise[..., 0] + v * noise[..., 1]).mean(-1)

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self._loss(model.u, model.v, batch), None

    def after_step(self, model: nn.Module) -> None:
        pass

    @torch.no_grad()
    def evaluation(self, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        return {split: {"loss": self._loss(model.u, model.v, noise)} for split, noise in self.eval_sets.items()}

    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return _floats(self.evaluation(model))

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        return {"u": model.u.item(), "v": model.v.item()}


# ------------------------------------------------------------------------------ reddi_*


def reddi_coefficient(t: int) -> float:
    """Gradient of Reddi et al.'s online f_t at optimizer step t = 1, 2, ...: 1010 if t mod 101 == 1, else -10."""
    return REDDI_BIG if t % REDDI_PERIOD == 1 else REDDI_SMALL


class Reddi:
    """Linear losses f_t(x) = c_t x on the feasible set [-1, 1] (projected in ``after_step``).

    ``online``: c_t = 1010 if t mod 101 == 1 else -10, with t = epoch * steps_per_epoch +
    position + 1 (epochs counted from 0), so the sequence survives a resume at an epoch
    boundary. Mean loss over a period is (10/101) x. ``stochastic``: c_t = 1010 with
    probability 0.01 else -10, drawn from the epoch's generator; expected loss 0.2 x.
    Both are minimised at x = -1 while Adam drifts to x = +1. The start ``x0`` defaults to 0,
    the middle of [-1, 1]: from the paper's x_1 = 1 (taken "without loss of generality" in its
    proof) Adam merely returns to +1, and AMSGrad (lr 0.5/sqrt(t)) is still at -0.43 after 100k steps.

    ``evaluate`` reports, under ``train``, the period-average / expected loss at the current
    x and the average regret R_T / T over the steps taken so far: for ``online`` against the
    best fixed point in hindsight, R_T = sum_t f_t(x_t) - min_x sum_t f_t(x) (Reddi et al.,
    eq. 1); for ``stochastic`` against the expected loss, R_T = sum_t F(x_t) - T F(-1).
    Reddi et al. show Adam's R_T / T stays bounded away from 0 while AMSGrad's goes to 0.
    The sums live in float64 buffers of the model, so checkpoints carry them.
    """

    has_accuracy = False
    broadcasts_members = True
    batch_size = 1

    def __init__(self, cfg: Mapping[str, Any], device: torch.device, stochastic: bool) -> None:
        self.stochastic = stochastic
        self.name = str(_get(cfg, "name", "reddi_stochastic" if stochastic else "reddi_online"))
        self.device = device
        self.steps_per_epoch = int(_get(cfg, "steps_per_epoch", 1000))
        self.x0 = float(_get(cfg, "x0", 0.0))  # in the feasible set [-1, 1] (the schema's range)
        # Average loss over a period (online) or expectation (stochastic): c_bar * x.
        big, small = REDDI_BIG, REDDI_SMALL
        self.mean_coef = ((big + (REDDI_PERIOD - 1) * small) / REDDI_PERIOD if not stochastic
                          else REDDI_P_BIG * big + (1 - REDDI_P_BIG) * small)

    def model(self) -> nn.Module:
        model = Params(x=torch.tensor(self.x0, device=self.device))
        for name in ("regret_loss_sum", "regret_coef_sum", "regret_steps"):
            model.register_buffer(name, torch.zeros((), dtype=torch.float64, device=self.device))
        return model

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        batches = self.stacked_batches(epoch, [generator])
        return batches if not self.stochastic else iter(batches.squeeze(1))  # 0-d views: no host sync

    def stacked_batches(self, epoch: int, generators: list[torch.Generator]) -> Iterator[Any]:
        """Packed members' batches: f_t's coefficient, the same for all (online), or (steps,
        members) draws, member k's from ``generators[k]`` (stochastic)."""
        if self.stochastic:
            hit = torch.stack([torch.rand(self.steps_per_epoch, generator=g, device=self.device) for g in generators])
            return torch.where(hit.T < REDDI_P_BIG, REDDI_BIG, REDDI_SMALL)
        t0 = epoch * self.steps_per_epoch
        return map(reddi_coefficient, range(t0 + 1, t0 + self.steps_per_epoch + 1))

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, None]:
        loss = batch * model.x
        # Regret is measured on f_t (online) or F (stochastic) at x_t, the point this step starts
        # from; the runner takes a step after every loss. In the model's buffers, not the task,
        # so that each member of a packed run keeps its own.
        coef = self.mean_coef if self.stochastic else batch
        with torch.no_grad():
            model.regret_coef_sum.add_(coef)
            model.regret_loss_sum.add_(model.x * coef)
            model.regret_steps.add_(1)
        return loss, None

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        model.x.copy_(model.x.clamp(-1.0, 1.0))  # Euclidean projection onto F = [-1, 1] (vmap has no clamp_)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, dict[str, float]]:
        metrics = {"loss": self.mean_coef * model.x.item()}
        steps = model.regret_steps.item()
        if steps:  # R_T / T is undefined before the first step
            # min over x in [-1, 1] of (sum_t c_t) x is -|sum_t c_t|.
            metrics["avg_regret"] = (model.regret_loss_sum + model.regret_coef_sum.abs()).item() / steps
        return {"train": metrics}

    def log_metrics(self, model: nn.Module) -> dict[str, float]:
        return {"x": model.x.item()}


def build_synthetic(cfg: Mapping[str, Any], device: torch.device, seed: int) -> Task:
    """Build the synthetic problem named by ``cfg["problem"]`` (one of ``SYNTHETIC``) on ``device``.

    ``seed`` is not used: as in DeepOBS, each problem's data, Hessian and starting point are
    fixed by the problem itself; a run's randomness enters only through the generator that
    the runner passes to ``batches``.
    """
    problem = cfg.get("problem", cfg.get("name"))
    if problem == "quadratic_deep":
        return QuadraticDeep(cfg, device)
    if problem == "rosenbrock_2d":
        return Rosenbrock2D(cfg, device)
    if problem in ("reddi_online", "reddi_stochastic"):
        return Reddi(cfg, device, stochastic=problem == "reddi_stochastic")
    raise TaskError(f"unknown synthetic problem {problem!r}; accepted: {', '.join(SYNTHETIC)}")
