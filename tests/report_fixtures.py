"""Synthetic run dirs in the runner's exact on-disk format (run.json + metrics.parquet),
written through the run-directory contract (adaxbench.rundir).

Values are given explicitly, so tests can derive the expected table numbers by hand.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adaxbench.rundir import METRICS_FILE, METRICS_SCHEMA, RunRecord, Status

OPTIMIZERS: dict[str, dict[str, Any]] = {
    "adam": {"name": "adam", "_target_": "torch.optim.Adam", "lr": 1e-3, "betas": [0.9, 0.999],
             "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adax": {"name": "adax", "_target_": "adaxbench.optim.AdaX", "lr": 2e-3, "betas": [0.9, 1e-4],
             "eps": 1e-12, "weight_decay": 0.0},
    "adafactor": {"name": "adafactor", "_target_": "torch.optim.Adafactor", "lr": 1e-2, "beta2_decay": -0.8,
                  "eps": [None, 1e-3], "d": 1.0, "weight_decay": 0.0},
    "sgd": {"name": "sgd", "_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.0,
            "nesterov": False, "weight_decay": 0.0},
}


def write_run(run_dir: str | Path, *, task: str = "fmnist_mlp", optimizer: str = "adam",
              opt: Mapping[str, Any] | None = None, seed: int = 0, status: str = "completed",
              error: str | None = None, epochs: int = 3, evals: Mapping[str, Sequence[float]] | None = None,
              batch: Mapping[str, Sequence[float]] | None = None, steps_per_epoch: int = 10,
              log_every: int = 5, seconds_per_epoch: float = 1.0, target: float | None = None,
              task_extra: Mapping[str, Any] | None = None, metrics: bool = True,
              lr_schedule: Mapping[str, Any] | None = None, trainer_extra: Mapping[str, Any] | None = None) -> Path:
    """Write one run dir.

    ``evals``: ``{"test/accuracy": [v_epoch0, ..., v_epochE], ...}`` (evaluation at epoch 0 and
    after each epoch; step = epoch × steps_per_epoch, time = epoch × seconds_per_epoch).
    ``batch``: ``{"loss": [...]}`` at steps log_every, 2·log_every, ... (default: a decaying loss).
    ``opt`` overrides keys of the optimizer's default config; ``task_extra``, ``trainer_extra`` add or
    replace task / trainer keys; ``lr_schedule`` is the chosen schedule (default: the task's, constant).
    """
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    evals = dict(evals or {"test/accuracy": np.linspace(0.1, 0.9, epochs + 1),
                           "test/loss": np.linspace(2.3, 0.3, epochs + 1)})
    n_evals = {len(v) for v in evals.values()}
    assert n_evals == {epochs + 1}, "evals need epochs + 1 values (epoch 0 and after each epoch)"
    steps = np.arange(log_every, epochs * steps_per_epoch + 1, log_every)
    if batch is None:
        batch = {"loss": 2.3 * np.exp(-steps / (epochs * steps_per_epoch))}
    cols: dict[str, list] = {"step": [], "epoch": [], "time": [], "split": [], "metric": [], "value": []}

    def add(step, epoch, t, split, metric, values):
        n = len(values)
        cols["step"].append(np.broadcast_to(np.asarray(step, np.int64), n))
        cols["epoch"].append(np.broadcast_to(np.asarray(epoch, float), n))
        cols["time"].append(np.broadcast_to(np.asarray(t, float), n))
        cols["split"].append([split] * n)
        cols["metric"].append([metric] * n)
        cols["value"].append(np.asarray(values, float))

    for name, values in batch.items():
        add(steps, steps / steps_per_epoch, steps / steps_per_epoch * seconds_per_epoch, "batch", name, values)
    e = np.arange(epochs + 1)
    for key, values in evals.items():
        split, name = key.split("/")
        add(e * steps_per_epoch, e, e * seconds_per_epoch, split, name, values)
    if metrics:
        table = pa.table({
            "step": np.concatenate(cols["step"]), "epoch": np.concatenate(cols["epoch"]),
            "time": np.concatenate(cols["time"]), "split": [s for c in cols["split"] for s in c],
            "metric": [s for c in cols["metric"] for s in c], "value": np.concatenate(cols["value"]),
        }, schema=METRICS_SCHEMA)
        pq.write_table(table, d / METRICS_FILE)

    task_cfg = {"name": task, "kind": "image", "dataset": "fashion_mnist", "model": "mlp", "batch_size": 128,
                "epochs": epochs, "target": target, "lr_schedule": {"name": "constant", "warmup_steps": 0},
                **(task_extra or {})}
    final = {k: (None if math.isnan(float(v[-1])) else float(v[-1])) for k, v in evals.items()}
    RunRecord(
        status=Status(status), error=error,
        config={"task": task_cfg, "optimizer": {**OPTIMIZERS.get(optimizer, {"name": optimizer}), **(opt or {})},
                "lr_schedule": dict(lr_schedule or {"name": "constant", "warmup_steps": 0}),
                "trainer": {"epochs": epochs, "device": "auto", "log_every": log_every, **(trainer_extra or {})},
                "seed": seed, "data": {"root": "data", "download": False}, "experiment": None},
        overrides=[f"optimizer={optimizer}", f"seed={seed}"],
        env={"python": "3.11.7", "torch": "2.14.1", "cuda": None, "device": "cpu", "host": "x", "git_commit": "abc"},
        timing={"started": "2026-11-27T12:00:00+00:00", "ended": "2026-11-27T12:01:00+00:00",
                "train_seconds": epochs * seconds_per_epoch, "eval_seconds": 0.1, "wall_seconds": 60.0},
        throughput={"samples_per_s": 1000.0},
        progress={"step": epochs * steps_per_epoch, "epoch": float(epochs), "epochs_total": epochs},
        final=final,
    ).write(d)
    return d


def synthetic_sweep(root: str | Path, n_runs: int, epochs: int = 100, steps_per_epoch: int = 100,
                    log_every: int = 10, tasks: Sequence[str] = ("fmnist_mlp", "cifar10_3c3d"),
                    optimizers: Sequence[str] = ("adam", "adax", "adafactor", "sgd"),
                    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2), seed: int = 0, start: int = 0) -> list[Path]:
    """``n_runs`` plausible runs (task × optimizer × lr × seed grid, filled in that order), each
    with loss/accuracy curves for train/valid/test and batch loss, lr, grad_norm, β̂₂, eff. lr.
    ``start`` continues the grid (and seeds) of an earlier call."""
    rng = np.random.default_rng(seed)
    out = []
    grid = [(t, o, lr) for t in tasks for o in optimizers for lr in lrs]
    e = np.arange(epochs + 1)
    steps = np.arange(log_every, epochs * steps_per_epoch + 1, log_every)
    for i in range(start, start + n_runs):
        task, opt, lr = grid[i % len(grid)]
        s = i // len(grid)
        rate = rng.uniform(0.03, 0.12)
        top = rng.uniform(0.85, 0.93)
        acc = top - (top - 0.1) * np.exp(-rate * e)
        loss = 0.25 + 2.05 * np.exp(-rate * e)
        evals = {f"{sp}/{m}": (acc if m == "accuracy" else loss) + rng.normal(0, 0.004, epochs + 1)
                 for sp in ("train", "valid", "test") for m in ("accuracy", "loss")}
        batch = {"loss": 0.25 + 2.05 * np.exp(-rate * steps / steps_per_epoch) * rng.lognormal(0, 0.1, len(steps)),
                 "lr": np.full(len(steps), lr), "grad_norm": rng.lognormal(0, 0.3, len(steps)),
                 "beta2_hat": 1 - 1 / (1 + steps), "eff_lr_mean": lr / np.sqrt(steps)}
        out.append(write_run(Path(root) / str(i), task=task, optimizer=opt, opt={"lr": lr}, seed=s,
                             epochs=epochs, evals=evals, batch=batch, steps_per_epoch=steps_per_epoch,
                             log_every=log_every, seconds_per_epoch=2.0, target=0.85))
    return out
