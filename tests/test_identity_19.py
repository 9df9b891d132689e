"""Runs of one setting pool however they were made (CLI, Python API, any spelling of a class), and
`best --write` reruns them: the seeds of a winner, each once, with the overrides its runs recorded."""

from __future__ import annotations

import json
import shlex

import pytest
import torch

import adaxbench
from adaxbench import cli
from adaxbench.report.best import main as best_main
from adaxbench.report.load import load_runs

QUICK = ["task=rosenbrock_2d", "trainer.epochs=1", "trainer.progress=false"]


def cli_run(tmp_path, name, *overrides):
    assert cli.main(["run", *overrides, *QUICK, f"hydra.run.dir={tmp_path / 'D' / name}"]) == 0


def api_run(tmp_path, name, optimizer, *overrides, **hyper):
    assert adaxbench.run(optimizer, [*QUICK, *overrides], run_dir=tmp_path / "D" / name, **hyper).status == "completed"


def settings_of(tmp_path):
    """optimizer name -> seeds per setting."""
    runs = load_runs([tmp_path / "D"]).runs
    return {name: sorted(g.groupby("setting")["seed"].apply(lambda s: sorted(s)).tolist())
            for name, g in runs.groupby("optimizer")}


def test_best_write_reruns_api_and_cli_runs(tmp_path, capsys, monkeypatch):
    api_run(tmp_path, "a", "adam", lr=1e-2)   # recorded as ++optimizer.lr=0.01
    api_run(tmp_path, "b", "adam", lr=1e-3)
    cli_run(tmp_path, "c", "optimizer=adam", "optimizer.lr=0.01", "seed=1")  # pools with a
    assert settings_of(tmp_path) == {"adam": [[0], [0, 1]]}
    assert best_main([str(tmp_path / "D"), "--write", str(tmp_path / "r.sh"), "--seeds", "2"]) == 0
    commands = [c for c in (tmp_path / "r.sh").read_text().splitlines() if c.startswith("adaxbench")]
    assert len(commands) == 1 and "optimizer.lr=0.01" in commands[0]
    monkeypatch.chdir(tmp_path)
    assert cli.main(shlex.split(commands[0])[1:]) == 0
    reruns = [json.loads(p.read_text()) for p in (tmp_path / "D_best").rglob("run.json")]
    assert sorted((r["config"]["seed"], r["optimizer_hparams"]["lr"]) for r in reruns) == [(0, 0.01), (1, 0.01)]


def test_targets_and_collections_in_api_overrides_still_need_allow_targets(tmp_path, capsys):
    from adaxbench.report.best import override_problem

    config = {"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}}
    assert override_problem("++optimizer.lr=0.01", config) is None
    assert "dict or list" in override_problem("++optimizer.betas=[0.9,0.9]", config)
    assert "_target_" in override_problem("++optimizer._target_=os.system", config)
    assert override_problem("++optimizer.betas=[0.9,0.9]", config, allow_targets=True) is None


def test_one_torch_class_is_one_setting_whatever_its_spelling(tmp_path):
    cli_run(tmp_path, "cli", "optimizer=custom", "optimizer._target_=torch.optim.Adam", "optimizer.lr=3e-4")
    cli_run(tmp_path, "alias", "optimizer=custom", "optimizer._target_=torch.optim.adam.Adam", "optimizer.lr=3e-4",
            "seed=1")
    api_run(tmp_path, "api", torch.optim.Adam, "seed=2", lr=3e-4)
    cli_run(tmp_path, "shipped", "optimizer=adam", "optimizer.lr=3e-4")  # the named config keeps its name
    assert settings_of(tmp_path) == {"Adam": [[0, 1, 2]], "adam": [[0]]}


def test_a_base_optimizer_class_is_one_setting_whatever_its_spelling(tmp_path):
    po = pytest.importorskip("pytorch_optimizer")
    cli_run(tmp_path, "cli", "optimizer=custom", "optimizer._target_=pytorch_optimizer.SAM",
            "+optimizer.base_optimizer._target_=hydra.utils.get_class", "+optimizer.base_optimizer.path=torch.optim.SGD",
            "+optimizer.lr=1e-4")
    api_run(tmp_path, "api", po.SAM, "seed=1", base_optimizer=torch.optim.SGD, lr=1e-4)  # recorded torch.optim.sgd.SGD
    assert settings_of(tmp_path) == {"SAM": [[0, 1]]}


def test_recorded_hyperparameters_are_what_the_class_was_built_with(tmp_path):
    po = pytest.importorskip("pytorch_optimizer")
    cli_run(tmp_path, "prodigy", "optimizer=custom", "optimizer._target_=pytorch_optimizer.Prodigy")
    api_run(tmp_path, "sf", po.ScheduleFreeAdamW, lr=1e-3)
    api_run(tmp_path, "sam", po.SAM, base_optimizer=torch.optim.SGD, lr=1e-4, momentum=0.9)  # via **kwargs
    recorded = {n: json.loads((tmp_path / "D" / n / "run.json").read_text())["optimizer_hparams"]
                for n in ("prodigy", "sf", "sam")}
    # Prodigy's constructor defaults (Mishchenko & Defazio 2023: d0=1e-6, growth_rate=inf), not its state.
    assert recorded["prodigy"]["d0"] == 1e-6 and recorded["prodigy"]["lr"] == 1.0
    assert not {"d", "d_max", "step", "k"} & set(recorded["prodigy"])
    assert recorded["sf"]["lr"] == 1e-3 and not {"train_mode", "weight_sum", "lr_max"} & set(recorded["sf"])
    assert recorded["sam"]["momentum"] == 0.9 and recorded["sam"]["rho"] == 0.05
    # The report's hyperparameters say what was computed, not how (torch's foreach, fused...).
    from adaxbench.report.analysis import setting_hparams

    cli_run(tmp_path, "adam", "optimizer=adam")
    rs = load_runs([tmp_path / "D" / "adam"])
    shown = setting_hparams(rs, rs.runs["setting"].iloc[0])
    assert shown["lr"] == 1e-3 and not {"foreach", "fused", "capturable", "differentiable"} & set(shown)
