"""Sweep bookkeeping: the end-of-multirun summary line and its exit status.

Jobs never raise for a training failure (the runner records it in run.json), so every
launcher — basic, joblib, submitit — finishes the whole sweep; this callback then reads
each job's run.json and prints ``N completed, M diverged, K failed``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

# Set by the callback in the launching process; the CLI turns it into the exit status.
LAST_SUMMARY: Counter | None = None


def job_statuses(sweep_dir: Path) -> dict[Path, str]:
    """Status of every job directory directly under ``sweep_dir`` (``missing`` if none)."""
    from .record import RUN_FILE  # here: a SLURM job unpickles this callback before it can handle signals

    out = {}
    for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = job / RUN_FILE
        if not path.exists():
            if (job / ".hydra").exists() or (job / ".submitit").exists():
                out[job] = "missing"
            continue
        try:
            out[job] = json.loads(path.read_text()).get("status", "unknown")
        except (OSError, ValueError):
            out[job] = "unreadable"
    return out


def summary_line(counts: Counter) -> str:
    line = f"{counts['completed']} completed, {counts['diverged']} diverged, {failed_count(counts)} failed"
    others = {k: v for k, v in counts.items() if k not in ("completed", "diverged", "failed")}
    if others:
        line += " (" + ", ".join(f"{v} {k}" for k, v in sorted(others.items())) + " counted as failed)"
    return line


def failed_count(counts: Counter) -> int:
    # A job that is not completed or diverged at the end of a sweep did not produce a
    # result: interrupted, still 'running' (killed hard), missing or unreadable.
    return sum(v for k, v in counts.items() if k not in ("completed", "diverged"))


class SweepSummary(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        global LAST_SUMMARY
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = Counter(job_statuses(sweep_dir).values()) if sweep_dir.exists() else Counter()
        LAST_SUMMARY = counts
        print(f"sweep {sweep_dir}: {summary_line(counts)}", flush=True)
