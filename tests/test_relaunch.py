"""Relaunches as users run them: the same ``adaxbench run`` command again after a real SIGTERM
or SIGKILL, packed or alone, ends exactly as the uninterrupted runs; and what a resume checks.

The command runs in a subprocess.  The first stop is a SIGTERM from outside, sent once run.json
shows epoch 5; the later ones come at a chosen epoch from inside the process (a signal to
itself right after a checkpoint), so every path is taken on every run of the test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adaxbench.rundir import RecordError, RunRecord, Status, record_problem
from adaxbench.train import runner
from adaxbench.train.runner import FalseRecord, Run, run_in_dir
from adaxbench.train.validate import ConfigError

from conftest import EVERY_EPOCH, adaxbench, comparable, compose_cfg, read_run

EPOCHS = 40
SETTING = ["task=quadratic_deep", "optimizer=adam", "optimizer.lr=0.05", f"trainer.epochs={EPOCHS}",
           "trainer.log_every=2", "trainer.progress=false", "trainer.device=cpu", EVERY_EPOCH]
SEEDS = (0, 1)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop("HYDRA_FULL_ERROR", None)

# `adaxbench run ARGS`, but seed 0's run signals itself (SIG) right after the checkpoint of
# its N-th epoch since it started or resumed.
SIGNAL_AFTER = """
import os, signal, sys
from adaxbench.cli import main
from adaxbench.train import runner
n, sig = int(sys.argv[1]), getattr(signal, sys.argv[2])
save = runner.Run.save_checkpoint
def save_then_signal(self, *args):
    save(self, *args)
    if int(self.cfg.seed) == 0 and self.epochs_done == (self.resumed_from or 0) + n:
        os.kill(os.getpid(), sig)
runner.Run.save_checkpoint = save_then_signal
sys.exit(main(["run", *sys.argv[3:]]))
"""


def sweep_args(sweep: Path, packed: bool) -> list[str]:
    return ["-m", *(["hydra/launcher=packed"] if packed else []), *SETTING,
            "seed=" + ",".join(map(str, SEEDS)), f"hydra.sweep.dir={sweep}"]


def run_signalled(args: list[str], after_epochs: int, sig: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SIGNAL_AFTER, str(after_epochs), sig, *args], env=ENV,
                          capture_output=True, text=True, timeout=300)


def epoch_of(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "run.json").read_text())["progress"]["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def run_terminated_at_epoch_5(args: list[str], run_dir: Path) -> None:
    """``adaxbench run ARGS``, SIGTERMed from outside as soon as run_dir's run.json shows epoch 5."""
    proc = subprocess.Popen([sys.executable, "-m", "adaxbench", "run", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and epoch_of(run_dir) < 5:
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert err.count("adaxbench: interrupted") == 1, err[-2000:]  # one line: the signal, progress saved


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[int, tuple[dict, pd.DataFrame]]:
    """Each seed's run alone, never stopped (in this process: packed equals alone, test_packed)."""
    base = tmp_path_factory.mktemp("uninterrupted")
    out = {}
    for seed in SEEDS:
        overrides = [*SETTING, f"seed={seed}"]
        assert run_in_dir(compose_cfg(overrides), base / str(seed), overrides).status == "completed"
        out[seed] = read_run(base / str(seed))
    return out


def assert_ends_as_uninterrupted(sweep: Path, uninterrupted) -> None:
    for k, seed in enumerate(SEEDS):
        info, rows = read_run(sweep / str(k))
        want_info, want_rows = uninterrupted[seed]
        assert info["status"] == "completed", (k, info["status"], info["error"])
        assert {k: info["progress"][k] for k in ("step", "epoch", "epochs_total")} == \
            {k: want_info["progress"][k] for k in ("step", "epoch", "epochs_total")}
        got, want = comparable(rows), comparable(want_rows)
        assert len(got) == len(want)
        pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"))
        np.testing.assert_allclose(got["value"], want["value"], rtol=1e-6, atol=0)
        assert info["final"] == pytest.approx(want_info["final"], rel=1e-6)
        assert not (sweep / str(k) / "checkpoint.pt").exists()


def test_relaunches_packed_and_alone_after_sigterm_and_sigkill(tmp_path, uninterrupted):
    """The same sweep, relaunched four times: packed after a SIGTERM, packed after a SIGKILL
    (seed 0 one epoch ahead of seed 1), alone after a packed SIGTERM, packed after a SIGKILL of
    runs alone; it ends as if never stopped."""
    sweep = tmp_path / "sweep"
    packed, alone = sweep_args(sweep, packed=True), sweep_args(sweep, packed=False)

    def progress() -> list[int]:
        return [epoch_of(sweep / str(k)) for k in range(len(SEEDS))]

    def statuses() -> list[str]:
        return [read_run(sweep / str(k))[0]["status"] for k in range(len(SEEDS))]

    run_terminated_at_epoch_5(packed, sweep / "0")
    first = progress()
    assert statuses() == ["interrupted"] * 2 and all(5 <= e < EPOCHS for e in first), first

    proc = run_signalled(packed, 3, "SIGKILL")  # the relaunched pack trains on, then dies at once
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    second = progress()
    # Seed 0 died right after its checkpoint; the members write side by side, so seed 1's files of that
    # epoch may or may not have been written by then.
    assert second[0] == first[0] + 3 and second[1] in (first[1] + 2, first[1] + 3), (first, second)
    assert statuses() == ["running"] * 2

    proc = run_signalled(packed, 3, "SIGTERM")  # one or two packs (by progress), stopped at a step
    assert proc.returncode != 0 and "interrupted" in proc.stderr, proc.stderr[-2000:]
    assert statuses() == ["interrupted"] * 2
    third = [read_run(sweep / str(k))[0]["progress"] for k in range(len(SEEDS))]
    assert third[0]["stops"][-1]["signal"] == "SIGTERM" and third[0]["step"] > 7 * second[0]

    proc = run_signalled(alone, 3, "SIGKILL")  # the pack's runs relaunched alone (seed 0 first)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert epoch_of(sweep / "0") > third[0]["epoch"]

    proc = adaxbench("run", *packed)  # the runs alone relaunched in a pack, to the end
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 completed" in proc.stdout + proc.stderr
    assert_ends_as_uninterrupted(sweep, uninterrupted)


# ---- the invariant -------------------------------------------------------------------------------
def test_completed_short_of_its_epochs_is_never_written(tmp_path):
    record = {"status": "completed", "progress": {"epoch": 5, "epochs_total": 60}}
    assert record_problem(record) == "status completed at epoch 5 of 60"
    assert record_problem({**record, "status": "interrupted"}) is None
    assert record_problem({**record, "progress": {"epoch": 60, "epochs_total": 60}}) is None
    rec = RunRecord(status=Status.COMPLETED, config={"task": {"name": "t"}, "optimizer": {"name": "o"}},
                    progress={"epoch": 5, "epochs_total": 60})
    with pytest.raises(RecordError, match="completed at epoch 5 of 60"):
        rec.write(tmp_path)
    assert not (tmp_path / "run.json").exists()


def test_a_run_that_would_record_completed_short_is_recorded_failed(tmp_path):
    """The runner's every write checks it: a run stamped completed with epochs left (the packed
    relaunch's old failure: a restamped record) ends ``failed`` saying why, not ``completed``."""
    overrides = [*SETTING[:3], "trainer.epochs=3", *SETTING[4:]]
    run = Run(compose_cfg(overrides), tmp_path, overrides)
    run.epochs_total, run.epochs_done, run.status = 3, 1, Status.COMPLETED
    with pytest.raises(FalseRecord):
        run.write()
    info, _ = read_run(tmp_path)
    assert info["status"] == "failed" and "completed at epoch 1 of 3" in info["error"]
    # ... also where it only restamps a record on disk it does not own yet
    run = Run(compose_cfg(overrides), tmp_path, overrides, previous=info)
    run.status = Status.COMPLETED
    with pytest.raises(FalseRecord):
        run.write()
    assert read_run(tmp_path)[0]["status"] == "failed"


# ---- what a resume checks ------------------------------------------------------------------------
QUICK = ["task=quadratic_deep", "trainer.epochs=3", "trainer.log_every=2", "trainer.progress=false",
         "trainer.device=cpu", EVERY_EPOCH]


def files_of(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir (.hydra/ included) but the lock and Hydra's log file."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in (".lock", "adaxbench.log")}


def cli(capsys, *args: str) -> tuple[int, str]:
    from adaxbench.cli import main

    code = main(["run", *args])
    return code, capsys.readouterr().err


def sigterm_after_first_checkpoint(monkeypatch) -> None:
    save = Run.save_checkpoint

    def save_then_signal(self, *args):
        save(self, *args)
        if self.epochs_done == 1:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(Run, "save_checkpoint", save_then_signal)


def test_a_changed_config_or_another_run_is_refused_with_nothing_written(tmp_path, monkeypatch, capsys):
    """The same overrides over an edited --config-dir file: refused (one line, exit 2), as is a
    launch of another run into the dir or while another process trains it; none writes a byte."""
    config_dir, run_dir = tmp_path / "conf", tmp_path / "run"
    (config_dir / "optimizer").mkdir(parents=True)
    mine = config_dir / "optimizer" / "mine.yaml"
    mine.write_text("name: mine\n_target_: torch.optim.Adam\nlr: 0.05\n")
    args = ["--config-dir", str(config_dir), *QUICK, "optimizer=mine", f"hydra.run.dir={run_dir}"]
    with monkeypatch.context() as m:
        sigterm_after_first_checkpoint(m)
        code, err = cli(capsys, *args)
    assert code == 128 + signal.SIGTERM and read_run(run_dir)[0]["status"] == "interrupted", err
    before = files_of(run_dir)
    assert ".hydra/config.yaml" in before and "checkpoint.pt" in before

    mine.write_text("name: mine\n_target_: torch.optim.Adam\nlr: 0.5\n")
    code, err = cli(capsys, *args, "resume=true")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "was started with another config (optimizer.lr: 0.05 -> 0.5)" in err and "hydra.run.dir" in err
    assert files_of(run_dir) == before

    code, err = cli(capsys, *args, "optimizer.lr=0.3", "resume=true")  # another run
    assert code == 2 and err.count("\n") == 1 and "holds a different run" in err, err
    assert "hydra.run.dir" in err and "sweep" not in err
    assert files_of(run_dir) == before

    mine.write_text("name: mine\n_target_: torch.optim.Adam\nlr: 0.05\n")
    from filelock import FileLock
    with FileLock(run_dir / ".lock"):  # another live process trains it
        code, err = cli(capsys, *args, "resume=true")
    assert code == 2 and "another live process" in err and "hydra.run.dir" in err, err
    assert files_of(run_dir) == before

    code, err = cli(capsys, *args, "resume=true")  # as it was started: resumes to the end
    assert code == 0, err
    info, _ = read_run(run_dir)
    assert info["status"] == "completed" and info["progress"]["resumed_from_epoch"] == 1


@pytest.mark.parametrize("case, said", [
    ("finished, relaunched without resume", "already holds a run (status completed)"),
    ("another run", "holds a different run"),
    ("changed config", "was started with another config (optimizer.lr: 0.5 -> 0.001)"),
    ("config error", "optimizer.lr: a check only the launch makes"),
])
def test_a_refused_launch_frees_the_lock_and_writes_no_hydra_dir(case, said, tmp_path, monkeypatch, capsys):
    """Each way admission refuses a launch: one line, exit 2, the run dir's lock free again and no
    .hydra/ written (it is written once a launch is accepted; here removed after the first run)."""
    from filelock import FileLock

    run_dir = tmp_path / "run"
    args = [*QUICK, "optimizer=adam", f"hydra.run.dir={run_dir}"]
    if case == "config error":  # a new run whose config fails the check the launch itself makes
        def refuse(cfg):
            raise ConfigError("optimizer.lr: a check only the launch makes")
        monkeypatch.setattr(runner, "check_config_once", refuse)
    else:
        assert cli(capsys, *args)[0] == 0
        shutil.rmtree(run_dir / ".hydra")
    if case == "another run":
        args += ["optimizer.lr=0.3", "resume=true"]
    if case == "changed config":  # as another adaxbench's defaults would have started it
        record = json.loads((run_dir / "run.json").read_text())
        record["config"]["optimizer"]["lr"] = 0.5
        (run_dir / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
        args.append("resume=true")
    before = files_of(run_dir) if run_dir.exists() else {}
    code, err = cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and said in err, err
    assert not (run_dir / ".hydra").exists()
    if case == "config error":  # recorded as the failed run it is
        assert read_run(run_dir)[0]["status"] == "failed"
    else:
        assert files_of(run_dir) == before
    lock = FileLock(run_dir / ".lock")
    lock.acquire(timeout=0)  # raises Timeout where the refused launch still holds it
    lock.release()


def test_a_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    """Seed 1's checkpoint copied into seed 0's run dir: refused in one line, nothing written."""
    for seed in (0, 1):
        overrides = [*QUICK, "optimizer=adam", f"seed={seed}", "trainer.keep_checkpoint=true"]
        assert run_in_dir(compose_cfg(overrides), tmp_path / str(seed), overrides).status == "completed"
    record = json.loads((tmp_path / "0" / "run.json").read_text())
    (tmp_path / "0" / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    (tmp_path / "0" / "checkpoint.pt").write_bytes((tmp_path / "1" / "checkpoint.pt").read_bytes())
    before = files_of(tmp_path / "0")
    overrides = [*QUICK, "optimizer=adam", "seed=0"]
    with pytest.raises(ConfigError, match=r"checkpoint.pt: it belongs to another run \(seed 1, this run is seed 0\)"):
        run_in_dir(compose_cfg(overrides), tmp_path / "0", overrides, resume=True)
    assert files_of(tmp_path / "0") == before
    assert torch_load(tmp_path / "1" / "checkpoint.pt")["identity"]["seed"] == 1


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=True)


def test_a_run_without_checkpoint_keeps_its_rows_until_the_rerun_passes_them(tmp_path, monkeypatch, caplog):
    """``resume=true`` on a run interrupted with trainer.checkpoint=false trains it again from the
    start, says so, and leaves the recorded rows in place until it has passed them."""
    overrides = [*QUICK, "optimizer=adam", "trainer.checkpoint=false"]
    run_dir = tmp_path / "run"
    write = Run.write

    def write_then_stop(self):
        write(self)
        if self.epochs_done == 2 and self.status == Status.RUNNING:
            os.kill(os.getpid(), signal.SIGTERM)  # stops at the next step
    with monkeypatch.context() as m:
        m.setattr(Run, "write", write_then_stop)
        with pytest.raises(runner.Interrupted):
            run_in_dir(compose_cfg(overrides), run_dir, overrides)
    info, rows = read_run(run_dir)
    assert info["status"] == "interrupted" and info["progress"]["epoch"] == 2
    assert not (run_dir / "checkpoint.pt").exists()

    seen = []  # what is on disk at each of the rerun's writes

    def write_and_look(self):
        write(self)
        seen.append((self.epochs_done, len(read_run(run_dir)[1])))
    with monkeypatch.context() as m:
        m.setattr(Run, "write", write_and_look)
        assert run_in_dir(compose_cfg(overrides), run_dir, overrides, resume=True).status == "completed"
    assert "no checkpoint to continue" in caplog.text and "training it again from the start" in caplog.text
    assert all(n >= len(rows) for _, n in seen), (len(rows), seen)  # never fewer rows than recorded
    assert [n for e, n in seen if e < 2] == [len(rows)] * len([e for e, _ in seen if e < 2])  # untouched
    straight = tmp_path / "straight"
    run_in_dir(compose_cfg(overrides), straight, overrides)
    info, rows = read_run(run_dir)
    want_info, want_rows = read_run(straight)
    assert info["status"] == "completed" and info["progress"]["step"] == want_info["progress"]["step"]
    pd.testing.assert_frame_equal(comparable(rows), comparable(want_rows))
