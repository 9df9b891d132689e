"""Find run directories and read them in bulk.

A run dir holds ``run.json`` (status, resolved config, final metrics) and ``metrics.parquet``
(a long table: step, epoch, time, split, metric, value).  Everything that cannot be read is
kept as a row with a ``problem`` so the report can list it instead of dropping it.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from ..rundir import (FINISHED, METRICS_FILE, RUN_FILE, RunRecord, identity_config, optimizer_identity, read_metrics,
                      read_record, setting_of, setting_key)

# Statuses whose curves are read: completed runs make the tables, diverged runs still count
# for time-to-target (they may reach the target before blowing up).
READ_METRICS = tuple(s.value for s in FINISHED)
# The run.json key holding the built optimizer's param-group hyperparameters (defaults included).
RECORDED_HPARAMS = "optimizer_hparams"


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
    # Per run: the built optimizer's effective hyperparameters where run.json records them
    # (RECORDED_HPARAMS), else {}; IMPLEMENTATION_KEYS left out.
    recorded: list[dict] = field(default_factory=list)
    _index: dict | None = None
    notes: list[str] = field(default_factory=list)  # e.g. optimizers renamed to tell classes apart

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


def load_runs(paths: Iterable[str | os.PathLike], threads: int | None = None) -> RunSet:
    """Read every run dir at or below ``paths`` (run.json always, metrics only where needed).

    Parquet files are read in a thread pool (pyarrow releases the GIL) and concatenated once;
    no Python work is done per metric row.
    """
    dirs = find_run_dirs(paths)
    if not dirs:
        raise ReportError("no run dirs found (no run.json under the given paths)")
    records = [read_record(d) for d in dirs]
    identities = ran_configs([rec for rec, _ in records])

    rows, configs, settings, recorded = [], [], {}, []
    for i, (d, (rec, problem)) in enumerate(zip(dirs, records)):
        if rec is None:  # listed under "Runs not included" with the reason
            rows.append({"run": i, "path": str(d), "status": "unreadable", "problem": problem, "error": "",
                         "task": "", "optimizer": "", "seed": None, "setting": "", "overrides": [],
                         "progress": "", "optimizer_class": None})
            configs.append({})
            recorded.append({})
            continue
        cfg = rec.config
        key = setting_key(identities[i])
        settings.setdefault(key, setting_of(identities[i]))
        err = rec.error
        rows.append({"run": i, "path": str(d), "status": rec.status.value, "problem": "",
                     "error": "" if not err else printable(err.splitlines()[0])[:MAX_ERROR] + ("…" if len(err) > MAX_ERROR else ""),
                     "task": clean_name(cfg["task"]["name"]), "optimizer": clean_name(cfg["optimizer"]["name"]),
                     "seed": cfg.get("seed"), "setting": key, "overrides": list(rec.overrides),
                     "progress": _progress(rec.progress), "optimizer_class": optimizer_identity(rec),
                     "ended": str(rec.timing.get("ended") or ""),
                     **{f"final.{k}": _num(v) for k, v in rec.final.items()}})
        configs.append(cfg)
        recorded.append(_hyperparameters(rec.optimizer_hparams or rec.extra.get(RECORDED_HPARAMS)))
    runs = pd.DataFrame(rows).set_index("run", drop=False)
    notes = _tell_classes_apart(runs)
    runs["sid"] = pd.factorize(runs["setting"])[0]  # integer setting id for fast grouping

    want = [i for i, r in enumerate(rows) if r["status"] in READ_METRICS and not r["problem"]]
    with ThreadPoolExecutor(threads or min(16, (os.cpu_count() or 2) * 2)) as ex:
        tables = list(ex.map(lambda i: read_metrics(dirs[i] / METRICS_FILE), want))
    good, lengths = [], []
    for i, (t, problem) in zip(want, tables):
        if t is None:
            runs.loc[i, "problem"] = problem
        elif t.num_rows == 0:
            runs.loc[i, "problem"] = "metrics.parquet is empty"
        else:
            good.append(i)
            lengths.append(t.num_rows)
    repeated = _repeated_seeds(runs)
    if len(repeated):
        runs.loc[repeated, "problem"] = REPEATED
        notes.append(f"{len(repeated)} run(s) repeat the setting and seed of a later run: each (setting, seed) "
                     "counted once, the latest completed run kept")
    runs = runs.drop(columns="ended")
    if good:
        table = pa.concat_tables([t for t, _ in tables if t is not None and t.num_rows])
        metrics = table.unify_dictionaries().to_pandas()
        metrics.insert(0, "run", np.repeat(np.asarray(good, dtype=np.int32), lengths))
    else:
        metrics = pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                                [("run", "int32"), ("step", "int64"), ("epoch", "float64"),
                                 ("time", "float64"), ("split", "category"), ("metric", "category"),
                                 ("value", "float64")]})
    return RunSet(runs=runs, metrics=metrics, configs=configs, settings=settings, recorded=recorded,
                  notes=notes)


# Param-group keys that say how an update is computed, not what it computes (trainer.optimizer_impl
# chooses them, and a class may resolve them by device): never part of a setting.
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


def ran_configs(records: list[RunRecord | None]) -> list[dict[str, Any]]:
    """Per record, the config whose setting it ran: the optimizer section holds the hyperparameters
    the built optimizer recorded (class defaults included) over what the config wrote, so a run that
    passes a class default and one that leaves it out are one setting.  A record without them (an
    earlier version's, or a run that failed before its optimizer was built) keeps its config, its
    missing keys filled with the default that the runs of its class which left them out recorded.
    Values compare by what they are: ``1`` and ``1.0`` are one number, a tuple and a list one sequence."""
    identities = [None if rec is None else identity_config(rec) for rec in records]
    ran = [None if rec is None else _hyperparameters(rec.optimizer_hparams) for rec in records]
    defaults: dict[str, dict[str, set[str]]] = {}  # class -> key -> the values recorded where no config set it
    for cfg, hp in zip(identities, ran):
        for k, v in (hp or {}).items():
            if k not in cfg["optimizer"]:
                defaults.setdefault(str(cfg["optimizer"].get("_target_")), {}).setdefault(k, set()).add(
                    json.dumps(_canonical(v)))
    out = []
    for cfg, hp in zip(identities, ran):
        if cfg is None:
            out.append({})
            continue
        known = defaults.get(str(cfg["optimizer"].get("_target_")), {})
        filled = hp or {k: json.loads(next(iter(vs))) for k, vs in known.items() if len(vs) == 1}
        optimizer = {**filled, **cfg["optimizer"], **(hp or {})}
        out.append({**cfg, "optimizer": {k: _canonical(v) for k, v in optimizer.items()}})
    return out


def _hyperparameters(recorded: Any) -> dict:
    """A record's optimizer hyperparameters (``_recorded_hparams``) without IMPLEMENTATION_KEYS."""
    return {k: v for k, v in _recorded_hparams(recorded).items() if k not in IMPLEMENTATION_KEYS}


def _canonical(v: Any) -> Any:
    """One representation per value: numbers as floats, tuples as lists."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, dict):
        return {k: _canonical(x) for k, x in v.items()}
    return v


def _tell_classes_apart(runs: pd.DataFrame) -> list[str]:
    """Two different classes recorded under one name (a user's ``lion.Lion`` and
    ``pytorch_optimizer.Lion``) are two optimizers: rename them module-qualified, and say so."""
    notes = []
    classes = runs[runs["optimizer_class"].notna()].groupby("optimizer")["optimizer_class"].unique()
    for name, found in classes.items():
        if len(found) > 1:
            rows = runs["optimizer"].eq(name) & runs["optimizer_class"].notna()
            runs.loc[rows, "optimizer"] = runs.loc[rows, "optimizer_class"]
            notes.append(f"optimizer {name} names {len(found)} different classes ({', '.join(sorted(found))}): "
                         "each is reported under its module-qualified name")
    return notes


def usable(runs: pd.DataFrame) -> pd.Series:
    """The runs that enter the report's means: completed, and no problem found loading or scoring them."""
    return (runs["status"] == "completed") & (runs["problem"] == "")


REPEATED = "repeats the setting and seed of a later run (each counted once)"


def _repeated_seeds(runs: pd.DataFrame) -> pd.Index:
    """The completed, readable runs whose (setting, seed) a later one repeats (an Optuna study proposing
    one value twice, a grid launched again into another dir): no independent seeds, so only the latest counts.
    (A diverged run keeps its own line and error, as every diverged run does.)"""
    finished = runs[usable(runs) & runs["seed"].notna()]
    order = finished.sort_values(["ended", "path"])
    return order.index[order.duplicated(["setting", "seed"], keep="last")]


def _recorded_hparams(v: Any) -> dict:
    """The recorded param-group hyperparameters as one flat dict: a dict as it is, a list of param
    groups as its first group (the groups of one run share them unless a test varied them)."""
    if isinstance(v, list) and v and isinstance(v[0], dict):
        v = v[0]
    return {k: x for k, x in v.items() if k != "params"} if isinstance(v, dict) else {}


# The longest error line a report shows of a run (the full text stays in its run.json).
MAX_ERROR = 300


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape sequences, newlines) shown as escapes."""
    return "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in text)


def clean_name(name: str) -> str:
    """A task or optimizer name as every output may show it: printable, and never read as a
    formula by a spreadsheet opening summary.csv (a leading ``=``, ``+``, ``-``, ``@`` gets a ``'``)."""
    name = printable(name)
    return "'" + name if name[:1] in ("=", "+", "-", "@") else name


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
