"""Thread budgets: each job of a parallel launcher uses its share of the CPUs it may use."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from adaxbench.train import threads
from adaxbench.train.runner import run_in_dir
from adaxbench.train.validate import ConfigError, check_config

from conftest import ROOT, compose_cfg, read_run

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


@pytest.mark.parametrize("value,expected", [("auto", None), (None, None), (1, 1), (4, 4), ("3", 3)])
def test_threads_setting(value, expected):
    assert threads.parse_setting(value) == expected


@pytest.mark.parametrize("value", [0, -2, "many", 1.5, True])
def test_bad_threads_setting_is_a_config_error(value):
    with pytest.raises(ValueError, match="trainer.threads must be auto or an integer >= 1"):
        threads.parse_setting(value)
    cfg = compose_cfg(["task=quadratic_deep"])
    cfg.trainer.threads = value
    with pytest.raises(ConfigError, match="trainer.threads must be auto or an integer >= 1"):
        check_config(cfg)


def _cgroup(tmp_path: Path, proc_line: str, files: dict[str, str]) -> int | None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "self_cgroup").write_text(proc_line + "\n")
    return threads.cgroup_cpu_limit(tmp_path / "fs", tmp_path / "self_cgroup")


def test_cgroup_v2_quota(tmp_path):
    assert _cgroup(tmp_path, "0::/job/step", {"fs/job/step/cpu.max": "150000 100000\n"}) == 2  # 1.5 CPUs -> 2
    assert _cgroup(tmp_path, "0::/job/step", {"fs/job/step/cpu.max": "max 100000\n"}) is None


def test_cgroup_v2_quota_of_a_parent_limits_its_children(tmp_path):
    files = {"fs/job/step/cpu.max": "max 100000\n", "fs/job/cpu.max": "100000 100000\n"}
    assert _cgroup(tmp_path, "0::/job/step", files) == 1


def test_cgroup_v1_quota(tmp_path):
    line = "4:cpu,cpuacct:/slurm/job_7"
    files = {"fs/cpu,cpuacct/slurm/job_7/cpu.cfs_quota_us": "300000\n",
             "fs/cpu,cpuacct/slurm/job_7/cpu.cfs_period_us": "100000\n"}
    assert _cgroup(tmp_path, line, files) == 3
    files["fs/cpu,cpuacct/slurm/job_7/cpu.cfs_quota_us"] = "-1\n"
    assert _cgroup(tmp_path, line, files) is None


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert threads.cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


def test_usable_cpus_affinity_and_slurm(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # left over outside a job: ignored
    assert threads.usable_cpus() == (4, "4 CPUs in the affinity mask")
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 3)
    assert threads.usable_cpus() == (3, "cgroup CPU quota of 3")
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert threads.usable_cpus() == (2, "SLURM_CPUS_PER_TASK=2")


@pytest.mark.parametrize("launcher,sweep_jobs,cpus,expected", [
    (None, 4, 2, 1),                                    # a single run or the basic launcher
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 4, 2, 1),
    ({"_target_": JOBLIB, "n_jobs": 2}, 4, 2, 2),
    ({"_target_": JOBLIB, "n_jobs": 8}, 3, 16, 3),      # never more jobs than the sweep has
    ({"_target_": JOBLIB, "n_jobs": -1}, 10, 4, 4),     # joblib: -1 = every CPU
    ({"_target_": JOBLIB, "n_jobs": -2}, 10, 4, 3),
    ({"_target_": LOCAL}, 4, 2, 4),                     # submitit_local starts the whole sweep
    ({"_target_": SLURM}, 4, 2, 1),                     # SLURM gives each job its own CPUs
])
def test_jobs_at_once(launcher, sweep_jobs, cpus, expected):
    assert threads.jobs_at_once(launcher, sweep_jobs, cpus) == expected


def test_budget_is_the_share_of_the_cpus(monkeypatch):
    monkeypatch.setattr(threads, "_USER_OMP", None)
    monkeypatch.setattr(threads, "usable_cpus", lambda: (2, "2 CPUs in the affinity mask"))
    assert threads.choose("auto") == threads.Budget(2, "2 CPUs in the affinity mask")
    assert threads.choose("auto", {"_target_": LOCAL}, 4) == \
        threads.Budget(1, "2 CPUs in the affinity mask, 4 jobs at once")
    assert threads.choose("auto", {"_target_": JOBLIB, "n_jobs": 2}, 4).threads == 1
    monkeypatch.setattr(threads, "usable_cpus", lambda: (16, "16 CPUs in the affinity mask"))
    assert threads.choose("auto", {"_target_": JOBLIB, "n_jobs": 4}, 8).threads == 4
    assert threads.choose(3, {"_target_": LOCAL}, 4) == threads.Budget(3, "trainer.threads=3")
    monkeypatch.setattr(threads, "_USER_OMP", "2")  # the user's OMP_NUM_THREADS is an upper bound
    assert threads.choose("auto").threads == 2 and "OMP_NUM_THREADS=2" in threads.choose("auto").reason


def test_sweep_size_counts_the_jobs_the_launcher_gets_at_once():
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": {"seed": "0,1,2"}, "max_batch_size": None},
                                      "overrides": {"task": ["optimizer=adam,adax", "trainer.epochs=1"]}}})
    assert threads.sweep_size(cfg) == 6
    cfg.hydra.sweeper.max_batch_size = 4
    assert threads.sweep_size(cfg) == 4
    assert threads.sweep_size(OmegaConf.create({})) is None


def test_run_applies_and_records_its_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        cfg = compose_cfg(["task=quadratic_deep", "trainer.epochs=1", "trainer.progress=false", "trainer.threads=3"])
        assert run_in_dir(cfg, tmp_path / "run").status == "completed"
        assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
        env = read_run(tmp_path / "run")[0]["env"]
        assert env["threads"] == 3 and env["threads_reason"] == "trainer.threads=3"
    finally:
        torch.set_num_threads(before)
        os.environ["OMP_NUM_THREADS"] = "1"


def test_submitit_local_jobs_share_the_cpus(tmp_path):
    """Jobs started at once on this machine: each gets cpus // jobs threads (at least 1)."""
    import subprocess

    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HYDRA_FULL_ERROR")}
    proc = subprocess.run([sys.executable, "-m", "adaxbench", "run", "-m", "hydra/launcher=submitit_local",
                           "task=quadratic_deep", "task.train_size=256", "trainer.epochs=1", "trainer.progress=false",
                           "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cpus, _ = threads.usable_cpus()
    for job in range(2):
        info = json.loads((sweep / str(job) / "run.json").read_text())
        assert info["env"]["threads"] == max(1, cpus // 2), info["env"]
        assert "2 jobs at once" in info["env"]["threads_reason"]
