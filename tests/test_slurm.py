"""Time limits, preemption and the SLURM launchers.

First, without SLURM: a stop signal (SIGUSR2 = a SLURM time limit through submitit,
SIGTERM = preemption) checkpoints the run at the current step, mid-epoch, and the
resumed run ends with exactly the metrics of an uninterrupted one; a requeued run that
cannot progress fails with a clear message instead of requeueing forever.

Then on a real single-node SLURM cluster (tests/slurm_cluster.py): submitit_slurm sweeps
with completed/diverged/failed jobs, a job that reaches its time limit and one preempted
with ``scontrol requeue`` (both resume exactly), and the slurm_gpu preset's sbatch script
with its GPU actually scheduled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from adaxbench.train import runner
from adaxbench.train.runner import Interrupted, run_in_dir

from conftest import ROOT, comparable, compose_cfg, fake_image_arrays, read_run

# 7 steps per epoch (1000 examples, batch 128), 3 epochs.
QUADRATIC = ["task=quadratic_deep", "optimizer=adam", "optimizer.lr=0.01", "trainer.epochs=3",
             "trainer.log_every=2", "trainer.progress=false", "trainer.threads=1"]
# Crop + flip augmentation draws from the epoch's generator: 8 steps per epoch, 2 epochs.
CIFAR = ["task=cifar10_3c3d", "optimizer=adax", "task.batch_size=16", "trainer.train_limit=128",
         "trainer.eval_limit=64", "task.valid_size=32", "task.train_eval_size=32", "trainer.epochs=2",
         "trainer.log_every=3", "trainer.progress=false", "trainer.threads=1"]


_REAL_BUILD_TASK = runner.build_task


def _fake_cifar(monkeypatch):
    from adaxbench.tasks import image

    monkeypatch.setattr(image, "load_dataset", lambda name, root, download=False: fake_image_arrays(name, 160, 64))


def _signal_at_step(monkeypatch, signum: int, at_step: int | None, at_start: bool = False):
    """Make the run send itself ``signum`` right after optimizer step ``at_step`` (or while
    it builds its task, with ``at_start``), as SLURM would at an arbitrary moment."""
    def build(*args, **kwargs):
        task = _REAL_BUILD_TASK(*args, **kwargs)
        if at_start:
            os.kill(os.getpid(), signum)
        real_after, steps = task.after_step, [0]

        def after_step(model):
            real_after(model)
            steps[0] += 1
            if steps[0] == at_step:
                os.kill(os.getpid(), signum)
        task.after_step = after_step
        return task

    monkeypatch.setattr(runner, "build_task", build)


@pytest.fixture
def requeue_handler():
    """A stand-in for submitit's SIGUSR2 handler (pickle the job, `scontrol requeue`, exit)."""
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        sys.exit(-1)
    previous = signal.signal(signal.SIGUSR2, handler)
    yield calls
    signal.signal(signal.SIGUSR2, previous)


@pytest.mark.parametrize("signum,overrides", [(signal.SIGUSR2, QUADRATIC), (signal.SIGTERM, QUADRATIC),
                                              (signal.SIGUSR2, CIFAR)], ids=["usr2-quadratic", "term-quadratic",
                                                                             "usr2-cifar-augmented"])
def test_stop_signal_checkpoints_mid_epoch_and_resume_is_exact(signum, overrides, tmp_path, monkeypatch):
    _fake_cifar(monkeypatch)
    cfg = compose_cfg(overrides)
    assert run_in_dir(cfg, tmp_path / "straight").status == "completed"
    steps_per_epoch = 7 if "quadratic" in overrides[0] else 8
    stop_step = steps_per_epoch + 3  # epoch 1, after its third batch

    _signal_at_step(monkeypatch, signum, stop_step)
    with pytest.raises(Interrupted):
        run_in_dir(cfg, tmp_path / "run")
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "interrupted" and signal.Signals(signum).name in info["error"]
    assert info["progress"]["step"] == stop_step and info["progress"]["epoch"] == 1
    assert info["progress"]["stops"] == [{"step": stop_step, "signal": signal.Signals(signum).name}]
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == stop_step and checkpoint["epoch"] == 1  # mid-epoch, not the epoch end

    monkeypatch.setattr(runner, "build_task", _REAL_BUILD_TASK)
    assert run_in_dir(cfg, tmp_path / "run", resume=True).status == "completed"
    info, metrics = read_run(tmp_path / "run")
    assert info["progress"]["resumed_from_step"] == stop_step
    straight_info, straight = read_run(tmp_path / "straight")
    pd.testing.assert_frame_equal(comparable(metrics), comparable(straight))
    assert info["final"] == straight_info["final"]


def test_requeue_without_progress_fails_instead_of_looping(tmp_path, monkeypatch, requeue_handler):
    cfg = compose_cfg(QUADRATIC)
    # First allocation: the time-limit signal after 4 steps; the run checkpoints, then
    # hands over to submitit's handler, which requeues the job and exits.
    _signal_at_step(monkeypatch, signal.SIGUSR2, 4)
    with pytest.raises(SystemExit):
        run_in_dir(cfg, tmp_path / "run")
    assert requeue_handler == [signal.SIGUSR2]
    assert read_run(tmp_path / "run")[0]["status"] == "interrupted"

    # Second allocation progresses to step 9 before its signal: requeued again.
    _signal_at_step(monkeypatch, signal.SIGUSR2, 5)
    with pytest.raises(SystemExit):
        run_in_dir(cfg, tmp_path / "run", resume=True)
    assert len(requeue_handler) == 2
    assert [s["step"] for s in read_run(tmp_path / "run")[0]["progress"]["stops"]] == [4, 9]

    # Third allocation is signalled before it can take a step: no progress since the
    # last requeue, so it says so and ends instead of being requeued forever.
    _signal_at_step(monkeypatch, signal.SIGUSR2, None, at_start=True)
    result = run_in_dir(cfg, tmp_path / "run", resume=True)
    assert result.status == "failed" and len(requeue_handler) == 2
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "failed" and "twice at step 9 without progress" in info["error"]
    assert "hydra.launcher.timeout_min" in info["error"]


def test_sigterm_to_a_cli_run_checkpoints_mid_epoch(tmp_path):
    """The real process: SIGTERM while it trains stops it at a step boundary with a checkpoint."""
    run_dir = tmp_path / "run"
    args = ["task=quadratic_deep", "task.train_size=20000", "trainer.epochs=50", "trainer.log_every=1",
            "trainer.progress=false", "trainer.threads=1", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "adaxbench", "run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if read_run(run_dir)[1]["split"].eq("batch").sum() >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    info, _ = read_run(run_dir)
    step = info["progress"]["step"]
    assert info["status"] == "interrupted" and info["progress"]["stops"] == [{"step": step, "signal": "SIGTERM"}]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == step > 0
