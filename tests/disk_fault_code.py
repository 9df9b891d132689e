"""A user task that brings a disk fault mid-run, for tests/test_disk_faults.py (imported by
``_target_``; subprocesses get tests/ through PYTHONPATH).

Its model is large enough (a 20000-weight float64 Linear: a checkpoint of ~0.5 MB with Adam's
state) that a nearly full file system still takes run.json and metrics.parquet but not the
checkpoint.  The fault comes at the evaluation after epoch ``fault_epoch``, as set by the
environment of the process: ``ADAXBENCH_TEST_FILL=DIR`` fills DIR's file system leaving
``ADAXBENCH_TEST_LEAVE`` bytes; ``ADAXBENCH_TEST_READONLY=DIR`` takes the write permission of DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

from plugin_user_code import LeastSquares


def fill(directory: str | os.PathLike, leave: int = 0) -> Path:
    """Write ``directory/filler`` until its file system has about ``leave`` bytes free."""
    path = Path(directory) / "filler"
    st = os.statvfs(directory)
    todo = st.f_bavail * st.f_frsize - leave
    with open(path, "ab") as f:
        while todo > 0:
            n = min(todo, 1 << 20)
            try:
                f.write(b"\0" * n)
                f.flush()
            except OSError:  # full a little early (metadata): that is full enough
                break
            todo -= n
    return path


class FaultyDisk(LeastSquares):
    def __init__(self, batch_size: int, dim: int = 20000, n: int = 8, fault_epoch: int = 2, *, device, seed):
        super().__init__(batch_size, dim, n, device=device, seed=seed)
        self.fault_epoch = fault_epoch
        self.evaluations = 0

    def evaluate(self, model):
        # The runner evaluates once before training (a fresh start) and after every epoch.
        self.evaluations += 1
        if self.evaluations == self.fault_epoch + 1:
            if os.environ.get("ADAXBENCH_TEST_FILL"):
                fill(os.environ["ADAXBENCH_TEST_FILL"], int(os.environ.get("ADAXBENCH_TEST_LEAVE", "0")))
            if os.environ.get("ADAXBENCH_TEST_READONLY"):
                os.chmod(os.environ["ADAXBENCH_TEST_READONLY"], 0o555)
        return super().evaluate(model)


class Crashes(LeastSquares):
    """Raises in its first evaluation: a crash of the user's code."""

    def evaluate(self, model):
        raise RuntimeError("the user's evaluate crashed")
