"""Per-run scores, per-setting aggregates over seeds, bootstrap CIs and performance profiles.

Conventions (stated in every report):
- final = the metric at the last evaluation, best = max (accuracy) / min (loss) over evaluations;
- mean ± sample std (ddof=1) over the completed seeds of a setting;
- time-to-target = epoch / step / training seconds of the first evaluation that reaches the
  target; a seed that never does (or diverged first) counts as not reached (= ∞);
- Δ vs baseline = mean(setting) − mean(baseline) of the final metric with a 95% percentile
  bootstrap CI, resampling seeds with replacement independently within each group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .load import ReportError, RunSet

# Used when a task does not log the requested default metric (synthetic tasks: train/loss only).
METRIC_FALLBACK = ("test/accuracy", "test/loss", "valid/accuracy", "valid/loss", "train/accuracy", "train/loss")
N_BOOT = 10_000


def higher_is_better(metric: str) -> bool:
    """Accuracy-like metrics are maximised, everything else (losses, errors) minimised."""
    return "acc" in metric.split("/")[-1].lower()


def split_metric(metric: str) -> tuple[str, str]:
    """``'test/accuracy'`` -> ``('test', 'accuracy')``; raises ReportError on other shapes."""
    parts = metric.split("/")
    if len(parts) != 2 or not all(parts):
        raise ReportError(f"bad metric {metric!r}: expected SPLIT/METRIC, e.g. test/accuracy or valid/loss")
    return parts[0], parts[1]


@dataclass
class TaskInfo:
    """How one task is scored: metric, direction, target and where the target came from."""

    name: str
    metric: str
    higher_better: bool
    target: float | None
    target_source: str  # "--target", "task config" or "none"
    select_metric: str  # valid/<m> when logged, else the metric itself
    note: str = ""


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_fmt_num(x) for x in v) + ")"
    return str(v)


def label_settings(rs: RunSet) -> pd.Series:
    """A readable label per run: the optimizer name, plus the hyperparameters that differ
    between the settings sharing that name within the task (e.g. ``adam lr=0.001``)."""
    runs = rs.runs
    labels = pd.Series(runs["optimizer"].to_numpy(dtype=object), index=runs.index)
    for (task, name), g in runs.groupby(["task", "optimizer"], sort=False):
        keys = list(dict.fromkeys(g["setting"]))
        if len(keys) < 2:
            continue
        sets = [rs.settings[k] for k in keys]
        fields = sorted({f for s in sets for f in s})
        varying = [f for f in fields if f != "optimizer.name"
                   and len({repr(s.get(f)) for s in sets}) > 1]
        shorts = [f.split(".")[-1] for f in varying]
        names = [s if shorts.count(s) == 1 else f for s, f in zip(shorts, varying)]
        text = {k: name + " " + " ".join(f"{n}={_fmt_num(s.get(f))}" for n, f in zip(names, varying))
                for k, s in zip(keys, sets)}
        labels[g.index] = g["setting"].map(text).to_numpy()
    return labels


def task_infos(rs: RunSet, metric: str | None, target: dict[str, float] | float | None) -> dict[str, TaskInfo]:
    """Decide metric, direction and target per task.

    ``metric=None`` means the default: ``config.task.metric`` if the task names one, else
    test/accuracy, else the first logged of METRIC_FALLBACK.  The target is ``--target`` if
    given (one value for all tasks or per task), else ``config.task.target`` when it refers to
    the metric in use (``task.target_metric``/``task.metric`` equal to it, or neither set and
    the metric is the task's default).
    """
    by_task: dict[str, set[str]] = {}
    for split, name in rs.logged():
        if split == "batch":
            continue
        for task in rs.runs.loc[rs.select(split, name)["run"].unique(), "task"].unique():
            by_task.setdefault(task, set()).add(f"{split}/{name}")

    out = {}
    for task, names in sorted(by_task.items()):
        first = rs.runs.index[rs.runs["task"] == task][0]
        tcfg = rs.configs[first].get("task") or {}
        default = tcfg.get("metric") or next((c for c in METRIC_FALLBACK if c in names), min(names))
        use = metric or default
        note = ""
        if use not in names:
            note = f"metric {use} is not logged for this task (logged: {', '.join(sorted(names))})"
        tgt, src = None, "none"
        if isinstance(target, dict) and task in target:
            tgt, src = target[task], "--target"
        elif isinstance(target, (int, float)):
            tgt, src = float(target), "--target"
        elif tcfg.get("target") is not None:
            tmetric = tcfg.get("target_metric") or tcfg.get("metric") or default
            if tmetric == use:
                tgt, src = float(tcfg["target"]), "task config"
        split, name = split_metric(use)
        valid = f"valid/{name}"
        sel = valid if valid in names else use
        out[task] = TaskInfo(task, use, higher_is_better(use), tgt, src, sel, note)
    return out


def _eval_rows(rs: RunSet, metric: str) -> pd.DataFrame:
    split, name = split_metric(metric)
    ev = rs.select(split, name)[["run", "step", "epoch", "time", "value"]]
    # Resumed runs may log an evaluation twice; the later row wins.
    ev = ev.drop_duplicates(["run", "epoch"], keep="last")
    return ev.sort_values(["run", "epoch", "step"], kind="stable")


def run_scores(rs: RunSet, tasks: dict[str, TaskInfo], select: str = "final") -> pd.DataFrame:
    """One row per run with curves: final, best, sel (selection score) and the epoch, step and
    time at which the target was first reached (NaN = not reached).  Vectorised per metric."""
    runs = rs.runs
    parts = []
    for metric in sorted({t.metric for t in tasks.values()}):
        ids = runs.index[runs["task"].isin([t.name for t in tasks.values() if t.metric == metric])]
        ev = _eval_rows(rs, metric)
        ev = ev[ev["run"].isin(ids)]
        if ev.empty:
            continue
        hb = higher_is_better(metric)
        g = ev.groupby("run")["value"]
        # Not groupby.last(): that skips NaN, and a NaN final value must show as NaN.
        final = ev.drop_duplicates("run", keep="last").set_index("run")["value"]
        best = g.max() if hb else g.min()
        df = pd.DataFrame({"final": final, "best": best})
        tgt = pd.Series({r: tasks[runs.at[r, "task"]].target for r in df.index}, dtype=float)
        t_ev = tgt.reindex(ev["run"]).to_numpy()
        hit = (ev["value"].to_numpy() >= t_ev) if hb else (ev["value"].to_numpy() <= t_ev)
        first = ev[hit].drop_duplicates("run", keep="first").set_index("run")
        df["hit_epoch"] = first["epoch"]
        df["hit_step"] = first["step"].astype(float)
        df["hit_time"] = first["time"]
        parts.append(df)
    scores = pd.concat(parts) if parts else pd.DataFrame(
        columns=["final", "best", "hit_epoch", "hit_step", "hit_time"], dtype=float)

    scores["sel"] = np.nan
    for metric in sorted({t.select_metric for t in tasks.values()}):
        ids = runs.index[runs["task"].isin([t.name for t in tasks.values() if t.select_metric == metric])]
        ev = _eval_rows(rs, metric)
        ev = ev[ev["run"].isin(ids)]
        if ev.empty:
            continue
        if select == "best":
            g = ev.groupby("run")["value"]
            v = g.max() if higher_is_better(metric) else g.min()
        else:
            v = ev.drop_duplicates("run", keep="last").set_index("run")["value"]
        scores.loc[scores.index.intersection(v.index), "sel"] = v
    scores.index.name = "run"
    return scores


def bootstrap_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) − mean(b) and its percentile bootstrap CI, resampling each group's seeds with
    replacement.  NaN CI when either group has fewer than two seeds (no spread to resample)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)
    mb = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    q = (1 - level) / 2 * 100
    lo, hi = np.percentile(ma - mb, [q, 100 - q])
    return diff, float(lo), float(hi)


def _std(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


def aggregate(rs: RunSet, tasks: dict[str, TaskInfo], scores: pd.DataFrame, baseline: str,
              x: str = "epoch") -> pd.DataFrame:
    """One row per task × setting: seed counts by status, final/best mean and std over completed
    seeds, time-to-target, Δ to the baseline with its bootstrap CI, and the selection score."""
    runs = rs.runs.join(scores, how="left")
    runs = runs[runs["task"].isin(list(tasks))]
    readable = runs["problem"] == ""
    # A diverged seed that never reached the target counts as ∞ for time-to-target.
    finished = runs["status"].isin(["completed", "diverged"]) & readable
    # Unreadable completed runs count as failed: they are in no mean but must show up.
    failed = runs["status"].isin(["failed", "interrupted"]) | (~readable & ~runs["status"].isin(["diverged", "running"]))
    rows = []
    for (task, key), g in runs.groupby(["task", "setting"], sort=True):
        done = g[(g["status"] == "completed") & readable.loc[g.index]]
        fin = g[finished.loc[g.index]]
        hit_x = fin[f"hit_{x}"].to_numpy(float)
        rows.append({
            "task": task, "setting": key, "optimizer": g["optimizer"].iloc[0], "label": g["label"].iloc[0],
            "metric": tasks[task].metric, "target": tasks[task].target,
            "seeds": len(done), "diverged": int((g["status"] == "diverged").sum()),
            "failed": int(failed.loc[g.index].sum()),
            "running": int((g["status"] == "running").sum()),
            "final_mean": float(done["final"].mean(skipna=False)) if len(done) else math.nan,
            "final_std": _std(done["final"]),
            "best_mean": float(done["best"].mean(skipna=False)) if len(done) else math.nan,
            "best_std": _std(done["best"]),
            "reached": int(np.isfinite(fin["hit_epoch"].to_numpy(float)).sum()), "finished": len(fin),
            "epochs_to_target": float(fin["hit_epoch"].mean()) if fin["hit_epoch"].notna().any() else math.nan,
            "seconds_to_target": float(fin["hit_time"].mean()) if fin["hit_time"].notna().any() else math.nan,
            # Median over finished seeds with ∞ for misses: what performance profiles use.
            "median_to_target": float(np.median(np.where(np.isnan(hit_x), np.inf, hit_x))) if len(fin) else math.inf,
            "sel_mean": float(done["sel"].mean(skipna=False)) if len(done) else math.nan,
            "_finals": done["final"].to_numpy(float),
        })
    agg = pd.DataFrame(rows)
    if agg.empty:
        return agg
    agg = agg.sort_values(["task", "optimizer", "label"], kind="stable").reset_index(drop=True)
    agg["is_best"] = False
    agg["is_baseline"] = False
    for task, g in agg.groupby("task"):
        hb = higher_is_better(tasks[task].select_metric)
        for _, h in g.groupby("optimizer"):
            s = h["sel_mean"]
            if s.notna().any():
                agg.loc[s.idxmax() if hb else s.idxmin(), "is_best"] = True
        base = g[(g["optimizer"] == baseline) & agg.loc[g.index, "is_best"]]
        agg.loc[base.index, "is_baseline"] = True
    agg["delta"], agg["ci_lo"], agg["ci_hi"] = math.nan, math.nan, math.nan
    for task, g in agg.groupby("task"):
        base = g[g["is_baseline"]]
        if base.empty:
            continue
        b = base["_finals"].iloc[0]
        for i in g.index:
            if i == base.index[0] or not len(agg.at[i, "_finals"]) or not len(b):
                continue
            agg.loc[i, ["delta", "ci_lo", "ci_hi"]] = bootstrap_diff_ci(agg.at[i, "_finals"], b)
    agg["significant"] = (agg["ci_lo"] > 0) | (agg["ci_hi"] < 0)
    return agg.drop(columns="_finals")


def performance_profile(times: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """AlgoPerf / Dolan–Moré performance profiles.

    ``times``: index = task, columns = optimizer, values = time-to-target (∞ = never reached
    or not run).  r[t, o] = times[t, o] / min_o times[t, o]; ρ_o(τ) = fraction of tasks with
    r[t, o] ≤ τ.  A task nobody solved gives every optimizer r = ∞ there.  Returns a frame
    indexed by τ with one column per optimizer.
    """
    t = times.to_numpy(float)
    t = np.where(np.isnan(t), np.inf, t)
    best = t.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(best == 0, np.where(t == 0, 1.0, np.inf), t / best)
    r = np.where(np.isinf(best), np.inf, r)
    rho = (r[None, :, :] <= np.asarray(taus, float)[:, None, None]).mean(axis=1)
    return pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=times.columns)


def profile_times(agg: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Task × optimizer table of the best setting's median time-to-target (∞ if missing)."""
    best = agg[agg["is_best"]]
    t = best.pivot_table(index="task", columns="optimizer", values="median_to_target", aggfunc="first")
    return t.reindex(index=tasks).fillna(np.inf)
