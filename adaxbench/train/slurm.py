"""SLURM launcher settings checked in the launching process, before any job is submitted.

slurmctld checks time limits every 30 s, and sends the warning signal of
``sbatch --signal=USR2@signal_delay_s`` at the first check at which at most
``signal_delay_s + 30`` seconds remain.  A job whose ``timeout_min * 60 - signal_delay_s``
is shorter than that period plus its start-up gets the signal while Python is still
importing, before any handler exists, and dies of it (exit 140 = 128 + SIGUSR2) instead of
being checkpointed and requeued: a requeued job then fails at random.  Such settings are
refused up front.
"""

from __future__ import annotations

import shutil

import sys
from typing import Any

from hydra.experimental.callback import Callback

SLURM_CHECK_PERIOD_S = 30  # slurmctld's PERIODIC_TIMEOUT: time limits are checked this often
STARTUP_S = 15  # interpreter start, imports and unpickling the job before its handlers exist


def check_launcher(launcher: Any) -> str | None:
    """One-line error for SLURM time-out settings that would signal a job during its start-up."""
    if not launcher or not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return None
    timeout_min, delay = launcher.get("timeout_min"), launcher.get("signal_delay_s")
    try:
        timeout_s, delay = int(timeout_min) * 60, int(delay)
    except (TypeError, ValueError):
        return f"hydra.launcher.timeout_min and signal_delay_s must be integers, got {timeout_min!r} and {delay!r}"
    margin = SLURM_CHECK_PERIOD_S + STARTUP_S
    if delay > 0 and timeout_s - delay < margin:
        return (f"hydra.launcher.signal_delay_s={delay} leaves {timeout_s - delay} s of hydra.launcher.timeout_min="
                f"{timeout_min}: SLURM sends its time-limit signal up to {SLURM_CHECK_PERIOD_S} s early, so it would "
                f"reach jobs while they start and kill them; need timeout_min*60 - signal_delay_s >= {margin}")
    if not (shutil.which("sbatch") and shutil.which("srun")):  # submitit would fail with a traceback
        return ("this launcher submits to SLURM, but sbatch/srun are not on PATH: run the sweep on a SLURM login "
                "node, or use hydra/launcher=submitit_local, joblib or packed on this machine")
    return None




class LauncherCheck(Callback):
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        error = check_launcher(config.hydra.get("launcher"))
        if error:
            print(f"adaxbench: error: {error}", file=sys.stderr)
            sys.exit(2)
