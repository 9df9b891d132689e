"""Find run directories and read them in bulk.

A run dir holds ``run.json`` (status, resolved config, final metrics) and ``metrics.parquet``
(a long table: step, epoch, time, split, metric, value).  Everything that cannot be read is
kept as a row with a ``problem`` so the report can list it instead of dropping it.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..train.record import METRIC_COLUMNS, METRICS_FILE, RUN_FILE, SCHEMA

# Statuses whose curves are read: completed runs make the tables, diverged runs still count
# for time-to-target (they may reach the target before blowing up).
READ_METRICS = ("completed", "diverged")


class ReportError(ValueError):
    """The report cannot be made from this input; the message is one line for the user."""


@dataclass
class RunSet:
    """All runs found under the input paths.

    ``runs`` has one row per run dir (index = run id): path, status, problem, error, task,
    optimizer, seed, setting (a canonical key of everything but the seed) and the flattened
    setting hyperparameters in ``settings``.  ``metrics`` is the concatenated long table of
    every readable ``metrics.parquet`` with a ``run`` column; split and metric are categorical.
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame
    configs: list[dict]
    settings: dict[str, dict[str, Any]]
    _index: dict | None = None

    def _rows(self) -> dict:
        if self._index is None:  # row positions per (split, metric), built in one pass
            self._index = {(str(k[0]), str(k[1])): v for k, v in
                           self.metrics.groupby(["split", "metric"], observed=True).indices.items()}
        return self._index

    def select(self, split: str, metric: str) -> pd.DataFrame:
        """The rows of one split/metric (e.g. test, accuracy)."""
        rows = self._rows().get((split, metric))
        return self.metrics.iloc[rows] if rows is not None else self.metrics.iloc[:0]

    def logged(self, runs: Iterable[int] | None = None) -> set[tuple[str, str]]:
        """(split, metric) pairs present, optionally only for the given run ids."""
        if runs is None:
            return set(self._rows())
        run_col, ids = self.metrics["run"].to_numpy(), np.asarray(list(runs))
        return {k for k, rows in self._rows().items() if np.isin(run_col[rows], ids).any()}


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run dirs (dirs holding ``run.json``) at or below each path, sorted and deduplicated."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"no such file or directory: {p}")
        if p.is_file():
            if p.name != RUN_FILE:
                raise ReportError(f"not a run dir, sweep dir or run.json: {p}")
            found.add(p.parent.resolve())
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = [d for d in dirs if d not in (".hydra", "__pycache__", ".git")]
            if RUN_FILE in files:
                found.add(Path(root).resolve())
    return sorted(found)


def _get(d: Any, dotted: str, default: Any = None) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def setting_of(config: dict) -> dict[str, Any]:
    """Everything that defines an optimizer setting on a task except the seed, flattened.

    Optimizer config (all keys), the effective lr schedule and epochs (``null`` in the
    trainer/lr_schedule group means the task's protocol default), batch size and the
    trainer options that change the result (train_limit, eval_limit, precision).
    """
    out: dict[str, Any] = {}
    for k, v in (_get(config, "optimizer") or {}).items():
        out[f"optimizer.{k}"] = v
    sched = _get(config, "lr_schedule") or _get(config, "task.lr_schedule") or {}
    for k, v in sched.items():
        out[f"lr_schedule.{k}"] = v
    epochs = _get(config, "trainer.epochs")
    out["epochs"] = epochs if epochs is not None else _get(config, "task.epochs")
    out["batch_size"] = _get(config, "task.batch_size")
    for k in ("train_limit", "eval_limit", "precision"):
        if _get(config, f"trainer.{k}") is not None:
            out[f"trainer.{k}"] = _get(config, f"trainer.{k}")
    return out


def _key(setting: dict[str, Any]) -> str:
    return json.dumps(setting, sort_keys=True, default=str)


def _read_json(path: Path) -> tuple[dict | None, str]:
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"run.json unreadable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not isinstance(info, dict):
        return None, "run.json unreadable: not a JSON object"
    return info, ""


# split/metric stay dictionary-encoded end to end: they become pandas categoricals without
# ever materialising millions of Python strings.
_DICT = pa.dictionary(pa.int32(), pa.string())
_SCHEMA = pa.schema([(f.name, _DICT if f.type == pa.string() else f.type) for f in SCHEMA])


def _read_metrics(path: Path) -> tuple[pa.Table | None, str]:
    try:
        t = pq.read_table(path, columns=list(METRIC_COLUMNS), read_dictionary=["split", "metric"])
        return t.select(list(METRIC_COLUMNS)).cast(_SCHEMA), ""
    except FileNotFoundError:
        return None, "metrics.parquet missing"
    except Exception as e:  # a half-written or foreign file must not stop the report
        msg = str(e).splitlines()[0] if str(e) else ""
        return None, f"metrics.parquet unreadable: {type(e).__name__}: {msg}"[:200]


def load_runs(paths: Iterable[str | os.PathLike], threads: int | None = None) -> RunSet:
    """Read every run dir at or below ``paths`` (run.json always, metrics only where needed).

    Parquet files are read in a thread pool (pyarrow releases the GIL) and concatenated once;
    no Python work is done per metric row.
    """
    dirs = find_run_dirs(paths)
    if not dirs:
        raise ReportError("no run dirs found (no run.json under the given paths)")
    infos = [_read_json(d / RUN_FILE) for d in dirs]

    rows, configs, settings = [], [], {}
    for i, (d, (info, problem)) in enumerate(zip(dirs, infos)):
        info = info or {}
        cfg = info.get("config") if isinstance(info.get("config"), dict) else {}
        status = info.get("status") if info else "unreadable"
        if not isinstance(status, str):
            status, problem = "unreadable", problem or "run.json has no status"
        name = _get(cfg, "optimizer.name")
        task = _get(cfg, "task.name")
        if info and (task is None or name is None) and not problem:
            problem = "run.json config lacks task.name or optimizer.name"
        setting = setting_of(cfg)
        key = _key(setting)
        settings.setdefault(key, setting)
        err = info.get("error")
        final = info.get("final") if isinstance(info.get("final"), dict) else {}
        rows.append({"run": i, "path": str(d), "status": status, "problem": problem,
                     "error": "" if err is None else str(err).splitlines()[0] if str(err) else "",
                     "task": "" if task is None else str(task), "optimizer": "" if name is None else str(name),
                     "seed": _get(cfg, "seed"), "setting": key,
                     "overrides": [str(o) for o in info.get("overrides") or []],
                     "progress": _progress(info.get("progress")),
                     **{f"final.{k}": _num(v) for k, v in final.items()}})
        configs.append(cfg)
    runs = pd.DataFrame(rows).set_index("run", drop=False)
    runs["sid"] = pd.factorize(runs["setting"])[0]  # integer setting id for fast grouping

    want = [i for i, r in enumerate(rows) if r["status"] in READ_METRICS and not r["problem"]]
    with ThreadPoolExecutor(threads or min(16, (os.cpu_count() or 2) * 2)) as ex:
        tables = list(ex.map(lambda i: _read_metrics(dirs[i] / METRICS_FILE), want))
    good, lengths = [], []
    for i, (t, problem) in zip(want, tables):
        if t is None:
            runs.loc[i, "problem"] = problem
        elif t.num_rows == 0:
            runs.loc[i, "problem"] = "metrics.parquet is empty"
        else:
            good.append(i)
            lengths.append(t.num_rows)
    if good:
        table = pa.concat_tables([t for t, _ in tables if t is not None and t.num_rows])
        metrics = table.unify_dictionaries().to_pandas()
        metrics.insert(0, "run", np.repeat(np.asarray(good, dtype=np.int32), lengths))
    else:
        metrics = pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                                [("run", "int32"), ("step", "int64"), ("epoch", "float64"),
                                 ("time", "float64"), ("split", "category"), ("metric", "category"),
                                 ("value", "float64")]})
    return RunSet(runs=runs, metrics=metrics, configs=configs, settings=settings)


def _progress(p: Any) -> str:
    if not isinstance(p, dict) or p.get("epoch") is None:
        return ""
    total = p.get("epochs_total")
    return f"epoch {p['epoch']:g}" + (f"/{total}" if total is not None else "")


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
