"""Per-run scores, per-setting aggregates over seeds, comparisons with verdicts, bootstrap CIs and
performance profiles.

Conventions (stated in every report; docs/statistics.md explains them for users):
- final = the metric at the last evaluation, best = max (accuracy) / min (loss) over evaluations;
- mean ± sample std (ddof=1) over the completed seeds of a setting;
- time-to-target = epoch / step / training seconds of the first evaluation that reaches the
  target; a seed that never does (or diverged first) counts as not reached (= ∞);
- Δ vs baseline = mean(setting) − mean(baseline) of the final metric.  Where the two share seeds
  (every seed of one has its partner, same init and data order, in the other) the interval and p
  come from the paired differences (paired t, scipy.stats.ttest_rel); otherwise Welch's t
  (unequal variances).  Both hold their error rate at a handful of seeds;
- the star: Holm-adjusted p < ALPHA over the report's family (every Δ of the report, or of a task
  with ``family="task"``; statsmodels' multipletests), with at least MIN_SEEDS_STAR seeds a side;
- a verdict per comparison: equivalent within ±m first (two one-sided tests, statsmodels'
  ttost_paired / ttost_ind, Holm-adjusted over the same family, against the metric's margin m),
  else better / worse (the star), else inconclusive, with the seeds that would settle it; a
  diverged seed on either side rules out "equivalent" (see ``verdict``);
- the best setting per task x optimizer: ``score_settings`` (shared with ``adaxbench best``);
- across tasks: the interquartile mean of per-task normalised scores with a stratified
  bootstrap CI (rliable's method, Agarwal et al. 2021; computed with scipy.stats);
- performance profiles (time-to-target ratios, AlgoPerf) and score distributions (rliable)
  with pointwise stratified-bootstrap bands: the seeds are resampled within each task x
  optimizer, the profile recomputed, and the band is the percentile interval at LEVEL.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
# scipy.stats and statsmodels are imported where used: ``adaxbench run`` imports this module for
# its best-setting line, which needs none of their tests.

from . import divergence
from .load import ReportError, RunSet, usable
from .text import fmt_num

# Used when a task does not log the requested default metric (synthetic tasks: train/loss only).
METRIC_FALLBACK = ("test/accuracy", "test/loss", "valid/accuracy", "valid/loss", "train/accuracy", "train/loss")
LEVEL = 0.95  # confidence level of every interval in the report
MIN_SEEDS_STAR = 3  # fewer seeds on either side: an interval, but never a star nor a verdict
ALPHA = 1 - LEVEL  # family-wise error rate of the stars and of the equivalence verdicts
FAMILIES = ("table", "task")  # what Holm's adjustment runs over: every Δ of the report, or of each task
POWER = 0.8  # the power at which "inconclusive" states the seeds that would settle it
# The equivalence margin m when neither --margin nor the task's equivalence_margin sets one:
# accuracy-like metrics only.  Losses have none: they share no scale (87 ± 0.1 on quadratic_deep,
# 4e-4 on rosenbrock_2d), so no rule of thumb gives a margin that means anything on most of them.
ACCURACY_MARGIN = 0.005  # half a percentage point, absolute
N_BOOT = 2000  # stratified-bootstrap resamples of the cross-task IQM and of the profiles' bands


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
    select_metric: str  # task.select_metric, else valid/<m>, else train/<m> when logged, else the metric
    note: str = ""
    margin: float | None = None  # equivalence margin; None: the default (see default_margin)
    margin_source: str = "default"  # "--margin", "task config" or "default"


def setting_labels(rows: pd.DataFrame, settings: Mapping[str, Mapping[str, Any]],
                   drop: tuple[str, ...] = ()) -> dict[str, str]:
    """A readable label per setting key of ``rows`` (columns optimizer, setting): the optimizer
    name plus the hyperparameters that differ between that optimizer's settings *among these
    rows* (e.g. ``adam lr=0.001``), so a key that changes nothing here is never shown.  An optimizer
    key a setting lacks (a record from before run.json held the built optimizer's hyperparameters,
    whose config left it out) ran at the class default, and says so."""
    out = {}
    for name, g in rows.groupby("optimizer", sort=False):
        keys = list(dict.fromkeys(g["setting"]))
        sets = [settings.get(k, {}) for k in keys]  # an unreadable run has no setting
        fields = sorted({f for s in sets for f in s} - {"optimizer.name", *drop})
        varying = [f for f in fields if len({repr(s.get(f)) for s in sets}) > 1]
        shorts = [f.split(".")[-1] for f in varying]
        names = [s if shorts.count(s) == 1 else f for s, f in zip(shorts, varying)]
        for k, s in zip(keys, sets):
            out[k] = " ".join([str(name)] + [f"{n}={_label_value(s, f)}" for n, f in zip(names, varying)])
    return out


def _label_value(setting: Mapping[str, Any], key: str) -> str:
    if key not in setting and key.startswith("optimizer."):
        return "default"
    return fmt_num(setting.get(key))


def label_settings(rs: RunSet) -> pd.Series:
    """A label per run (see ``setting_labels``), computed per task.  Keys are compared among the
    completed runs' settings first, so a broken run with another setting adds no keys to the
    labels of the runs that make the tables and figures."""
    runs = rs.runs
    labels = pd.Series(runs["optimizer"].to_numpy(dtype=object), index=runs.index)
    for _, g in runs.groupby("task", sort=False):
        text = setting_labels(g, rs.settings)
        text.update(setting_labels(g[usable(g)], rs.settings))
        labels[g.index] = g["setting"].map(text).to_numpy()
    return labels


def task_infos(rs: RunSet, metric: str | None, target: dict[str, float] | float | None,
               margins: Mapping[str, float] | None = None) -> dict[str, TaskInfo]:
    """Decide metric, direction and target per task.

    ``metric=None`` means the default: ``config.task.metric`` if the task names one, else
    test/accuracy, else the first logged of METRIC_FALLBACK.  The target is ``--target`` if
    given (one value for all tasks or per task), else ``config.task.target`` when it refers to
    the metric in use (``task.target_metric``/``task.metric`` equal to it, or neither set and
    the metric is the task's default).  The equivalence margin is ``margins[metric]`` (--margin),
    or ``margins[task]``, else the task's ``equivalence_margin`` (a number for its default metric, or
    METRIC: VALUE), else
    None (``default_margin`` decides).
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
        # Select on validation; a protocol without a validation split names its own selection
        # metric, else the training split's (never the test split unless a protocol says so).
        named = tcfg.get("select_metric")
        sel = next((c for c in (named, valid, f"train/{name}") if c in names), use)
        margin, msrc = task_margin(tcfg.get("equivalence_margin"), use, default, task)
        if margins and (use in margins or task in margins):
            margin, msrc = margins.get(task, margins.get(use)), "--margin"
        out[task] = TaskInfo(task, use, higher_is_better(use), tgt, src, sel, note, margin, msrc)
    return out


def task_margin(value: Any, metric: str, default_metric: str, task: str) -> tuple[float | None, str]:
    """The margin a task's ``equivalence_margin`` key sets for ``metric``: a number applies to the
    task's default metric, a mapping names its metrics.  ReportError on a value that is no margin."""
    if isinstance(value, Mapping):
        value = value.get(metric)
    elif metric != default_metric:
        value = None
    if value is None:
        return None, "default"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ReportError(f"task {task}: equivalence_margin {value!r} for {metric} is not a positive number")
    return float(value), "task config"


def default_margin(metric: str) -> float | None:
    """ACCURACY_MARGIN for accuracy-like metrics; None (no margin) for any other metric."""
    return ACCURACY_MARGIN if higher_is_better(metric) else None


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
        last_step = ev.drop_duplicates("run", keep="last").set_index("run")["step"].astype(float)
        df = pd.DataFrame({"final": final, "best": best, "final_step": last_step})
        tgt = pd.Series({r: tasks[runs.at[r, "task"]].target for r in df.index}, dtype=float)
        t_ev = tgt.reindex(ev["run"]).to_numpy()
        hit = (ev["value"].to_numpy() >= t_ev) if hb else (ev["value"].to_numpy() <= t_ev)
        first = ev[hit].drop_duplicates("run", keep="first").set_index("run")
        df["hit_epoch"] = first["epoch"]
        df["hit_step"] = first["step"].astype(float)
        df["hit_time"] = first["time"]
        parts.append(df)
    scores = pd.concat(parts) if parts else pd.DataFrame(
        columns=["final", "best", "final_step", "hit_epoch", "hit_step", "hit_time"], dtype=float)

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


def welch_diff(a: np.ndarray, b: np.ndarray, level: float = LEVEL,
               min_seeds: int = MIN_SEEDS_STAR) -> tuple[Any, Any, Any, Any, Any]:
    """mean(a) − mean(b) over the last axis, Welch's t interval at ``level`` and its two-sided p.

    Returns (diff, lo, hi, p, significant).  Works on stacks of groups (shape (..., n)), so the
    calibration test runs thousands of simulated comparisons through this very function.
    ``significant`` needs the interval to exclude 0 and at least ``min_seeds`` seeds in both
    groups: with two seeds the interval is valid but so wide that a star would mostly mark noise
    in the variance estimate.  Fewer than two seeds in a group: NaN interval, no star.
    """
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.shape[-1], b.shape[-1]
    diff = a.mean(-1) - b.mean(-1) if na and nb else np.full(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), np.nan)
    if na < 2 or nb < 2:
        nan = np.full_like(np.asarray(diff, float), np.nan)
        return diff, nan, nan.copy(), nan.copy(), np.zeros(nan.shape, bool)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # identical seeds: zero variance
        res = stats.ttest_ind(a, b, axis=-1, equal_var=False)
        ci = res.confidence_interval(level)
    lo, hi, p = np.asarray(ci.low, float), np.asarray(ci.high, float), np.asarray(res.pvalue, float)
    # Every seed identical on both sides (a deterministic problem, e.g. reddi_online): the seeds are no
    # sample, and the t interval collapses onto the difference, starring float rounding (4e-8 between two
    # implementations of Adam). No interval, no star; the difference itself is exact.
    degenerate = (np.ptp(a, axis=-1) == 0) & (np.ptp(b, axis=-1) == 0)
    lo, hi, p = (np.where(degenerate, np.nan, v) for v in (lo, hi, p))
    sig = ((lo > 0) | (hi < 0)) & (min(na, nb) >= min_seeds)
    return diff, lo, hi, p, sig


def _rounding(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The size of float rounding in differences of ``a`` and ``b`` (last axis)."""
    return 64 * np.finfo(float).eps * np.maximum(np.abs(a).max(-1), np.abs(b).max(-1))


def paired_diff(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[Any, Any, Any, Any]:
    """mean(a − b) over pairs (the last axis: a[..., i] and b[..., i] ran the same seed), the paired
    t interval at ``level`` and its two-sided p (scipy.stats.ttest_rel).  Returns (diff, lo, hi, p).

    Works on stacks (shape (..., n)) like ``welch_diff``.  NaN interval and p with fewer than two
    pairs, and where every pair differs by the same amount (to float rounding): then the difference
    is exact and the seeds give no spread to test it against.
    """
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    diff = d.mean(-1) if d.shape[-1] else np.full(d.shape[:-1], np.nan)
    if d.shape[-1] < 2:
        nan = np.full_like(np.asarray(diff, float), np.nan)
        return diff, nan, nan.copy(), nan.copy()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(a, b, axis=-1)
        ci = res.confidence_interval(level)
    degenerate = np.ptp(d, axis=-1) <= _rounding(a, b)
    lo, hi, p = (np.where(degenerate, np.nan, np.asarray(v, float)) for v in (ci.low, ci.high, res.pvalue))
    return diff, lo, hi, p


def pair_up(seeds_a: list, seeds_b: list) -> tuple[list[int], list[int]] | None:
    """Positions of the shared seeds in each arm, in seed order, when every seed of one arm has its
    partner in the other; None when the design is not paired (a seed missing on both sides, an
    unknown seed, or a seed that repeats within an arm)."""
    sa, sb = list(seeds_a), list(seeds_b)
    if any(s is None or s != s for s in sa + sb) or len(set(sa)) < len(sa) or len(set(sb)) < len(sb):
        return None
    if not (set(sa) <= set(sb) or set(sb) <= set(sa)):
        return None
    common = sorted(set(sa) & set(sb))
    return [sa.index(s) for s in common], [sb.index(s) for s in common]


def compare(a: np.ndarray, b: np.ndarray, seeds_a: list, seeds_b: list, margin: float | None) -> dict[str, Any]:
    """Arm ``a`` against baseline ``b`` (final values and their seeds): the test the design allows
    (paired t where the arms share seeds, else Welch's t), Δ with its interval and p, and the TOST
    p-value of equivalence within ±``margin`` (statsmodels).  ``sd``: the spread that sets the seeds
    a margin needs (of the pair differences, or √(s_a² + s_b²)); ``n``: pairs or the smaller arm."""
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired
    a, b = np.asarray(a, float), np.asarray(b, float)
    pairs = pair_up(seeds_a, seeds_b)
    out: dict[str, Any] = {"pairs": 0, "p_tost": math.nan, "sd": math.nan}
    if pairs is not None and len(pairs[0]) >= 2:
        x, y = a[pairs[0]], b[pairs[1]]
        d, lo, hi, p = (float(v) for v in paired_diff(x, y))
        exact = bool(np.ptp(x - y) <= _rounding(x, y))
        out.update(test="exact" if exact else "paired t", pairs=len(x), n=len(x))
        if not exact:
            out["sd"] = float(np.std(x - y, ddof=1))
            if margin:
                out["p_tost"] = float(ttost_paired(x, y, -margin, margin)[0])
    else:
        d, lo, hi, p, _ = (float(v) for v in welch_diff(a, b))
        exact = len(a) >= 2 and len(b) >= 2 and np.ptp(a) == 0 and np.ptp(b) == 0
        out.update(test="exact" if exact else "Welch t" if min(len(a), len(b)) >= 2 else "none",
                   n=min(len(a), len(b)))
        if out["test"] == "Welch t":
            out["sd"] = float(math.sqrt(np.var(a, ddof=1) + np.var(b, ddof=1)))
            if margin:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore", RuntimeWarning)  # one side without spread
                    out["p_tost"] = float(ttost_ind(a, b, -margin, margin, usevar="unequal")[0])
    out.update(delta=d, ci_lo=lo, ci_hi=hi, p_value=p)
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' multipletests); NaN entries (no test) stay NaN and are
    no part of the family."""
    from statsmodels.stats.multitest import multipletests
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


_N = np.arange(2, 100_001)  # candidate seed counts for seeds_for_margin


def seeds_for_margin(sd: float, margin: float, paired: bool, family: int = 1, power: float = POWER,
                     alpha: float = ALPHA) -> int | None:
    """The seeds (pairs, or per arm) at which TOST would show equivalence within ±``margin`` with
    probability ``power`` if the true Δ were 0 and the spread ``sd`` (of the pair differences, or
    √(s_a² + s_b²)) as observed, at Holm's strictest threshold α/``family``: the smallest n with
    (t_{1−α/family} + t_{(1+power)/2}) · sd/√n ≤ margin (Julious 2004, df n − 1 paired, 2(n − 1)
    for two arms).  None: more than 100,000, or no spread/margin to plan with."""
    from scipy import stats
    if not (margin and margin > 0 and np.isfinite(sd) and sd > 0):
        return None
    df = _N - 1 if paired else 2 * (_N - 1)
    need = (stats.t.ppf(1 - alpha / max(family, 1), df) + stats.t.ppf((1 + power) / 2, df)) * sd / np.sqrt(_N)
    ok = np.flatnonzero(need <= margin)
    return int(_N[ok[0]]) if ok.size else None


def seeds_to_detect(sd: float, delta: float, paired: bool, family: int = 1, power: float = POWER,
                    alpha: float = ALPHA) -> int | None:
    """The seeds (pairs, or per arm) at which the two-sided difference test at Holm's strictest
    threshold α/``family`` would detect a true difference ``delta`` with probability ``power``, the
    spread ``sd`` (as in ``seeds_for_margin``) as observed: the smallest n with
    (t_{1−α/(2·family)} + t_{power}) · sd/√n ≤ |delta|, the same t-approximation as
    ``seeds_for_margin`` (Δ = sd: 10 pairs, 17 per arm, as G*Power's).  None: more than 100,000, or
    no spread/difference to plan with."""
    from scipy import stats
    if not (np.isfinite(delta) and delta != 0 and np.isfinite(sd) and sd > 0):
        return None
    df = _N - 1 if paired else 2 * (_N - 1)
    need = (stats.t.ppf(1 - alpha / (2 * max(family, 1)), df) + stats.t.ppf(power, df)) * sd / np.sqrt(_N)
    ok = np.flatnonzero(need <= abs(delta))
    return int(_N[ok[0]]) if ok.size else None


def verdict(row: Mapping[str, Any], higher_better: bool, min_seeds: int = MIN_SEEDS_STAR) -> str:
    """equivalent / better / worse / inconclusive for one compared cell (see ``aggregate``); the same
    rule for exact and tested cells, equivalence first.

    Equivalent: a margin m, and the Holm-adjusted TOST p < ALPHA (exact cells: |Δ| ≤ m).  Else better
    or worse: Holm-adjusted p < ALPHA (exact cells: Δ ≠ 0).  Tested cells need at least ``min_seeds``
    seeds a side for either.  A cell with diverged seeds (``row["diverged_side"]``: "arm", "baseline"
    or "both"; Δ comes from the finite seeds) is never equivalent: dropping the diverged seeds would
    bias it.  It is better only when the baseline alone diverged, worse only when the compared arm
    alone did (divergence only strengthens those), else inconclusive; an arm whose every seed diverged
    is worse than a baseline with none diverged."""
    d, m = row["delta"], row["margin"]
    has_margin = m is not None and np.isfinite(m)
    if not np.isfinite(d):  # no finite seed in the arm: all diverged, against a baseline that had some
        return "worse" if row.get("diverged_side", "") == "arm" else "inconclusive"
    if row["test"] == "exact":
        equivalent, differs = has_margin and abs(d) <= m, d != 0
    else:
        enough = row["n"] >= min_seeds
        equivalent, differs = enough and row["p_tost_holm"] < ALPHA, enough and row["p_holm"] < ALPHA
    direction = "better" if (d > 0) == higher_better else "worse"
    v = "equivalent" if equivalent else direction if differs else "inconclusive"
    side = row.get("diverged_side", "")
    if side and not (v == "better" and side == "baseline") and not (v == "worse" and side == "arm"):
        return "inconclusive"
    return v


def worst_value(higher_better: bool) -> float:
    return -math.inf if higher_better else math.inf


def score_settings(runs: pd.DataFrame, higher_better: Mapping[str, bool]) -> pd.DataFrame:
    """The one rule that picks the best setting, for ``report`` and ``best`` alike.

    ``runs``: one row per run with task, optimizer, setting, status and ``sel`` (the run's
    validation score, final or best) and optionally ``problem`` (non-empty = unreadable).
    A setting scores the mean of ``sel`` over its completed and diverged seeds, where a diverged
    seed (or a completed one without a score) counts as the worst possible value: a setting that
    sometimes blows up cannot win on its surviving seeds.  Failed, interrupted, running and
    unreadable completed runs are left out.  Returns one row per task x setting with
    optimizer, score, seeds (counted), diverged and is_best (the winner per task x optimizer;
    ties go to the first setting in sort order).
    """
    r = runs[runs["status"].isin(["completed", "diverged"])]
    if "problem" in r:
        r = r[(r["problem"] == "") | (r["status"] == "diverged")]
    worst = r["task"].map(lambda t: worst_value(higher_better[t]))
    score = r["sel"].where(r["status"] == "completed", worst).fillna(worst)
    df = r[["task", "optimizer", "setting"]].assign(score=score.astype(float), diverged=r["status"] == "diverged")
    out = (df.groupby(["task", "setting"], sort=True)
             .agg(optimizer=("optimizer", "first"), score=("score", "mean"), seeds=("score", "size"),
                  diverged=("diverged", "sum"))
             .reset_index())
    out["diverged"] = out["diverged"].astype(int)
    out["is_best"] = False
    for (task, _), g in out.groupby(["task", "optimizer"], sort=False):
        s = g["score"]
        out.loc[s.idxmax() if higher_better[task] else s.idxmin(), "is_best"] = True
    return out


def grid_edge_warnings(scored: pd.DataFrame, settings: Mapping[str, Mapping[str, Any]],
                       prefixes: tuple[str, ...] = ("optimizer.", "lr_schedule.")) -> list[str]:
    """Warnings for winners on the edge of the searched grid.

    For every task x optimizer with several settings and every numeric hyperparameter (under
    ``prefixes``): among the settings that equal the winner in everything but that key (the grid
    line through the winner), if at least two values were tried and the winner's is the largest
    or the smallest, the optimum may lie outside the grid.
    """
    out = []
    for (task, opt), g in scored.groupby(["task", "optimizer"], sort=True):
        if len(g) < 2 or not g["is_best"].any():
            continue
        win = settings[g.loc[g["is_best"], "setting"].iloc[0]]
        keys = sorted({k for key in g["setting"] for k in settings[key] if k.startswith(prefixes)})
        for k in keys:
            line = [settings[key] for key in g["setting"]
                    if all(repr(settings[key].get(f)) == repr(win.get(f)) for f in set(settings[key]) | set(win) if f != k)]
            vals = [st.get(k) for st in line]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                continue
            tried = sorted(set(float(v) for v in vals))
            if len(tried) < 2:
                continue
            w = float(win[k])
            edge = "largest" if w == tried[-1] else "smallest" if w == tried[0] else None
            if edge:
                name = k.split(".", 1)[1]
                out.append(f"{task} / {opt}: best {name} {w:g} is the {edge} tried "
                           f"({tried[0]:g} … {tried[-1]:g}, {len(tried)} values): widen the grid")
    return out


def _finished(runs: pd.DataFrame) -> pd.Series:
    """The seeds that count for time-to-target: completed or diverged, and readable.  A
    diverged seed that never reached the target counts as ∞."""
    return runs["status"].isin(["completed", "diverged"]) & (runs["problem"] == "")


def _std(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


def aggregate(rs: RunSet, tasks: dict[str, TaskInfo], scores: pd.DataFrame, baseline: str,
              x: str = "epoch", family: str = "table") -> pd.DataFrame:
    """One row per task × setting: seed counts by status, final/best mean and std over completed
    seeds, time-to-target, the selection score (``sel_mean``, see ``score_settings``), and against
    the baseline (its best setting on the task): the comparison (``compare``), Holm-adjusted p of
    the difference and of equivalence over ``family`` ("table": every comparison here, "task": each
    task's), the verdict, and the schedule divergence (``add_divergence``)."""
    if family not in FAMILIES:
        raise ReportError(f"bad --family {family!r}: expected table (every comparison of the report) or task")
    runs = rs.runs.join(scores, how="left")
    runs = runs[runs["task"].isin(list(tasks))]
    readable, in_means = runs["problem"] == "", usable(runs)
    finished = _finished(runs)
    # Unreadable completed runs count as failed: they are in no mean but must show up.
    failed = runs["status"].isin(["failed", "interrupted"]) | (~readable & ~runs["status"].isin(["diverged", "running"]))
    rows = []
    for (task, key), g in runs.groupby(["task", "setting"], sort=True):
        done = g[in_means.loc[g.index]]
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
            "steps": float(done["final_step"].max()) if len(done) else math.nan,
            # The compared values: completed seeds with a finite final.  The rest that ran to an end
            # (diverged, or a non-finite final) are kept apart: they decide what a verdict may say.
            "_finals": done["final"].to_numpy(float)[ok := np.isfinite(done["final"].to_numpy(float))],
            "_seeds": done["seed"][ok].tolist(),
            "_bad_seeds": g.loc[g["status"] == "diverged", "seed"].tolist() + done["seed"][~ok].tolist(),
        })
    agg = pd.DataFrame(rows)
    if agg.empty:
        return agg
    hb = {t: higher_is_better(tasks[t].select_metric) for t in tasks}
    scored = score_settings(runs, hb)
    agg = agg.merge(scored[["task", "setting", "score", "is_best"]].rename(columns={"score": "sel_mean"}),
                    on=["task", "setting"], how="left")
    agg["is_best"] = agg["is_best"].fillna(False).astype(bool)
    agg = agg.sort_values(["task", "optimizer", "label"], kind="stable",  # names case-insensitively: adam, AdaX, Lion
                          key=lambda c: c.astype(str).str.lower()).reset_index(drop=True)
    agg["is_baseline"] = agg["is_best"] & (agg["optimizer"] == baseline)
    compare_to_baseline(agg, tasks, family)
    add_divergence(agg, rs.settings)
    return agg.drop(columns=["_finals", "_seeds", "_bad_seeds"])


def _diverged_count(seeds_a: list, seeds_b: list, bad_a: list, bad_b: list) -> tuple[int, int]:
    """(seeds where either arm diverged, seeds compared): by seed where every seed is known, else
    by run."""
    if all(s is not None and s == s for s in seeds_a + seeds_b):
        return len(set(bad_a) | set(bad_b)), len(set(seeds_a) | set(seeds_b))
    return len(bad_a) + len(bad_b), max(len(seeds_a), len(seeds_b))


def compare_to_baseline(agg: pd.DataFrame, tasks: Mapping[str, TaskInfo], family: str = "table") -> None:
    """Fill the comparison columns of ``agg`` in place: every setting of a task against the
    baseline's best setting there (``compare``), Holm over ``family``, the verdict and, where it is
    inconclusive, the seeds its margin would need."""
    for c in ("delta", "ci_lo", "ci_hi", "p_value", "p_holm", "margin", "p_tost", "p_tost_holm", "seeds_needed", "sd"):
        agg[c] = math.nan
    agg["test"], agg["pairs"], agg["n"] = "", 0, 0
    agg["margin_source"], agg["verdict"], agg["diverged_side"] = "", "", ""
    agg["diverged_seeds"], agg["compared_seeds"] = 0, 0
    for task, g in agg.groupby("task"):
        base = g[g["is_baseline"]]
        if base.empty:
            continue
        b, bseeds, bbad = base["_finals"].iloc[0], base["_seeds"].iloc[0], base["_bad_seeds"].iloc[0]
        info = tasks[task]
        margin = info.margin if info.margin is not None else default_margin(info.metric)
        for i in g.index:
            finals, bad = agg.at[i, "_finals"], agg.at[i, "_bad_seeds"]
            if i == base.index[0] or not len(b) or not (len(finals) or bad):
                continue
            # Every seed of the arm diverged: no Δ, but still a comparison (see ``verdict``).
            cmp = (compare(finals, b, agg.at[i, "_seeds"], bseeds, margin) if len(finals) else
                   {"test": "none", "pairs": 0, "n": 0, "delta": math.nan, "p_value": math.nan})
            for k, v in cmp.items():
                agg.at[i, k] = v
            agg.at[i, "margin"] = math.nan if margin is None else margin
            agg.at[i, "margin_source"] = info.margin_source if info.margin is not None else "default"
            agg.at[i, "diverged_side"] = {(True, False): "arm", (False, True): "baseline",
                                          (True, True): "both"}.get((bool(bad), bool(bbad)), "")
            agg.at[i, "diverged_seeds"], agg.at[i, "compared_seeds"] = _diverged_count(
                agg.at[i, "_seeds"] + bad, bseeds + bbad, bad, bbad)
    compared = agg["test"] != ""
    groups = agg[compared].groupby("task" if family == "task" else np.zeros(int(compared.sum()))).groups
    for idx in groups.values():
        agg.loc[idx, "p_holm"] = holm(agg.loc[idx, "p_value"].to_numpy())
        agg.loc[idx, "p_tost_holm"] = holm(agg.loc[idx, "p_tost"].to_numpy())
        k_tost = int(np.isfinite(agg.loc[idx, "p_tost"]).sum())
        k_diff = int(np.isfinite(agg.loc[idx, "p_value"]).sum())
        for i in idx:
            row = agg.loc[i]
            agg.at[i, "verdict"] = verdict(row, higher_is_better(row["metric"]))
            if agg.at[i, "verdict"] == "inconclusive" and np.isfinite(row["margin"]):
                # Past the margin, equivalence is out of reach: plan for detecting the Δ seen.
                if abs(row["delta"]) > row["margin"]:
                    n = seeds_to_detect(row["sd"], row["delta"], bool(row["pairs"]), k_diff)
                else:
                    n = seeds_for_margin(row["sd"], row["margin"], bool(row["pairs"]), k_tost)
                agg.at[i, "seeds_needed"] = math.nan if n is None else n
    agg["significant"] = compared & (agg["p_holm"] < ALPHA) & (agg["n"] >= MIN_SEEDS_STAR)
    del agg["sd"]


def add_divergence(agg: pd.DataFrame, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Per compared cell whose optimizer and baseline both have a known β̂₂ schedule: ``schedule_tv``,
    the total-variation distance between their weightings of past squared gradients after the
    run's ``steps``, and ``tv_apart_step``, the step at which it first reaches divergence.APART
    (NaN: the same schedule, or not within divergence.MAX_STEPS steps)."""
    agg["schedule_tv"], agg["tv_apart_step"] = math.nan, math.nan
    for task, g in agg.groupby("task"):
        base = g[g["is_baseline"]]
        if base.empty:
            continue
        sb = divergence.beta2_schedule(dict(settings.get(base["setting"].iloc[0], {})))
        for i in g.index[g["test"] != ""]:
            sa = divergence.beta2_schedule(dict(settings.get(agg.at[i, "setting"], {})))
            steps = agg.at[i, "steps"]
            if sa is None or sb is None or not np.isfinite(steps) or steps < 1:
                continue
            agg.at[i, "schedule_tv"] = divergence.tv_distance(sa, sb, int(steps))
            apart = divergence.steps_to_apart(sa, sb)
            agg.at[i, "tv_apart_step"] = math.nan if apart is None else apart


def _profile_ratios(t: np.ndarray) -> np.ndarray:
    """Times (..., task, optimizer) -> ratio to the fastest optimizer on each task.  NaN counts
    as ∞; a task nobody solved gives every optimizer r = ∞; 0/0 (both instant) is 1."""
    t = np.where(np.isnan(t), np.inf, t)
    best = t.min(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(best == 0, np.where(t == 0, 1.0, np.inf), t / best)
    return np.where(np.isinf(best), np.inf, r)


def _fraction_within(r: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Ratios (..., task, optimizer) -> ρ (..., τ, optimizer): the fraction of tasks with r ≤ τ.
    One pass per task (there are few), vectorised over resamples, τ and optimizers."""
    counts = np.zeros(r.shape[:-2] + (len(taus), r.shape[-1]), np.int32)
    for k in range(r.shape[-2]):
        counts += r[..., k, None, :] <= taus[:, None]
    return counts / r.shape[-2]


def performance_profile(times: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """AlgoPerf / Dolan–Moré performance profiles.

    ``times``: index = task, columns = optimizer, values = time-to-target (∞ = never reached
    or not run).  r[t, o] = times[t, o] / min_o times[t, o]; ρ_o(τ) = fraction of tasks with
    r[t, o] ≤ τ.  A task nobody solved gives every optimizer r = ∞ there.  Returns a frame
    indexed by τ with one column per optimizer.
    """
    taus = np.asarray(taus, float)
    rho = _fraction_within(_profile_ratios(times.to_numpy(float)), taus)
    return pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=times.columns)


def profile_times(agg: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Task × optimizer table of the best setting's median time-to-target (∞ if missing)."""
    best = agg[agg["is_best"]]
    t = best.pivot_table(index="task", columns="optimizer", values="median_to_target", aggfunc="first")
    return t.reindex(index=tasks).fillna(np.inf)


def best_run_times(runs: pd.DataFrame, agg: pd.DataFrame, x: str = "epoch") -> pd.DataFrame:
    """Each finished seed's time-to-target (in ``x``) in each optimizer's best setting: the
    sample whose median is ``median_to_target``.  ``runs``: rs.runs joined with run_scores.
    Returns rows task, optimizer, run, time (∞ = not reached)."""
    best = agg.loc[agg["is_best"], ["task", "setting"]]
    r = runs[_finished(runs)].reset_index(drop=True).merge(best, on=["task", "setting"])
    return pd.DataFrame({"task": r["task"], "optimizer": r["optimizer"], "run": r["run"],
                         "time": r[f"hit_{x}"].astype(float).fillna(np.inf)})


def _percentile_band(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile interval over the resamples (axis 0), as scipy's method='percentile'."""
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi


def _resample(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` resamples with replacement of the 1-d sample ``x``: shape (n_boot, len(x))."""
    return x[rng.integers(0, len(x), size=(n_boot, len(x)))]


@dataclass
class ProfileBand:
    """A profile ρ (index τ, a column per optimizer) with its pointwise bootstrap band
    ``lo``/``hi`` (same shape; NaN where there is no band) and ``thin``: the (task, optimizer)
    pairs with fewer than two seeds, which leave bands undefined (see the builders)."""

    rho: pd.DataFrame
    lo: pd.DataFrame
    hi: pd.DataFrame
    thin: list[tuple[str, str]]

    def to_csv_frame(self) -> pd.DataFrame:
        """The CSV layout: ρ in a column per optimizer (the pre-band layout, kept for its
        readers), then ``<optimizer>_lo`` and ``<optimizer>_hi`` per optimizer."""
        return pd.concat([self.rho, self.lo.add_suffix("_lo"), self.hi.add_suffix("_hi")], axis=1)


def performance_profile_band(run_times: pd.DataFrame, tasks: list[str], optimizers: list[str],
                             taus: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                             seed: int = 0) -> ProfileBand:
    """Performance profiles from per-seed times (``best_run_times``) with a pointwise band from a
    stratified bootstrap: each task x optimizer's seeds are resampled (independently, with
    replacement, keeping their number), its median time recomputed, all ratios and ρ(τ)
    recomputed; the band is the percentile interval at ``level`` over ``n_boot`` resamples.

    A task x optimizer without seeds (not run) is ∞ in every resample.  The ratios on a task
    depend on every optimizer's time there, so a pair with a single seed (whose spread the
    bootstrap cannot see) leaves every optimizer without a band (NaN), listed in ``thin``.
    """
    taus = np.asarray(taus, float)
    rng = np.random.default_rng(seed)
    point = np.full((len(tasks), len(optimizers)), np.inf)
    boot = np.full((n_boot, len(tasks), len(optimizers)), np.inf)
    thin = []
    groups = {k: g["time"].to_numpy(float) for k, g in run_times.groupby(["task", "optimizer"], sort=False)}
    for i, task in enumerate(tasks):
        for j, opt in enumerate(optimizers):
            t = groups.get((task, opt))
            if t is None or not len(t):
                continue
            point[i, j] = np.median(t)
            if len(t) < 2:
                thin.append((task, opt))
            boot[:, i, j] = np.median(_resample(t, n_boot, rng), axis=1)
    index = pd.Index(taus, name="tau")
    frame = lambda a: pd.DataFrame(a, index=index, columns=list(optimizers))  # noqa: E731
    rho = frame(_fraction_within(_profile_ratios(point), taus))
    if thin or not len(tasks):
        nan = frame(np.full(rho.shape, np.nan))
        return ProfileBand(rho, nan, nan.copy(), thin)
    lo, hi = _percentile_band(_fraction_within(_profile_ratios(boot), taus), level)
    return ProfileBand(rho, frame(lo), frame(hi), thin)


def score_profile_band(norm: pd.DataFrame, taus: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                       seed: int = 0) -> ProfileBand:
    """rliable's performance profile (score distribution, Agarwal et al. 2021): per optimizer,
    the fraction of its runs whose normalised score (``normalised_scores``) is at least τ,
    averaged over the tasks it ran on so that each task weighs the same whatever its seed
    count.  Band: stratified bootstrap (seeds resampled within each task), pointwise percentile
    interval; NaN for an optimizer with fewer than two seeds on some task (as the IQM's CI).

    ≥ τ rather than rliable's > τ: here the worst seed of a task scores exactly 0, which > would
    drop already at τ = 0; the two differ only at a τ equal to some score.
    """
    # Not rliable.create_performance_profile: rliable's dependency arch fails to import with pandas 3.
    taus = np.asarray(taus, float)
    rng = np.random.default_rng(seed)
    opts = sorted(norm["optimizer"].unique())
    rho = np.full((len(taus), len(opts)), np.nan)
    lo, hi = rho.copy(), rho.copy()
    thin = []
    for j, opt in enumerate(opts):
        by_task = {t: g["score"].to_numpy(float) for t, g in norm[norm["optimizer"] == opt].groupby("task", sort=True)}
        samples = list(by_task.values())
        rho[:, j] = np.mean([(s[:, None] >= taus).mean(axis=0) for s in samples], axis=0)
        short = [(t, opt) for t, s in by_task.items() if len(s) < 2]
        if short:
            thin += short
            continue
        # A resample is how often it draws each seed (multinomial counts), so its fraction ≥ τ is
        # a matrix product (in floats, for BLAS): no (resample x seed x τ) array.
        boot = sum(rng.multinomial(len(s), np.full(len(s), 1 / len(s)), size=n_boot).astype(float)
                   @ (s[:, None] >= taus).astype(float) / len(s) for s in samples) / len(samples)
        lo[:, j], hi[:, j] = _percentile_band(boot, level)
    index = pd.Index(taus, name="tau")
    frame = lambda a: pd.DataFrame(a, index=index, columns=opts)  # noqa: E731
    return ProfileBand(frame(rho), frame(lo), frame(hi), thin)


def _iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean of all task x seed scores pooled (rliable's ``aggregate_iqm``)."""
    from scipy import stats
    return stats.trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)


def normalised_scores(runs: pd.DataFrame, agg: pd.DataFrame, tasks: dict[str, TaskInfo]) -> pd.DataFrame:
    """Final scores of each optimizer's best setting, normalised per task to [0, 1].

    ``runs``: rs.runs joined with run_scores.  Per task, 0 is the worst and 1 the best final
    value any seed of any optimizer's best setting reached (oriented, so 1 is always best); a
    diverged seed scores 0.  Returns rows task, optimizer, run, score.
    """
    best = agg.loc[agg["is_best"], ["task", "setting"]]
    r = runs.reset_index(drop=True).merge(best, on=["task", "setting"])
    r = r[usable(r) | (r["status"] == "diverged")]
    parts = []
    for task, g in r.groupby("task", sort=True):
        v = g["final"].where(g["status"] == "completed").to_numpy(float)
        v = v if higher_is_better(tasks[task].metric) else -v
        lo, hi = (np.nanmin(v), np.nanmax(v)) if np.isfinite(v).any() else (0.0, 0.0)
        norm = np.where(np.isfinite(v), (v - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
        parts.append(pd.DataFrame({"task": task, "optimizer": g["optimizer"].to_numpy(),
                                   "run": g["run"].to_numpy(), "score": norm}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["task", "optimizer", "run", "score"])


def iqm_across_tasks(norm: pd.DataFrame, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> pd.DataFrame:
    """Per optimizer: IQM of its normalised scores over all task x seed, with a stratified
    bootstrap CI (seeds resampled within each task, as rliable does; scipy.stats.bootstrap
    resamples each task's sample independently).  The CI needs two seeds on every task."""
    from scipy import stats
    rows = []
    for opt, g in norm.groupby("optimizer", sort=True):
        samples = [t["score"].to_numpy(float) for _, t in g.groupby("task", sort=True)]
        lo = hi = math.nan
        if all(len(x) >= 2 for x in samples):
            res = stats.bootstrap(tuple(samples), _iqm, n_resamples=n_boot, confidence_level=level,
                                  method="percentile", vectorized=True, paired=False, rng=seed)
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        rows.append({"optimizer": opt, "tasks": len(samples), "seeds": int(sum(map(len, samples))),
                     "iqm": float(_iqm(*samples)), "ci_lo": lo, "ci_hi": hi,
                     "mean": float(np.mean(np.concatenate(samples)))})
    return pd.DataFrame(rows, columns=["optimizer", "tasks", "seeds", "iqm", "ci_lo", "ci_hi", "mean"])
