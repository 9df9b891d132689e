"""Sweeps: real multiruns through the basic, joblib and submitit_local launchers, failure
isolation, relaunch/skip/resume, the SLURM preset and every experiment preset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from adaxbench.cli import config_options
from adaxbench.train.runner import run_in_dir

from conftest import EVERY_EPOCH, ROOT, adaxbench, comparable, compose_cfg, fake_image_arrays, needs_fmnist, read_run

SMALL = ["trainer.train_limit=256", "trainer.epochs=1", "trainer.log_every=1", "trainer.progress=false",
         "trainer.eval_limit=256"]
# Four jobs: one trains, one diverges (a huge SGD step), two fail at run time (MNIST is nowhere;
# Fashion-MNIST comes from Debian's copy). A bad config value would stop the whole sweep up front.
MIXED = ["optimizer=sgd", "optimizer.lr=0.05,1e12", "task=fmnist_mlp,mnist_mlp",
         "data.root=/nonexistent/adaxbench-data", *SMALL]
STATUSES = {"0": "completed", "1": "failed", "2": "diverged", "3": "failed"}


def _statuses(sweep: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in sorted(sweep.glob("*/run.json"))}


@needs_fmnist
def test_basic_sweep_isolates_failures_and_relaunch_skips_finished(tmp_path):
    sweep = tmp_path / "sweep"
    proc = adaxbench("run", "-m", *MIXED, f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert proc.returncode == 1, proc.stderr  # jobs failed
    assert "1 completed, 1 diverged, 2 failed" in proc.stdout
    assert _statuses(sweep) == STATUSES
    failed, _ = read_run(sweep / "1")
    assert "train-images-idx3-ubyte" in failed["error"] and "not found" in failed["error"]
    started = {j: read_run(sweep / j)[0]["timing"]["started"] for j in ("0", "2")}
    metrics0 = read_run(sweep / "0")[1]

    proc = adaxbench("run", "-m", *MIXED, f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert proc.returncode == 1 and "1 completed, 1 diverged, 2 failed" in proc.stdout
    assert "skipping" in proc.stdout + proc.stderr
    for j in ("0", "2"):  # finished jobs were not rerun
        assert read_run(sweep / j)[0]["timing"]["started"] == started[j]
    pd.testing.assert_frame_equal(read_run(sweep / "0")[1], metrics0)

    # The report of this real sweep: the completed run in the tables, the other two listed.
    out = tmp_path / "report"
    proc = adaxbench("report", str(sweep), "--out", str(out), cwd=ROOT, check=True)
    md = (out / "report.md").read_text()
    assert "fmnist_mlp" in md and "sgd" in md
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["status"]) == ["completed", "diverged", "failed", "failed"]
    not_included = md[md.index("Runs not included"):]
    assert "diverged" in not_included and "failed" in not_included and "not found" in not_included
    assert (out / "report.html").read_text().count("<img") >= 1


@needs_fmnist
def test_relaunch_into_sweep_dir_of_other_jobs_refuses_to_overwrite(tmp_path):
    sweep = tmp_path / "sweep"
    adaxbench("run", "-m", *MIXED[:1], "optimizer.lr=0.05", *SMALL, f"hydra.sweep.dir={sweep}", cwd=ROOT,
              check=True)
    before = (sweep / "0" / "run.json").read_text()
    proc = adaxbench("run", "-m", "optimizer=adam", *SMALL, f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert proc.returncode == 2 and "holds a different run (optimizer=sgd" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (sweep / "0" / "run.json").read_text() == before


@needs_fmnist
def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = adaxbench("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=sgd",
                     "optimizer.lr=0.05,1e12", *SMALL, f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "1 completed, 1 diverged, 0 failed" in proc.stdout
    assert _statuses(sweep) == {"0": "completed", "1": "diverged"}


@needs_fmnist
def test_submitit_local_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = adaxbench("run", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *MIXED,
                     f"hydra.sweep.dir={sweep}", cwd=ROOT, timeout=400)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 completed, 1 diverged, 2 failed" in proc.stdout
    assert _statuses(sweep) == STATUSES
    assert list((sweep / ".submitit").iterdir())  # each job went through submitit


@needs_fmnist
def test_sweep_job_killed_midway_resumes_on_relaunch(tmp_path):
    """A sweep relaunched after its job was SIGKILLed continues from the last checkpoint
    and ends with exactly the metrics of an uninterrupted run."""
    import subprocess
    import sys

    args = ["optimizer=adam", "trainer.train_limit=1024", "trainer.epochs=3", "trainer.log_every=3",
            "trainer.progress=false", "trainer.eval_limit=512", EVERY_EPOCH]
    straight = tmp_path / "straight"
    adaxbench("run", "-m", *args, f"hydra.sweep.dir={straight}", cwd=ROOT, check=True)
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "adaxbench", "run", "-m", *args, f"hydra.sweep.dir={sweep}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            # run.json is written first, then the checkpoint that continues it
            if json.loads((sweep / "0" / "run.json").read_text())["progress"]["epoch"] >= 1 and \
                    (sweep / "0" / "checkpoint.pt").exists():
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert read_run(sweep / "0")[0]["status"] == "running"
    out = adaxbench("run", "-m", *args, f"hydra.sweep.dir={sweep}", cwd=ROOT, check=True)
    assert "1 completed, 0 diverged, 0 failed" in out.stdout
    info, metrics = read_run(sweep / "0")
    assert info["progress"]["resumed_from_epoch"] >= 1
    pd.testing.assert_frame_equal(comparable(metrics), comparable(read_run(straight / "0")[1]))


def test_slurm_gpu_preset_reads_the_environment(monkeypatch):
    monkeypatch.setenv("ADAXBENCH_SLURM_PARTITION", "gpu-long")
    monkeypatch.setenv("ADAXBENCH_SLURM_ACCOUNT", "optlab")
    monkeypatch.setenv("ADAXBENCH_SLURM_TIME_MIN", "720")
    with initialize_config_module(config_module="adaxbench.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu-long" and launcher.account == "optlab" and launcher.timeout_min == 720
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.max_num_timeout > 0
    assert launcher.qos is None


def _sweep_params(experiment: str) -> dict[str, list[str]]:
    with initialize_config_module(config_module="adaxbench.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


EXPECTED = {
    "beta2_ablation": {"task": {"fmnist_mlp", "fmnist_2c2d", "cifar10_3c3d"},
                       "optimizer": {"sched_adam", "sched_adax", "sched_adafactor"}},
    "adax_paper_cifar10": {"+setting/adax_paper": {"sgd", "adam", "amsgrad", "adamw", "adax", "adaxw"}},
    "reddi": {"+setting/reddi": {"adam", "amsgrad", "adax"}},
    "lr_tuning": {"optimizer": {"sgd", "adam", "amsgrad", "adax", "adaxw", "sched_adafactor"}},
    "beta2_ablation_cpu": {"optimizer": {"sched_adam", "sched_adax", "sched_adafactor", "adam", "adax"}},
    "beta2_ablation_v2": {"optimizer": {"sched_adam", "sched_adax", "sched_adafactor", "sched_adax_nobc"},
                          "seed": {"1000", "1001"}},
    "beta2_ablation_gpu": {"optimizer": {"sched_adam", "sched_adax", "sched_adafactor", "sched_adax_nobc"},
                           "seed": {"1000", "1001"}},
    "deepobs_validation": {"+setting/deepobs": {f"{t}_{o}" for t in ("fmnist_2c2d", "cifar10_3c3d")
                                                for o in ("sgd", "momentum", "adam")}},
}


def _fake_image_data(monkeypatch):
    from adaxbench.tasks import datasets, image

    def fake_load(name, root, download=False):
        if name == "fashion_mnist" and Path("/usr/share/datasets/fashion-mnist").exists():
            return datasets.load_dataset(name, root, download)
        return fake_image_arrays(name, n_train=160, n_test=32)

    monkeypatch.setattr(image, "load_dataset", fake_load)


# Grid presets (the Optuna preset samples its search space: tests/test_optuna.py runs it).
@pytest.mark.parametrize("experiment", sorted(set(config_options("experiment")) - {"lr_tuning_optuna"}))
def test_experiment_presets_compose_and_their_first_job_runs(experiment, tmp_path, monkeypatch):
    params = _sweep_params(experiment)
    for key, values in EXPECTED.get(experiment, {}).items():
        assert set(params[key]) == values
    assert "seed" in params or experiment in ("lr_tuning", "reddi", "beta2_ablation_cpu")  # tuning: one seed
    # The first job of the sweep, composed as the sweeper would, must compose and take steps.
    first = [f"experiment={experiment}"] + [f"{k}={v[0]}" for k, v in params.items()]
    cfg = compose_cfg(first + ["trainer.epochs=1", "trainer.log_every=1", "trainer.progress=false"])
    if experiment == "adax_paper_cifar10":
        assert cfg.task.name == "cifar10_resnet20" and cfg.lr_schedule.milestones == [100, 150]
        assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.1 and cfg.optimizer.weight_decay == 5e-4
    if experiment == "reddi":
        assert cfg.optimizer.betas == [0.9, 0.99] and cfg.lr_schedule.name == "inverse_sqrt"
    _fake_image_data(monkeypatch)
    small = ["trainer.train_limit=128", "task.valid_size=32", "task.train_eval_size=32"] if cfg.task.kind == "image" \
        else (["task.steps_per_epoch=20"] if "steps_per_epoch" in cfg.task else [])
    cfg = compose_cfg(first + small + ["trainer.epochs=1", "trainer.log_every=1", "trainer.progress=false"])
    result = run_in_dir(cfg, tmp_path / "run")
    assert result.status in ("completed", "diverged"), result.error
    assert read_run(tmp_path / "run")[1]["step"].max() > 0


@pytest.mark.parametrize("setting", ["adax_paper/" + s for s in config_options("setting/adax_paper")]
                         + ["deepobs/" + s for s in config_options("setting/deepobs")]
                         + ["reddi/" + s for s in config_options("setting/reddi")])
def test_every_setting_composes_to_a_valid_config(setting):
    from adaxbench.train.validate import check_config

    group, option = setting.split("/")
    cfg = compose_cfg([f"+setting/{group}={option}"])
    check_config(cfg)
    name = option.rsplit("_", 1)[-1] if group == "deepobs" else option
    expected = {"momentum": "sgd"}.get(name, name)
    assert cfg.optimizer.name == expected
    if group == "deepobs":
        assert cfg.task.name == option.rsplit("_", 1)[0]


def test_a_seed_per_job_from_hydra_job_num_passes_the_checks(tmp_path):
    # The up-front check composes each job as the launcher will, numbered: seed=${hydra:job.num} is 0, 1.
    proc = adaxbench("run", "-m", "task=rosenbrock_2d", "trainer.epochs=1", "trainer.progress=false",
                     "optimizer.lr=0.01,0.02", "seed=${hydra:job.num}", f"hydra.sweep.dir={tmp_path}",
                     env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    seeds = {json.loads((tmp_path / str(k) / "run.json").read_text())["config"]["seed"] for k in (0, 1)}
    assert seeds == {0, 1}
