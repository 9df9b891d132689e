"""Published results shipped with adaxbench, to set beside our own numbers in reports.

Each ``*.yaml`` here is one source (a paper table, a benchmark's result files) with its citation
and a list of results: task, metric, our optimizer name, optional ``match`` (hyperparameters a
setting must have, e.g. SGD's momentum) and either ``value`` (``value_hi`` for a range) or
``dir`` + ``seeds`` (result file name -> its value; the result is their mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

DATA_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Reference:
    """One published number and where it comes from."""

    source: str  # short name shown in tables and legends, e.g. "DeepOBS"
    citation: str
    url: str
    task: str
    metric: str
    optimizer: str
    value: float
    value_hi: float | None = None
    match: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    lr: float | None = None
    files: tuple[str, ...] = ()  # the source's result files the value is the mean of

    def value_text(self) -> str:
        """``0.9096`` or ``0.9232–0.9251``."""
        return f"{self.value:.4g}" + (f"–{self.value_hi:.4g}" if self.value_hi is not None else "")

    def detail(self) -> str:
        """What stands behind the value: the source's tuned lr and how many seeds it averages."""
        parts = ([f"lr {self.lr:.3g}"] if self.lr is not None else []) + \
            ([f"{len(self.files)} seed{'s' if len(self.files) > 1 else ''}"] if self.files else [])
        return f" ({', '.join(parts)})" if parts else ""

    def label(self) -> str:
        """``DeepOBS Momentum``: the source and its name for the optimizer."""
        return f"{self.source} {self.note or self.optimizer}"

    def matches(self, task: str, metric: str, setting: Mapping[str, Any]) -> bool:
        """True when this result is for ``task``/``metric`` and the flattened ``setting``
        (load.setting_of) runs the same optimizer with the same ``match`` hyperparameters."""
        if (task, metric, str(setting.get("optimizer.name"))) != (self.task, self.metric, self.optimizer):
            return False
        return all(_same(setting.get(k), v) for k, v in self.match.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def load_references(paths: list[Path] | None = None) -> list[Reference]:
    """Every result of every source file (default: the ``*.yaml`` shipped here)."""
    out = []
    for path in sorted(paths if paths is not None else DATA_DIR.glob("*.yaml")):
        doc = yaml.safe_load(Path(path).read_text())
        head = {k: str(doc[k]).strip() for k in ("source", "citation", "url")}
        for r in doc["results"]:
            r = dict(r)
            if "seeds" in r:  # per-seed result files: the value is their mean
                seeds = {str(f): float(v) for f, v in r.pop("seeds").items()}
                d = r.pop("dir")
                r["files"] = tuple(d + f for f in seeds)
                r["value"] = sum(seeds.values()) / len(seeds)
            out.append(Reference(**head, **{k: (float(v) if k in ("value", "value_hi", "lr") else v)
                                            for k, v in r.items()}))
    return out


def references_for(refs: list[Reference], task: str, metric: str, setting: Mapping[str, Any]) -> list[Reference]:
    return [r for r in refs if r.matches(task, metric, setting)]
