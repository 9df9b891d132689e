"""Hydra's Optuna sweeper drives adaxbench: every trial returns its run's selection score (what
`adaxbench best` selects on), a diverged trial the worst value; bad search spaces are one line."""

from __future__ import annotations

import json
import math
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
