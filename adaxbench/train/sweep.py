"""Sweep bookkeeping: the end-of-multirun summary line and its exit status.

Jobs never raise for a training failure (the runner records it in run.json), so every
launcher — basic, joblib, submitit — finishes the whole sweep; this callback then reads
each job's run.json and prints ``N completed, M diverged, K failed``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback

# Set by the callback in the launching process; the CLI turns it into the exit status.
LAST_SUMMARY: Counter | None = None
LAST_SWEEP_DIR: Path | None = None
# A job another live process is still training (a second launch into the same sweep dir).
ELSEWHERE = "running in another process"


def _locked_by_another_process(job: Path) -> bool:
    from ..rundir import LOCK_FILE

    if not (job / LOCK_FILE).exists():
        return False
    lock = FileLock(job / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def job_statuses(sweep_dir: Path) -> dict[Path, str]:
    """Status of every job directory directly under ``sweep_dir`` (``missing`` if none)."""
    # Imported here: a SLURM job unpickles this module's callbacks before it can handle signals.
    from ..rundir import LOCK_FILE, RUN_FILE, read_status

    out = {}
    for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        # A job dir: a run.json, or a job that got as far as the lock (or .hydra/, .submitit/).
        if not any((job / name).exists() for name in (RUN_FILE, LOCK_FILE, ".hydra", ".submitit")):
            continue
        status = read_status(job)
        # The sweep's own jobs have all ended (and released their locks) when this is asked.
        if status in ("running", "missing") and _locked_by_another_process(job):
            status = ELSEWHERE
        out[job] = status
    return out


def summary_line(counts: Counter) -> str:
    from ..rundir import Status

    line = f"{counts[Status.COMPLETED]} completed, {counts[Status.DIVERGED]} diverged, {failed_count(counts)} failed"
    others = {k: v for k, v in counts.items() if k not in (Status.COMPLETED, Status.DIVERGED, Status.FAILED, ELSEWHERE)}
    if others:
        line += " (" + ", ".join(f"{v} {k}" for k, v in sorted(others.items())) + " counted as failed)"
    if counts[ELSEWHERE]:
        line += f"; {counts[ELSEWHERE]} {ELSEWHERE} (skipped here)"
    return line


def failed_count(counts: Counter) -> int:
    # A job that is not completed or diverged at the end of a sweep did not produce a
    # result: interrupted, still 'running' (killed hard), missing or unreadable.  A job that
    # another live process trains is that process's to finish, not a failure of this sweep.
    from ..rundir import Status

    return sum(v for k, v in counts.items() if not (k in (Status.COMPLETED, Status.DIVERGED) or k == ELSEWHERE))


class SweepSummary(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        global LAST_SUMMARY, LAST_SWEEP_DIR
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = Counter(job_statuses(sweep_dir).values()) if sweep_dir.exists() else Counter()
        LAST_SUMMARY, LAST_SWEEP_DIR = counts, sweep_dir
        print(f"sweep {sweep_dir}: {summary_line(counts)}", flush=True)
