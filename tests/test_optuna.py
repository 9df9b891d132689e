"""Hydra's Optuna sweeper drives adaxbench: every trial returns its run's selection score (what
`adaxbench best` selects on), a diverged trial the worst value; bad search spaces are one line."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
import yaml

from adaxbench import cli
from adaxbench.report.best import best_settings, main as best_main
from conftest import adaxbench

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
QUICK = ["task=quadratic_deep", "trainer.epochs=1", "trainer.progress=false"]
OPTUNA = ["hydra/sweeper=optuna", "hydra.sweeper.direction=minimize"]


def sweep(tmp_path: Path, *args: str) -> int:
    seed = [] if "hydra/sweeper/sampler=grid" in args else ["hydra.sweeper.sampler.seed=0"]
    return cli.main(["run", "-m", *OPTUNA, *seed, *args, *QUICK, f"hydra.sweep.dir={tmp_path / 'sweep'}"])


def scores(sweep_dir: Path) -> dict[float, float]:
    """lr -> final train/loss (quadratic_deep's selection metric) of every trial, from run.json."""
    out = {}
    for run in sweep_dir.glob("*/run.json"):
        rec = json.loads(run.read_text())
        loss = rec["final"].get("train/loss") if rec["status"] == "completed" else math.inf
        out[rec["optimizer_hparams"]["lr"]] = loss
    return out


def test_trials_return_the_selection_score(tmp_path, capsys):
    assert sweep(tmp_path, "hydra.sweeper.n_trials=3", "optimizer=adam", "optimizer.lr=tag(log,interval(1e-3,1.0))") == 0
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    tried = scores(tmp_path / "sweep")
    assert len(tried) == 3
    assert results["best_value"] == pytest.approx(min(tried.values()))
    assert results["best_params"]["optimizer.lr"] == min(tried, key=tried.get)
    # `best` reads the sweep like any other and selects the same run; three lrs of a continuous
    # range are no grid, so no "widen the grid" warning.
    assert best_settings(tmp_path / "sweep")["score"].iloc[0] == pytest.approx(results["best_value"])
    capsys.readouterr()
    assert best_main([str(tmp_path / "sweep")]) == 0
    assert "widen the grid" not in capsys.readouterr().err


def test_a_diverged_trial_scores_worst_and_the_study_goes_on(tmp_path):
    assert sweep(tmp_path, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=2", "optimizer=sgd",
                 "optimizer.lr=choice(0.001,1e8)") == 0
    tried = scores(tmp_path / "sweep")
    assert tried[1e8] == math.inf and math.isfinite(tried[0.001])
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_params"]["optimizer.lr"] == 0.001


@pytest.mark.parametrize("launcher", ["packed", "joblib", "submitit_local"])
def test_launchers_report_scores_back(tmp_path, launcher):
    # Two trials at a time: the packed launcher trains them as one pack, joblib in two workers,
    # submitit_local in two processes that send their scores back pickled.
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    if launcher != "packed":
        pytest.importorskip(f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher")
    assert sweep(tmp_path, f"hydra/launcher={launcher}", *extra, "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
                 "optimizer=adam", "optimizer.lr=tag(log,interval(1e-3,1.0))") == 0
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    tried = scores(tmp_path / "sweep")
    assert len(tried) == 2 and results["best_value"] == pytest.approx(min(tried.values()))


@pytest.mark.parametrize("args, message", [
    (["optimizer.lr=tag(log,interval(-1.0,-0.5))"], "optimizer.lr must be a number > 0, got -1.0"),
    (["optimizer.lr=interval(0.001,0.1)", "optimizer.momentum=interval(0.5,1.5)", "optimizer=sgd"],
     "optimizer.momentum must be a number in [0, 1)"),
    (["hydra.sweeper.direction=maximize", "optimizer.lr=interval(0.001,0.1)"], "use hydra.sweeper.direction=minimize"),
])
def test_bad_search_spaces_are_one_line(tmp_path, capsys, args, message):
    assert sweep(tmp_path, "hydra.sweeper.n_trials=1", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "sweep").exists()  # nothing trained


def test_the_preset_runs(tmp_path):
    proc = adaxbench("run", "-m", "experiment=lr_tuning_optuna", "optimizer=adam", "hydra.sweeper.n_trials=2", *QUICK,
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", check=True)
    lrs = list(scores(tmp_path / "sweep"))
    assert len(lrs) == 2 and all(1e-5 <= lr < 1.0 for lr in lrs)
    # What the study says is shown; alembic's "setup plugin ..." lines of Optuna's storage are not.
    assert "[HYDRA] Best value:" in proc.stdout and "setup plugin" not in proc.stdout + proc.stderr


def test_the_sweepers_default_direction_is_accepted(tmp_path, capsys):
    # No hydra.sweeper.direction: the sweeper's default (its enum Direction.minimize) passes the check,
    # so a bad search space is reported for what it is.
    code = cli.main(["run", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "optimizer=adam",
                     "optimizer.lr=interval(-1.0,-0.5)", *QUICK, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "optimizer.lr must be a number > 0, got -1.0" in err[0], err


ROSEN = ["task=rosenbrock_2d", "trainer.epochs=1", "trainer.progress=false"]


def test_best_write_after_the_preset_runs_every_seed_once(tmp_path, capsys, monkeypatch):
    """The preset's Optuna sweeper would sample `seed=0,1` as a choice; the rerun script runs each seed once."""
    sweep_dir = tmp_path / "X"
    assert cli.main(["run", "-m", "experiment=lr_tuning_optuna", *ROSEN, "hydra.sweeper.n_trials=2",
                     f"hydra.sweep.dir={sweep_dir}"]) == 0
    assert best_main([str(sweep_dir), "--write", str(tmp_path / "r.sh"), "--seeds", "3"]) == 0
    commands = [line for line in (tmp_path / "r.sh").read_text().splitlines() if line.startswith("adaxbench")]
    assert len(commands) == 3 and not any(" -m " in c for c in commands)
    monkeypatch.chdir(tmp_path)
    for c in commands:  # as bash runs them
        assert cli.main(shlex.split(c)[1:]) == 0
    reruns = [json.loads(p.read_text()) for p in (tmp_path / "X_best").rglob("run.json")]
    assert sorted(r["config"]["seed"] for r in reruns) == [0, 1, 2]
    assert best_settings(tmp_path / "X_best")["seeds"].iloc[0] == 3


def test_trials_repeating_a_setting_and_seed_count_once(tmp_path, capsys):
    assert sweep(tmp_path, "hydra.sweeper.n_trials=4", "optimizer=adam", "optimizer.lr=choice(0.01,0.02)") == 0
    assert len(list((tmp_path / "sweep").glob("*/run.json"))) == 4
    capsys.readouterr()
    assert best_main([str(tmp_path / "sweep")]) == 0
    out, err = capsys.readouterr()
    assert "[1 seed(s)" in out and "repeats the setting and seed of a later run" in out
    assert "repeat the setting and seed of a later run: each (setting, seed) counted once" in err
    assert cli.main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
    assert "each (setting, seed) counted once" in (tmp_path / "rep" / "report.md").read_text()


def test_an_unseeded_study_relaunched_into_its_dir_says_why_it_stops(tmp_path, capsys):
    args = ["run", "-m", *OPTUNA, "hydra.sweeper.n_trials=1", "optimizer=adam", "optimizer.lr=tag(log,interval(1e-4,1e-1))",
            *ROSEN, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 2  # the unseeded sampler proposes another lr for trial 0
    err = capsys.readouterr().err
    assert "holds a different run" in err and "hydra.sweeper.sampler.seed" in err
    seeded = [*args[:-1], "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={tmp_path / 'seeded'}"]
    assert cli.main(seeded) == 0 and cli.main(seeded) == 0  # the same trial again: it skips the finished run
