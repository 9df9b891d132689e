"""What a run leaves on disk: ``metrics.parquet`` (tidy rows) and ``run.json``.

Both are replaced atomically (write to a temporary file in the same directory, then
``os.replace``), so a reader or a killed run never sees half a file.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METRICS_FILE = "metrics.parquet"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRIC_COLUMNS = ("step", "epoch", "time", "split", "metric", "value")
SCHEMA = pa.schema([("step", pa.int64()), ("epoch", pa.float64()), ("time", pa.float64()),
                    ("split", pa.string()), ("metric", pa.string()), ("value", pa.float64())])


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result over ``path`` in one step."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str, allow_nan=True)
            f.write("\n")
    atomic_write(path, write)


class MetricsLog:
    """Column-wise buffer of metric rows, flushed to parquet as a whole table."""

    COLUMNS = METRIC_COLUMNS

    def __init__(self) -> None:
        self.cols: dict[str, list] = {c: [] for c in self.COLUMNS}

    def __len__(self) -> int:
        return len(self.cols["step"])

    def add(self, step: int, epoch: float, time: float, split: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.cols["step"].append(int(step))
            self.cols["epoch"].append(float(epoch))
            self.cols["time"].append(float(time))
            self.cols["split"].append(split)
            self.cols["metric"].append(metric)
            self.cols["value"].append(float(value))

    def truncate(self, n: int) -> None:
        for c in self.cols.values():
            del c[n:]

    def table(self) -> pa.Table:
        return pa.table({c: self.cols[c] for c in self.COLUMNS}, schema=SCHEMA)

    def save(self, path: Path) -> None:
        table = self.table()
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    @classmethod
    def load(cls, path: Path) -> "MetricsLog":
        log = cls()
        table = pq.read_table(path)
        for c in cls.COLUMNS:
            log.cols[c] = table.column(c).to_pylist()
        return log

    def frame(self) -> pd.DataFrame:
        return self.table().to_pandas()


# Overrides that say where or how a job ran, not what it trained: ignored when a relaunch
# is matched to an existing run dir, and dropped from `adaxbench best` reruns.
NOT_A_SETTING = ("seed=", "hydra.", "hydra/", "resume=", "trainer.progress=", "trainer.device=")


def setting_overrides(overrides: list[str], keep_seed: bool = False) -> list[str]:
    skip = NOT_A_SETTING[1:] if keep_seed else NOT_A_SETTING
    return [o for o in overrides if not o.lstrip("+~").startswith(skip)]


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict[str, Any]:
    import torch  # here, so the report can read run files without importing torch

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
