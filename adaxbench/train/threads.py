"""Thread budget of one training process: its share of the CPUs it may use.

torch starts one intra-op thread per core.  Four sweep jobs started side by side on two
cores (submitit_local, joblib, SLURM jobs sharing a node) then run eight spinning OpenMP
threads on two cores and train up to 5x slower than one after another.  ``configure``
runs at the start of every job and sets torch's threads (and OMP/MKL/OpenBLAS for any
child process) to

    usable CPUs // jobs running at once

where the usable CPUs are the affinity mask, capped by the cgroup CPU quota and by
SLURM's allocation (SLURM_CPUS_PER_TASK), and the jobs running at once come from the
launcher (joblib's n_jobs, every job for submitit_local; SLURM gives each job its own
CPUs, so 1 there) and the size of the sweep.  An OMP_NUM_THREADS set by the user is
an upper bound; ``trainer.threads=N`` overrides all of it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ..errors import ConfigError

# Set by the launching process (ThreadBudget callback) for its jobs: the most jobs of
# the sweep that a launcher can start at once.
SWEEP_JOBS_ENV = "ADAXBENCH_SWEEP_JOBS"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# The user's own OMP_NUM_THREADS, read before ``configure`` writes its own value.
_USER_OMP = os.environ.get("OMP_NUM_THREADS")


@dataclass(frozen=True)
class Budget:
    threads: int
    reason: str


def parse_setting(value: Any) -> int | None:
    """``trainer.threads``: None for ``auto``, else a positive int (ConfigError otherwise)."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())) \
            or int(value) < 1:
        raise ConfigError(f"trainer.threads must be auto or an integer >= 1, got {value!r}")
    return int(value)


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup") -> int | None:
    """CPUs allowed by the CFS quota of this process's cgroup (v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us``), rounded up; None when unlimited or unreadable."""
    root = Path(root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    candidates: list[tuple[Path, str]] = []  # (directory, "v1" | "v2")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2
            bases = [(root, "v2")]
        elif "cpu" in controllers.split(","):
            bases = [(root / controllers, "v1"), (root / "cpu,cpuacct", "v1"), (root / "cpu", "v1")]
        else:
            continue
        for base, kind in bases:
            parts = Path(rel).parts
            # The cgroup and its ancestors (a parent's quota limits its children too).
            for i in range(len(parts), -1, -1):
                candidates.append((base.joinpath(*parts[:i]), kind))
    limits = []
    for directory, kind in candidates:
        try:
            if kind == "v2":
                quota, period = (directory / "cpu.max").read_text().split()[:2]
                if quota == "max":
                    continue
            else:
                quota = (directory / "cpu.cfs_quota_us").read_text().strip()
                period = (directory / "cpu.cfs_period_us").read_text().strip()
                if int(quota) < 0:
                    continue
            limits.append(max(1, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError):
            continue
    return min(limits) if limits else None


def usable_cpus() -> tuple[int, str]:
    """How many CPUs this process may run on, and what decided it."""
    if hasattr(os, "sched_getaffinity"):
        n, why = len(os.sched_getaffinity(0)), "CPUs in the affinity mask"
    else:
        n, why = os.cpu_count() or 1, "CPUs"
    reason = f"{n} {why}"
    quota = cgroup_cpu_limit()
    if quota is not None and quota < n:
        n, reason = quota, f"cgroup CPU quota of {quota}"
    slurm = os.environ.get("SLURM_CPUS_PER_TASK") if os.environ.get("SLURM_JOB_ID") else None
    if slurm and slurm.isdigit() and 0 < int(slurm) < n:
        n, reason = int(slurm), f"SLURM_CPUS_PER_TASK={slurm}"
    return n, reason


def jobs_at_once(launcher: dict[str, Any] | None, sweep_jobs: int | None, cpus: int) -> int:
    """Jobs of a sweep running side by side on these CPUs under ``launcher`` (its Hydra config)."""
    if not launcher:
        return 1
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = launcher.get("n_jobs")
        n_jobs = 1 if n_jobs is None else int(n_jobs)
        if n_jobs < 0:  # joblib: -1 = every CPU, -2 = all but one, ...
            n_jobs = max(cpus + 1 + n_jobs, 1)
        return max(1, min(n_jobs, sweep_jobs) if sweep_jobs else n_jobs)
    if target.endswith("LocalLauncher"):  # submitit_local starts every job of the sweep at once
        return max(1, sweep_jobs or 1)
    return 1  # basic launcher: one after another; SLURM: each job has its own CPUs


def choose(setting: Any = "auto", launcher: dict[str, Any] | None = None, sweep_jobs: int | None = None) -> Budget:
    fixed = parse_setting(setting)
    if fixed is not None:
        return Budget(fixed, f"trainer.threads={fixed}")
    cpus, reason = usable_cpus()
    jobs = jobs_at_once(launcher, sweep_jobs, cpus)
    threads = max(1, cpus // jobs)
    if jobs > 1:
        reason += f", {jobs} jobs at once"
    if _USER_OMP and _USER_OMP.isdigit() and 0 < int(_USER_OMP) < threads:
        threads, reason = int(_USER_OMP), reason + f", OMP_NUM_THREADS={_USER_OMP}"
    return Budget(threads, reason)


def _hydra_launcher() -> dict[str, Any] | None:
    """This job's launcher config when it runs inside a Hydra multirun, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None
        return OmegaConf.to_container(HydraConfig.get().launcher, resolve=False)
    except Exception:  # no Hydra context: a plain Python call
        return None


def configure(setting: Any = "auto") -> Budget:
    """Choose this job's threads and apply them (torch + the OpenMP/MKL/OpenBLAS variables)."""
    import torch

    sweep_jobs = os.environ.get(SWEEP_JOBS_ENV)
    budget = choose(setting, _hydra_launcher(), int(sweep_jobs) if sweep_jobs and sweep_jobs.isdigit() else None)
    torch.set_num_threads(budget.threads)
    for var in THREAD_VARS:
        os.environ[var] = str(budget.threads)
    return budget


def sweep_size(config: Any) -> int | None:
    """The most jobs the basic sweeper hands a launcher at once (None when unknown)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
        params += list(config.hydra.overrides.task)
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params),
                                               config.hydra.sweeper.get("max_batch_size"))
        return max((len(b) for b in batches), default=1)
    except Exception:
        return None




class ThreadBudget(Callback):
    """Tells the jobs of a sweep how many of them a launcher may run at once."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        n = sweep_size(config)
        if n:
            os.environ[SWEEP_JOBS_ENV] = str(n)
