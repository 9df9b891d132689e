"""The Python API leaves the records of the command line: adaxbench.run / load_runs / report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import adaxbench
import plugin_user_code as user
from conftest import ROOT, comparable, read_run
from adaxbench import cli

QUICK = ["task=quadratic_deep", "trainer.epochs=1", "trainer.log_every=2", "trainer.progress=false", "seed=3"]


def test_import_is_light():
    code = "import sys, adaxbench; adaxbench.__version__; print(sorted(m for m in ('torch', 'hydra', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run from the command line and from Python, and a user optimizer class from Python."""
    root = tmp_path_factory.mktemp("runs")
    # The real `adaxbench run` entry, in this process.
    assert cli.main(["run", "optimizer=sgd", "optimizer.lr=0.01", *QUICK, f"hydra.run.dir={root}/cli"]) == 0
    api = adaxbench.run("sgd", QUICK, lr=0.01, run_dir=root / "api")
    own = adaxbench.run(user.SignSGD, ["task.batch_size=32", "task.epochs=1", "trainer.progress=false"],
                        task=user.LeastSquares, lr=0.05, run_dir=root / "own")
    return root, api, own


def test_run_records_what_the_cli_records(runs):
    root, api, _ = runs
    assert api.status == "completed" and api.error is None and api.run_dir == root / "api"
    cli_info, cli_metrics = read_run(root / "cli")
    api_info, api_metrics = read_run(root / "api")
    assert api_info["config"] == cli_info["config"]
    pd.testing.assert_frame_equal(comparable(api_metrics), comparable(cli_metrics))
    assert api.final == api_info["final"] == cli_info["final"]
    for name in ("run.json", "metrics.parquet", ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (root / "api" / name).is_file() and (root / "cli" / name).is_file(), name
    # A finished run keeps no checkpoint (trainer.keep_checkpoint=false), from either entry.
    assert not (root / "api" / "checkpoint.pt").exists() and not (root / "cli" / "checkpoint.pt").exists()
    assert api_info["overrides"] == ["optimizer=sgd", "++optimizer.lr=0.01", *QUICK]
    pd.testing.assert_frame_equal(api.metrics, api_metrics)


def test_run_with_an_optimizer_class(runs):
    root, _, own = runs
    info, metrics = read_run(own.run_dir)
    assert own.status == "completed"
    assert info["config"]["optimizer"] == {"name": "SignSGD", "_target_": "plugin_user_code.SignSGD", "lr": 0.05}
    assert info["env"]["plugins"]["optimizer"]["qualname"] == "SignSGD"
    assert info["overrides"][:4] == ["optimizer=custom", "optimizer._target_=plugin_user_code.SignSGD",
                                     "task=custom", "task._target_=plugin_user_code.LeastSquares"]
    # One full-batch step from w = 0: w1 = lr * sign(X^T y) (the gradient of mean (Xw - y)^2 is -2/n X^T y).
    task = user.LeastSquares(32, device=torch.device("cpu"), seed=0)
    x, y = user.as_numpy(task.x), user.as_numpy(task.y)
    w1 = 0.05 * np.sign(x.T @ y)
    assert own.final["test/loss"] == pytest.approx(np.mean((x @ w1 - y) ** 2), rel=1e-12)


def test_run_rejects_bad_config_in_one_line(tmp_path):
    with pytest.raises(adaxbench.ConfigError, match="optimizer.betas is not a hyperparameter of plugin_user_code.SignSGD"):
        adaxbench.run(user.SignSGD, QUICK, lr=0.1, betas=(0.9, 0.99), run_dir=tmp_path / "r")
    # A bad override in the command line's words, not Hydra's.
    with pytest.raises(adaxbench.ConfigError, match=r"^trainer.epoch is not a key of trainer \(did you mean trainer.epochs\?\)"):
        adaxbench.run("adam", ["trainer.epoch=1"], run_dir=tmp_path / "s")
    for override, message in (("trainer.epochs=abc", "trainer.epochs must be an integer or null, got 'abc'"),
                              ("~trainer.device", "trainer.device cannot be deleted (~trainer.device)"),
                              ("~seed", "seed is missing (deleted by a ~ override?)"),
                              ("lr_schedule=null", "lr_schedule=null: leave lr_schedule out")):
        with pytest.raises(adaxbench.ConfigError) as err:
            adaxbench.run("adam", [*QUICK, override], run_dir=tmp_path / "s")
        assert str(err.value).startswith(message)
    assert not (tmp_path / "s").exists()

    class Local(torch.optim.SGD):
        pass

    with pytest.raises(adaxbench.ConfigError, match="defined inside a function; define it at module level"):
        adaxbench.run(Local, QUICK, lr=0.1, run_dir=tmp_path / "t")


@pytest.mark.parametrize("kwargs, message", [
    ({"logger": "tensorbord"}, "unknown logger 'tensorbord'; available: custom, many, none, tensorboard, wandb "
                               "(did you mean tensorboard?)"),
    ({"task": "quadratic_dep"}, "unknown task 'quadratic_dep'; available: cifar100_3c3d, "),
    ({"optimizer": "adamx"}, "unknown optimizer 'adamx'; available: adafactor, "),
])
def test_a_typo_in_a_config_name_gets_the_choices_as_on_the_command_line(kwargs, message, tmp_path, capsys):
    with pytest.raises(adaxbench.ConfigError) as e:
        adaxbench.run(**{"optimizer": "adam", **kwargs}, overrides=["trainer.epochs=1"], run_dir=tmp_path / "r")
    assert str(e.value).startswith(message) and "\n" not in str(e.value) and "(did you mean " in str(e.value)
    group, value = next(iter(kwargs.items()))
    assert cli.main(["run", f"{group}={value}", f"hydra.run.dir={tmp_path / 'r'}"]) == 2
    assert capsys.readouterr().err == f"adaxbench: error: {e.value}\n"
    assert not (tmp_path / "r").exists()


def test_run_never_overwrites_another_run(runs):
    root, api, _ = runs
    before = {p: p.read_bytes() for p in sorted((root / "api").rglob("*")) if p.is_file()}
    with pytest.raises(adaxbench.ConfigError, match="holds a different run"):
        adaxbench.run("adam", QUICK, run_dir=root / "api")
    assert {p: p.read_bytes() for p in sorted((root / "api").rglob("*")) if p.is_file()} == before


def test_load_runs_is_one_tidy_frame(runs):
    root, api, own = runs
    df = adaxbench.load_runs(root)
    assert len(df) == 3 and df.run_dir.tolist() == sorted(str(root / d) for d in ("api", "cli", "own"))
    row = df.set_index("run_dir").loc[str(root / "own")]
    assert (row.status, row.task, row.optimizer, row["optimizer.lr"], row["optimizer._target_"]) == \
        ("completed", "LeastSquares", "SignSGD", 0.05, "plugin_user_code.SignSGD")
    assert row["test/loss"] == own.final["test/loss"] and pd.isna(row.error)
    api_row = df.set_index("run_dir").loc[str(root / "api")]
    assert api_row["train/loss"] == api.final["train/loss"] and api_row["seed"] == 3
    assert api_row["task.batch_size"] == 128 and api_row["optimizer.name"] == "sgd"
    assert "final.test/loss" not in df.columns and "config" not in df.columns


def test_report_writes_what_the_cli_writes(runs, tmp_path):
    root = runs[0]
    rep = adaxbench.report(root / "api", root / "cli", out=tmp_path / "api", figures=False, baseline="sgd")
    assert cli.main(["report", str(root / "api"), str(root / "cli"), "--out", str(tmp_path / "cli"), "--no-figures",
                     "--baseline", "sgd"]) == 0
    names = sorted(p.relative_to(tmp_path / "api").as_posix() for p in rep.files)
    assert "report.md" in names and "summary.csv" in names
    for name in ("summary.csv", "aggregate.csv"):
        api_csv, cli_csv = pd.read_csv(tmp_path / "api" / name), pd.read_csv(tmp_path / "cli" / name)
        pd.testing.assert_frame_equal(api_csv.drop(columns=["path"], errors="ignore"),
                                      cli_csv.drop(columns=["path"], errors="ignore"))
    import adaxbench.report as package  # once imported, the name is the package: still callable
    assert package is adaxbench.report and package(root, out=tmp_path / "again", figures=False).files


def test_run_into_a_dir_another_process_trains_is_refused_with_nothing_written(tmp_path):
    """A new run into a dir whose lock a live process holds: ConfigError naming the dir; its .hydra/ kept."""
    from filelock import FileLock

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("the other process's config\n")
    with FileLock(tmp_path / ".lock"), pytest.raises(adaxbench.ConfigError) as e:
        adaxbench.run("sgd", QUICK, run_dir=tmp_path)
    assert str(e.value) == (f"{tmp_path}: another live process is training it (it holds {tmp_path / '.lock'}); "
                            "wait for it, or choose another run_dir")
    assert [p.name for p in (tmp_path / ".hydra").iterdir()] == ["config.yaml"]
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "the other process's config\n"
    assert not (tmp_path / "run.json").exists()
