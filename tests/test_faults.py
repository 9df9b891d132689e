"""Nothing lost on any failure path: a fault matrix of run -> interrupt -> failing resume -> good
resume, the run-dir lock, unreadable checkpoints and the checkpoint's removal at the end.

In-process on a small synthetic task; signals are real (the runner's own SIGTERM handler)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from adaxbench.rundir import Status
from adaxbench.tasks import TaskError
from adaxbench.train import runner
from adaxbench.train.runner import Interrupted, RunLocked, run_in_dir
from adaxbench.train.validate import ConfigError

from conftest import EVERY_EPOCH, ROOT, adaxbench, comparable, compose_cfg, read_run

# quadratic_deep: 1000 // 128 = 7 steps per epoch; 3 epochs with evaluations, in well under a second.
QUICK = ["task=quadratic_deep", "optimizer=adam", "optimizer.lr=0.05", "trainer.epochs=3", "trainer.log_every=2",
         "trainer.progress=false", EVERY_EPOCH]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("straight") / "run"
    assert run_in_dir(compose_cfg(QUICK + ["trainer.keep_checkpoint=true"]), d, QUICK).status == "completed"
    return d


def _interrupted_after_epoch_1(run_dir: Path, monkeypatch) -> None:
    """A real SIGTERM right after the first epoch's checkpoint."""
    save = runner.Run.save_checkpoint

    def save_then_signal(self, *a):
        save(self, *a)
        os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as m:
        m.setattr(runner.Run, "save_checkpoint", save_then_signal)
        with pytest.raises(Interrupted):
            run_in_dir(compose_cfg(QUICK), run_dir, QUICK)
    info, _ = read_run(run_dir)
    assert info["status"] == "interrupted" and info["progress"]["epoch"] == 1


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}


def _fail_config(run_dir, monkeypatch):  # a config error found before the checkpoint is read
    bad = "trainer.device=mps"  # unavailable here (as trainer.device=cuda on a CPU machine)
    with pytest.raises(ConfigError, match="trainer.device"):
        run_in_dir(compose_cfg(QUICK + [bad]), run_dir, QUICK + [bad], resume=True)


def _fail_data(run_dir, monkeypatch):  # the task cannot be built (e.g. its data files are gone)
    def missing(*a, **k):
        raise TaskError("no Fashion-MNIST files in data/FashionMNIST/raw")
    monkeypatch.setattr(runner, "build_task", missing)
    with pytest.raises(ConfigError, match="no Fashion-MNIST files"):
        run_in_dir(compose_cfg(QUICK), run_dir, QUICK, resume=True)
    monkeypatch.undo()


def _fail_signal(run_dir, monkeypatch):  # SIGTERM in the first seconds, before the checkpoint is read
    build = runner.build_task

    def signalled(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return build(*a, **k)
    monkeypatch.setattr(runner, "build_task", signalled)
    with pytest.raises(Interrupted):
        run_in_dir(compose_cfg(QUICK), run_dir, QUICK, resume=True)
    monkeypatch.undo()


def _fail_checkpoint(run_dir, monkeypatch):  # a damaged checkpoint: one line, files untouched
    path = run_dir / "checkpoint.pt"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    before = _snapshot(run_dir)
    with pytest.raises(ConfigError) as err:
        run_in_dir(compose_cfg(QUICK), run_dir, QUICK, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "restore it from a copy" in msg and "delete" in msg
    assert _snapshot(run_dir) == before
    path.write_bytes(good)  # the user restores it


def _fail_metrics(run_dir, monkeypatch):  # metrics.parquet damaged: the checkpoint cannot continue it
    path = run_dir / "metrics.parquet"
    good = path.read_bytes()
    path.write_bytes(b"PAR1 not really")
    before = _snapshot(run_dir)
    with pytest.raises(ConfigError, match="metrics.parquet does not fit its checkpoint"):
        run_in_dir(compose_cfg(QUICK), run_dir, QUICK, resume=True)
    assert _snapshot(run_dir) == before
    path.write_bytes(good)


FAILURES = {"config": _fail_config, "data": _fail_data, "signal": _fail_signal, "checkpoint": _fail_checkpoint,
            "metrics": _fail_metrics}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_fault_matrix(failure, straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _interrupted_after_epoch_1(run_dir, monkeypatch)
    before = _snapshot(run_dir)
    info_before = json.loads(before["run.json"])

    FAILURES[failure](run_dir, monkeypatch)
    after = _snapshot(run_dir)
    # Nothing that was recorded is rewritten: only run.json's status and error may change.
    assert {k: v for k, v in after.items() if k != "run.json"} == {k: v for k, v in before.items() if k != "run.json"}
    info_after = json.loads(after["run.json"])
    drop = ("status", "error")
    assert {k: v for k, v in info_after.items() if k not in drop} == \
        {k: v for k, v in info_before.items() if k not in drop}

    result = run_in_dir(compose_cfg(QUICK), run_dir, QUICK, resume=True)
    info, metrics = read_run(run_dir)
    assert result.status == "completed" and info["status"] == "completed"
    assert info["progress"]["resumed_from_epoch"] == 1
    ref_info, ref_metrics = read_run(straight)
    pd.testing.assert_frame_equal(comparable(metrics), comparable(ref_metrics))
    assert info["final"] == ref_info["final"]
    # A finished run keeps no checkpoint unless asked (trainer.keep_checkpoint=true).
    assert not (run_dir / "checkpoint.pt").exists() and (straight / "checkpoint.pt").exists()


def test_live_lock_skips_and_dead_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import filelock, sys, time; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
         "print('held', flush=True); time.sleep(120)", str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match="another live process"):
            run_in_dir(compose_cfg(QUICK), run_dir, QUICK)
        assert not (run_dir / "run.json").exists()  # the other process's run is not touched
    finally:
        holder.kill()  # SIGKILL: no cleanup; the OS releases its flock
        holder.wait()
    assert (run_dir / ".lock").exists()
    assert run_in_dir(compose_cfg(QUICK), run_dir, QUICK).status == "completed"


def test_second_launch_into_a_sweep_skips_the_job_a_live_process_trains(tmp_path):
    """Two launches into one hydra.sweep.dir: the job the first holds is skipped (one line) and
    counted apart; the other job trains, prints its result line, and the sweep its best setting."""
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import filelock, sys, time; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
         "print('held', flush=True); time.sleep(120)", str(sweep / "0" / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = adaxbench("run", "-m", *QUICK[:2], "optimizer.lr=0.05,0.01", *QUICK[3:], f"hydra.sweep.dir={sweep}",
                         cwd=ROOT)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    skipped = [ln for ln in lines if ln.startswith("skipping")]
    assert skipped == [f"skipping {sweep / '0'}: another live process is training it (it holds {sweep / '0' / '.lock'})"]
    assert not (sweep / "0" / "run.json").exists()
    assert f"sweep {sweep}: 1 completed, 0 diverged, 0 failed; 1 running in another process (skipped here)" in lines
    done = [ln for ln in lines if ln.startswith("completed in ")]
    info, _ = read_run(sweep / "1")
    assert len(done) == 1 and done[0].endswith(f": test/loss {info['final']['test/loss']:.4g} -> {sweep / '1'}")
    best = [ln for ln in lines if ln.startswith("best on ")]
    assert best == [f"best on quadratic_deep: adam task=quadratic_deep optimizer=adam optimizer.lr=0.01 trainer.epochs=3 "
                    f"(train/loss final {info['final']['train/loss']:.4g}, 1 seed(s))"]


def test_status_vocabulary_is_the_on_disk_strings():
    assert [s.value for s in Status] == ["running", "completed", "diverged", "failed", "interrupted"]
    assert Status("diverged").finished and not Status.INTERRUPTED.finished
    assert json.dumps({"status": Status.FAILED}) == '{"status": "failed"}'


def test_a_stop_after_the_last_step_keeps_the_run_and_stops_the_sweep(tmp_path, monkeypatch, straight):
    """SIGTERM after a run's last step (its final evaluation): the run is complete and says so, and
    the sweep stops there instead of swallowing the signal and training its next job."""
    from adaxbench.cli import main

    evaluate = runner.Run.evaluate

    def evaluate_then_signal(self, *a, **k):
        evaluate(self, *a, **k)
        if self.step == 3 * 7:  # the final evaluation
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runner.Run, "evaluate", evaluate_then_signal)
    sweep = tmp_path / "sweep"
    assert main(["run", "-m", *QUICK, "seed=0,1", f"hydra.sweep.dir={sweep}"]) == 130
    runs = [f.parent for f in sweep.rglob("run.json")]
    assert len(runs) == 1  # seed 1 never started
    info, rows = read_run(runs[0])
    assert info["status"] == "completed" and info["progress"]["epoch"] == 3
    assert comparable(rows).equals(comparable(read_run(straight)[1]))


def test_the_stop_handler_itself_writes_nothing(caplog):
    """A signal can land inside a log write; a handler that logged would re-enter it ("reentrant call"
    and a traceback on stderr). It only records the signal; the loop says it when it stops."""
    stop = runner.StopSignals()
    stop.deferred = True
    with caplog.at_level("DEBUG"):
        stop(signal.SIGTERM, None)
    assert stop.received == [signal.SIGTERM] and not caplog.records
