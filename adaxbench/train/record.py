"""The environment a run ran in (``run.json``'s ``env``) and the hyperparameters its optimizer was built with.

The run-file contract itself (file names, metrics schema, run.json record, atomic writers,
readers, settings) lives in :mod:`adaxbench.rundir`.
"""

from __future__ import annotations

import inspect
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict[str, Any]:
    import torch  # here, so that importing this module does not import torch

    name = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def constructor_hparams(optimizer: Any, given: Iterable[str]) -> dict[str, Any]:
    """The built optimizer's hyperparameters (``effective_hparams``: class defaults included) that it
    was constructed with: its class's named constructor parameters and the keys the config gave (which
    may reach it through ``**kwargs``, e.g. SAM's for its base optimizer).  What a class keeps in its
    param groups besides (Prodigy's ``d`` and ``step``, ScheduleFree's ``train_mode`` and ``weight_sum``)
    is its state, not a hyperparameter."""
    from .optimizer import effective_hparams

    named = inspect.signature(type(optimizer).__init__).parameters
    given = set(given)
    return {k: v for k, v in effective_hparams(optimizer).items() if k in named or k in given}
