"""`adaxbench tune`: the lr-tuning protocol end to end through the CLI, killed and relaunched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from adaxbench.cli import main
from adaxbench.tune import lr_at

from conftest import ROOT, adaxbench

# rosenbrock_2d for one epoch (78 steps from (-0.5, 1.5)) is step-limited at these lrs, so Adam's
# best lr sits on the largest edge of a 3-point grid (0.001687, 0.003, 0.005335) and the grid widens.
TUNE = ["tune", "--tasks", "rosenbrock_2d", "--optimizers", "adam", "--lr-centre", "3e-3", "--lr-decades", "0.25",
        "--tuning-seeds", "2", "--eval-seeds", "3", "--max-widenings", "1", "trainer.epochs=1", "trainer.progress=false"]


def _finished_runs(root: Path) -> dict[Path, str]:
    """Started time of every completed run under root (a retrained run gets a new one)."""
    out = {}
    for f in root.rglob("run.json"):
        info = json.loads(f.read_text())
        if info["status"] == "completed":
            out[f.parent] = info["timing"]["started"]
    return out


def _launch_and_signal(out: Path, ready, sig: int) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "adaxbench", *TUNE, "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait(timeout=120)


def test_tune_end_to_end_survives_kills_and_resumes_without_retraining(tmp_path):
    out = tmp_path / "tune"
    grid = out / "tuning" / "rosenbrock_2d" / "grid"
    # Killed hard in the middle of the grid sweep: some runs done, one 'running' record left behind.
    rc = _launch_and_signal(out, lambda: len(_finished_runs(grid)) >= 2 if grid.exists() else False, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    before = _finished_runs(out)
    assert 2 <= len(before) < 6
    # Relaunched, then stopped by SIGTERM once the evaluation stage has begun.
    rc = _launch_and_signal(out, lambda: any((out / "eval").rglob("run.json")) if (out / "eval").exists() else False,
                            signal.SIGTERM)
    assert rc != 0
    assert json.loads((out / "tune.json").read_text())["stage"] == "evaluating"
    for run, started in before.items():  # the first launch's finished runs were not trained again
        assert _finished_runs(out)[run] == started
    before = _finished_runs(out)

    proc = adaxbench(*TUNE, "--out", str(out), cwd=ROOT, env={"OMP_NUM_THREADS": "1"}, check=True)
    assert "all 6 runs finished" in proc.stdout and "all 4 runs finished" in proc.stdout
    after = _finished_runs(out)
    assert {r: after[r] for r in before} == before
    assert len(after) == 6 + 4 + 3  # grid, one widening, evaluation: every run trained once

    state = json.loads((out / "tune.json").read_text())
    assert state["stage"] == "done"
    adam = state["tasks"]["rosenbrock_2d"]["optimizers"]["adam"]
    grid_lrs = [lr_at(3e-3, 4, k) for k in (-1, 0, 1)]
    assert grid_lrs == [0.001687, 0.003, 0.005335]
    # The winner of the grid sat on its largest edge: two quarter-decade points were added past it.
    assert adam["widenings"] == [{"round": 1, "winner_lr": 0.005335, "edge": "largest", "added": [0.009487, 0.01687]}]
    assert adam["lrs"] == [*grid_lrs, 0.009487, 0.01687]
    # ... and it still sits there after the one widening allowed: said, not hidden.
    assert adam["winner"]["lr"] == 0.01687 and "still the largest lr tried after 1 widening" in adam["edge"]
    assert adam["winner"]["seeds"] == 2 and adam["winner"]["verdict"] in ("clear", "tied")
    assert "margin" in adam["winner"]["text"] and "SE of the difference" in adam["winner"]["text"]
    assert state["protocol"]["tuning_seeds"] == [0, 1] and state["protocol"]["eval_seeds"] == [1000, 1001, 1002]

    evals = [json.loads(f.read_text()) for f in (out / adam["eval_dir"]).glob("*/run.json")]
    assert sorted(e["config"]["seed"] for e in evals) == [1000, 1001, 1002]
    assert {e["config"]["optimizer"]["lr"] for e in evals} == {0.01687}
    assert "adam" in (out / "report" / "report.md").read_text()
    effort = pd.read_csv(out / "effort.csv")
    assert effort["k"].tolist() == [1, 2, 3, 4, 5] and set(effort["grid_size"]) == {5}
    assert (out / "effort.png").exists()
    md = (out / "tune.md").read_text()
    assert "Stage: **done**" in md and "0.005335 → +0.009487, 0.01687" in md and "1000–1002" in md


@pytest.mark.parametrize("args, message", [
    (["--optimizers", "adam"], "the following arguments are required: --tasks"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "--eval-seeds", "x"], "invalid int value: 'x'"),
    (["--tasks", "rosenbrock_2d,nope", "--optimizers", "adam"], "unknown task nope; available:"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam,adam"], "give distinct comma-separated names"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "optimizer.lr=0.1"], "tune sets optimizer.lr itself"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "trainer.epochs=1,2"], "sweeps; tune sweeps only the lr"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "--tuning-seeds", "0"], "--tuning-seeds must be >= 1"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "--lr-centre", "-1"], "--lr-centre must be a positive"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "--baseline", "sgd"], "--baseline sgd is not one of"),
    # the runs' own checks, before anything is written (a bad override of the second task too)
    (["--tasks", "reddi_online,rosenbrock_2d", "--optimizers", "adam", "task.x0=0.5"],
     "adaxbench tune: error: task.x0 is not a key of task; keys there: name, kind, problem, batch_size, epochs, "
     "lr_schedule, target, noise_level, train_size, start (in the sweep of task rosenbrock_2d)"),
    (["--tasks", "reddi_online", "--optimizers", "adam,adax", "task.x0=1.5"],
     "adaxbench tune: error: task.x0 must be a number in [-1, 1], got 1.5 (in the sweep job task=reddi_online "
     "optimizer=adam"),
    (["--tasks", "rosenbrock_2d", "--optimizers", "adam", "trainer.epochz=1"], "trainer.epochz is not a key of trainer"),
])
def test_tune_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["tune", *args, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()  # nothing written


def test_tune_refuses_to_resume_a_dir_of_another_protocol(tmp_path, capsys):
    out = tmp_path / "t"
    out.mkdir()
    (out / "tune.json").write_text(json.dumps({"protocol": {"tasks": ["quadratic_deep"]}}))
    assert main(["tune", "--tasks", "rosenbrock_2d", "--optimizers", "adam", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a tuning with other tasks" in err and "use a new --out" in err


def test_tune_passes_the_packed_launcher_to_every_sweep(tmp_path):
    out = tmp_path / "tune"
    adaxbench("tune", "--tasks", "quadratic_deep", "--optimizers", "adam", "--lr-centre", "1e-2", "--lr-decades", "0.25",
              "--eval-seeds", "2", "--max-widenings", "0", "--out", str(out), "trainer.epochs=1", "hydra/launcher=packed",
              cwd=ROOT, env={"OMP_NUM_THREADS": "1"}, check=True)
    records = {f.parent.relative_to(out): json.loads(f.read_text()) for f in out.rglob("run.json")}
    assert len(records) == 3 * 2 + 2 and all(r["status"] == "completed" for r in records.values())
    packs = {str(d.parent): r["env"].get("packed", {}).get("members") for d, r in records.items()}
    assert packs == {"tuning/quadratic_deep/grid": 6, "eval/quadratic_deep/adam": 2}
    state = json.loads((out / "tune.json").read_text())
    assert state["stage"] == "done" and state["protocol"]["overrides"] == ["trainer.epochs=1"]  # the launcher is no setting


def test_tune_your_own_optimizer_recorded_under_its_class_name(tmp_path):
    # optimizer=custom records its runs under the class name (RMSprop): tune must still find the winner of
    # `custom`, evaluate it and report it with its recorded name as the baseline.
    out = tmp_path / "tune"
    done = adaxbench("tune", "--tasks", "rosenbrock_2d", "--optimizers", "custom", "--lr-centre", "1e-2",
                     "--lr-decades", "0.25", "--tuning-seeds", "1", "--eval-seeds", "2", "--max-widenings", "0",
                     "--out", str(out), "optimizer._target_=torch.optim.RMSprop", "trainer.epochs=1",
                     "trainer.progress=false", cwd=ROOT, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    state = json.loads((out / "tune.json").read_text())
    winner = state["tasks"]["rosenbrock_2d"]["optimizers"]["custom"]["winner"]
    assert state["stage"] == "done" and winner["lr"] in [lr_at(1e-2, 4, k) for k in (-1, 0, 1)]
    evals = [json.loads(f.read_text()) for f in (out / "eval" / "rosenbrock_2d" / "custom").rglob("run.json")]
    assert len(evals) == 2 and {r["config"]["optimizer"]["name"] for r in evals} == {"RMSprop"}
    assert {r["config"]["optimizer"]["lr"] for r in evals} == {winner["lr"]}
    assert "RMSprop" in (out / "report" / "report.md").read_text()
