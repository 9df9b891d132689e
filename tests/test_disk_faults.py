"""Disk full, unwritable dirs and planted links (issue 17 §4), through the CLI as users meet them.

Disk faults use a small tmpfs mounted for the test (root only; skipped with the reason otherwise):
the run dir lives there and the task fills it (or remounts it read-only) after epoch 2.  Each
fault must end in one line naming the file and what is saved, a run.json that says `failed`
where it can still be written, and a resume after space is freed that ends equal to the
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from adaxbench.report.cli import main as report_main
from adaxbench.rundir import WriteError, write_json
from adaxbench.train.runner import run_in_dir

from conftest import EVERY_EPOCH, ROOT, adaxbench, comparable, compose_cfg, read_run
from disk_fault_code import fill
from report_fixtures import write_run

TASK = ["task=custom", "task._target_=disk_fault_code.FaultyDisk", "task.batch_size=8", "task.epochs=3",
        "optimizer=adam", "optimizer.lr=0.01", "trainer.log_every=1", "trainer.progress=false", EVERY_EPOCH]
PYTHONPATH = {"PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
NOBODY = 65534
LEAVE = 96 * 1024  # room for run.json and metrics.parquet, not for the ~0.5 MB checkpoint


@pytest.fixture
def disk(tmp_path) -> Path:
    """A 4 MB tmpfs at tmp_path/disk, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({proc.stderr.strip() or 'not root'}): disk-full paths untested here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run, on an ordinary disk."""
    d = tmp_path_factory.mktemp("straight") / "run"
    assert run_in_dir(compose_cfg(TASK), d, TASK).status == "completed"
    return d


def _run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return adaxbench("run", *TASK, *args, env={**PYTHONPATH, **(env or {})}, cwd=cwd)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if "cannot write" in ln]
    assert len(lines) == 1, stderr
    return lines[0]


def _resume_equals_straight(run_dir: Path, straight: Path) -> None:
    """Space freed, the user relaunches with resume=true (in-process: the CLI's resume is test_faults')."""
    assert run_in_dir(compose_cfg(TASK + ["resume=true"]), run_dir, TASK, resume=True).status == "completed"
    info, metrics = read_run(run_dir)
    assert info["status"] == "completed" and info["progress"]["resumed_from_epoch"] == 1
    assert comparable(metrics).equals(comparable(read_run(straight)[1]))
    assert not list(run_dir.glob(".*.tmp"))


def test_disk_full_mid_run_records_the_failure_and_resumes(disk, straight):
    run_dir = disk / "run"
    proc = _run(f"hydra.run.dir={run_dir}", env={"ADAXBENCH_TEST_FILL": str(disk), "ADAXBENCH_TEST_LEAVE": str(LEAVE)})
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert f"cannot write {run_dir / 'checkpoint.pt'}: No space left on device" in line
    assert "epochs up to 1 are saved; free space and resume" in line
    info, _ = read_run(run_dir)
    assert info["status"] == "failed" and "No space left on device" in info["error"]
    assert not list(run_dir.glob(".*.tmp"))  # the half-written checkpoint is gone, the epoch-1 one kept
    (disk / "filler").unlink()
    _resume_equals_straight(run_dir, straight)


def test_no_space_at_all_still_one_line_and_resumes(disk, straight):
    run_dir = disk / "run"
    proc = _run(f"hydra.run.dir={run_dir}", env={"ADAXBENCH_TEST_FILL": str(disk)})
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert "No space left on device" in line and "epochs up to 1 are saved" in line
    assert "run.json still says running" in line  # where not even run.json can be written, it says so
    assert read_run(run_dir)[0]["progress"]["epoch"] == 1  # the record of the last good write, whole
    (disk / "filler").unlink()
    _resume_equals_straight(run_dir, straight)


def test_unwritable_run_dir_mid_run(straight):
    """The run dir loses its write permission after epoch 2 (as root, the run drops to nobody so
    that permissions apply)."""
    base = Path(tempfile.mkdtemp(prefix="adaxbench-unwritable-"))  # reachable by nobody, unlike tmp_path
    try:
        prefix = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("root without setpriv: permissions cannot be taken away from the run")
            os.chown(base, NOBODY, NOBODY)
            prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        run_dir = base / "run"
        env = {**os.environ, **PYTHONPATH, "HOME": str(base), "ADAXBENCH_TEST_READONLY": str(run_dir)}
        env.pop("HYDRA_FULL_ERROR", None)
        proc = subprocess.run([*prefix, sys.executable, "-m", "adaxbench", "run", *TASK, f"hydra.run.dir={run_dir}"],
                              env=env, capture_output=True, text=True, timeout=300)
        os.chmod(run_dir, 0o755)
        assert proc.returncode == 1, proc.stderr
        line = _one_line(proc.stderr)
        assert f"cannot write {run_dir / 'metrics.parquet'}: Permission denied" in line
        assert "epochs up to 1 are saved" in line and "run.json still says running" in line
        _resume_equals_straight(run_dir, straight)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_sweep_counts_a_full_disk_as_failed_and_prints_its_summary(disk):
    proc = adaxbench("run", "-m", *TASK, "seed=0,1", f"hydra.sweep.dir={disk / 'sweep'}",
                     env={**PYTHONPATH, "ADAXBENCH_TEST_FILL": str(disk), "ADAXBENCH_TEST_LEAVE": str(LEAVE)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "0 completed, 0 diverged, 2 failed" in proc.stdout
    for job, saved in (("0", "epochs up to 1 are saved"), ("1", "no epoch is saved")):
        info = json.loads((disk / "sweep" / job / "run.json").read_text())
        assert info["status"] == "failed" and saved in info["error"]


def test_atomic_write_on_a_full_disk_keeps_the_previous_file(disk):
    path = disk / "run.json"
    write_json(path, {"status": "running", "epoch": 1})
    fill(disk)
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device"):
        write_json(path, {"status": "running", "epoch": 2, "pad": "x" * 100_000})
    assert json.loads(path.read_text()) == {"status": "running", "epoch": 1}
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "run.json"]


def test_report_on_a_full_disk_keeps_the_previous_report(disk, tmp_path, capsys):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / str(seed), seed=seed)
    out = disk / "report"
    assert report_main([str(tmp_path / "runs"), "--out", str(out), "--no-figures"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "report.html" in before
    fill(disk)
    capsys.readouterr()
    assert report_main([str(tmp_path / "runs"), "--out", str(out), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot write" in err and "No space left on device" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # whole, no temporary files


# ---- links planted in a run dir or report dir: replaced, never followed --------------------------
def test_error_log_replaces_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "error.log").symlink_to(victim)
    crash = ["task=custom", "task._target_=disk_fault_code.Crashes", "task.epochs=1", "trainer.progress=false"]
    result = run_in_dir(compose_cfg(crash), run_dir, crash, raise_config_errors=False)
    assert result.status == "failed" and "the user's evaluate crashed" in result.error
    assert victim.read_text() == "keep\n"
    assert not (run_dir / "error.log").is_symlink() and "Traceback" in (run_dir / "error.log").read_text()


def test_an_unwritable_error_log_does_not_hide_the_cause(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "error.log").mkdir(parents=True)  # cannot be replaced by a file
    crash = ["task=custom", "task._target_=disk_fault_code.Crashes", "task.epochs=1", "trainer.progress=false"]
    result = run_in_dir(compose_cfg(crash), run_dir, crash, raise_config_errors=False)
    assert result.status == "failed" and "the user's evaluate crashed" in result.error
    info, _ = read_run(run_dir)
    assert info["status"] == "failed" and "the user's evaluate crashed" in info["error"]


def test_report_replaces_planted_links(tmp_path):
    write_run(tmp_path / "runs" / "0")
    out = tmp_path / "report"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    for name in ("report.html", "report.md", "summary.csv"):
        (out / name).symlink_to(victim)
    assert report_main([str(tmp_path / "runs"), "--out", str(out), "--no-figures"]) == 0
    assert victim.read_text() == "keep\n"
    assert all(not (out / n).is_symlink() and (out / n).stat().st_size > 0 for n in ("report.html", "summary.csv"))


def test_a_lock_link_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(tmp_path / "elsewhere")
    proc = _run(f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{run_dir / '.lock'} is not a regular file" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "elsewhere").exists() and not (run_dir / "run.json").exists()


def test_orphan_temporary_files_are_removed_on_the_next_open(tmp_path, straight):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    orphans = [".checkpoint.pt.k1l2.tmp", ".metrics.parquet.x9.tmp", ".run.json.abc.tmp", ".error.log.q.tmp"]
    for name in orphans + [".notes.tmp"]:
        (run_dir / name).write_bytes(b"\0" * 1000)
    assert run_in_dir(compose_cfg(TASK), run_dir, TASK).status == "completed"
    assert sorted(p.name for p in run_dir.glob(".*.tmp")) == [".notes.tmp"]  # a file that is not ours stays


def test_a_full_disk_fails_a_pack_with_what_each_member_saved_and_it_resumes(disk, tmp_path, monkeypatch):
    from adaxbench.train.packed import Member, train
    from adaxbench.train.runner import Run
    from adaxbench.train.validate import check_config

    quick = ["task=quadratic_deep", "optimizer=adam", "optimizer.lr=0.05", "trainer.epochs=3", "trainer.log_every=2",
             "trainer.progress=false", "trainer.device=cpu", EVERY_EPOCH]
    runs = [[*quick, f"seed={seed}"] for seed in (0, 1)]

    def members() -> list[Member]:
        return [Member(Run(compose_cfg(o), disk / f"packed{k}", o), int(compose_cfg(o).seed), check_config(compose_cfg(o)))
                for k, o in enumerate(runs)]

    for k, overrides in enumerate(runs):
        run_in_dir(compose_cfg(overrides), tmp_path / f"alone{k}", overrides)
    original, saved = Run.save_checkpoint, []

    def save_then_fill(self, *args):  # the disk fills up once every member saved epoch 1
        original(self, *args)
        saved.append(self.run_dir)
        if len(saved) == len(runs):
            fill(disk)

    monkeypatch.setattr(Run, "save_checkpoint", save_then_fill)
    pack = members()
    train(pack)
    for m in pack:
        assert m.run.status == "failed" and "No space left on device" in m.run.error
        assert "epochs up to 1 are saved" in m.run.error
    monkeypatch.setattr(Run, "save_checkpoint", original)
    (disk / "filler").unlink()
    train(members())
    for k in range(len(runs)):
        info, rows = read_run(disk / f"packed{k}")
        assert info["status"] == "completed" and info["progress"]["resumed_from_epoch"] == 1
        alone = comparable(read_run(tmp_path / f"alone{k}")[1])  # a pack equals its runs alone to rounding
        assert comparable(rows).drop(columns="value").equals(alone.drop(columns="value"))
        np.testing.assert_allclose(rows["value"], alone["value"], rtol=1e-6)
