"""The command line end to end, in subprocesses: list, run, help, bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import SMOKE, adaxbench, needs_fmnist, read_run


def test_list_shows_every_group():
    out = adaxbench("list", check=True).stdout
    for name in ("fmnist_mlp", "cifar10_resnet20", "reddi_online", "adam", "adax", "adaxw", "sched_adafactor",
                 "inverse_sqrt", "beta2_ablation", "adax_paper_cifar10", "submitit_slurm", "slurm_gpu"):
        assert name in out


def test_list_shows_the_sweepers(capsys):
    from adaxbench import cli

    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    sweepers = lines[lines.index("sweepers (hydra/sweeper=NAME):") + 1].split()
    assert sweepers[0] == "basic"
    assert ("optuna" in sweepers) == (importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None)


def test_console_script_installed():
    script = Path(sys.executable).parent / "adaxbench"
    assert script.exists(), "pip install -e . should create the adaxbench console script"
    import subprocess
    assert subprocess.run([str(script), "list"], capture_output=True).returncode == 0


def test_usage_and_unknown_command():
    proc = adaxbench()
    assert proc.returncode == 2 and "usage: adaxbench" in proc.stdout
    proc = adaxbench("trian")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "adaxbench: error: unknown command 'trian'; available: run, list, report, best, tune"


def test_run_help_and_cfg_job():
    proc = adaxbench("run", "--help", check=True)
    assert "optimizer: " in proc.stdout and "adax" in proc.stdout and "Examples" in proc.stdout
    proc = adaxbench("run", "--cfg", "job", "optimizer=adax", "optimizer.lr=3e-3", check=True)
    assert "_target_: adaxbench.optim.AdaX" in proc.stdout and "lr: 0.003" in proc.stdout


# The whole catalogue of bad inputs runs in-process in test_validation.py; here two of them go
# through a real process, to prove the exit status and the single stderr line end to end.
@pytest.mark.parametrize("args, expected", [
    (["-m", "optimizer=adam,nope"], "unknown optimizer 'nope'"),
    (["optimizer.lr=fast"], "optimizer.lr must be a number > 0, got 'fast'"),
])
def test_bad_input_is_one_line_exit_2(args, expected, tmp_path):
    proc = adaxbench("run", f"hydra.run.dir={tmp_path}/run", "hydra.sweep.dir=" + str(tmp_path / "sweep"), *args)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_data_is_one_line_exit_2(tmp_path):
    proc = adaxbench("run", "task=mnist_mlp", f"data.root={tmp_path}/nodata", f"hydra.run.dir={tmp_path}/run",
                     "trainer.progress=false")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "train-images-idx3-ubyte" in proc.stderr and "data.download=true" in proc.stderr
    info, _ = read_run(tmp_path / "run")
    assert info["status"] == "failed"


@needs_fmnist
def test_run_end_to_end(tmp_path):
    proc = adaxbench("run", "optimizer=adax", *SMOKE, cwd=tmp_path, check=True)
    run_dirs = [p.parent for p in (tmp_path / "runs").glob("*/*/run.json")]  # default runs/<date>/<time>
    assert len(run_dirs) == 1, proc.stderr
    info, metrics = read_run(run_dirs[0])
    assert info["status"] == "completed" and info["config"]["optimizer"]["name"] == "adax"
    batch = metrics[metrics.split == "batch"]
    assert {"beta2_hat", "eff_lr_mean", "eff_lr_median"} <= set(batch.metric)
    # AdaX's beta2_hat at step t: 1 - b2 / ((1 + b2)^t - 1) with b2 = 1e-4 (the paper's schedule).
    row = batch[batch.metric == "beta2_hat"].iloc[-1]
    t = int(row.step)
    assert row.value == pytest.approx(1 - 1e-4 / ((1 + 1e-4) ** t - 1), rel=1e-6)
    assert (run_dirs[0] / ".hydra" / "config.yaml").exists()
    assert json.loads((run_dirs[0] / "run.json").read_text())["overrides"][0] == "optimizer=adax"
