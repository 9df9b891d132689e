"""Shared helpers: compose the real config tree, run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test`: two workers share two cores, so one thread each, in this process (whose runs would
    # otherwise take every core: "auto" threads) and in the adaxbench processes the tests start.
    # Tests of the thread budget itself set or remove OMP_NUM_THREADS explicitly.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST_SYSTEM / "train-images-idx3-ubyte.gz").exists(),
                                  reason="Debian's dataset-fashion-mnist is not installed (make data)")
# Small and fast: a few hundred training examples, one epoch, frequent logging.
# Every epoch saved (the default waits trainer.save_every_s between saves): for tests that stop or
# kill a run between epochs, or read its records while it trains.
EVERY_EPOCH = "trainer.save_every_s=0"
SMOKE = ["trainer.train_limit=512", "trainer.eval_limit=1000", "trainer.epochs=1", "trainer.log_every=2",
         "trainer.progress=false"]


def fake_image_arrays(dataset: str, n_train: int = 192, n_test: int = 64):
    """Random uint8 images of a dataset's exact shape (MNIST and CIFAR cannot be downloaded
    here): runs every real model and protocol through the task's real code path."""
    import torch

    from adaxbench.tasks.datasets import ImageArrays

    shape = (3, 32, 32) if dataset.startswith("cifar") else (1, 28, 28)
    classes = 100 if dataset == "cifar100" else 10
    g = torch.Generator().manual_seed(0)
    return ImageArrays(train_x=torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=g),
                       train_y=torch.randint(0, classes, (n_train,), generator=g),
                       test_x=torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=g),
                       test_y=torch.randint(0, classes, (n_test,), generator=g),
                       num_classes=classes, mean=(0.5,) * shape[0], std=(0.25,) * shape[0], source="fake")


def compose_cfg(overrides: list[str] | None = None) -> DictConfig:
    """The config `adaxbench run OVERRIDES` would get (without the hydra node)."""
    with initialize_config_module(config_module="adaxbench.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides or []))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def adaxbench(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300,
              check: bool = False) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", "adaxbench", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def read_run(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    from adaxbench.rundir import RunRecord

    info = json.loads((Path(run_dir) / "run.json").read_text())
    RunRecord.from_json(info)  # every run dir a test reads follows the run-directory contract
    return info, pd.read_parquet(Path(run_dir) / "metrics.parquet")


def comparable(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metric rows without wall-clock time (the only column allowed to differ between reruns)."""
    return metrics.drop(columns=["time"]).reset_index(drop=True)


# The longest files first: two xdist workers (`make test`) then never end with one long file running alone.
LONGEST_FIRST = ("test_slurm.py", "test_sweeps.py", "test_runner.py", "test_study_pipeline.py", "test_tune.py",
                 "test_optuna.py", "test_relaunch.py", "test_threads.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
