"""Tuning-effort curves: the expected best validation score after k tuning trials.

Dodge, Gururangan, Card, Schwartz and Smith (2019), "Show Your Work: Improved Reporting of
Experimental Results", EMNLP, §3: draw k hyperparameter settings uniformly, with replacement, from
the N that were evaluated, and report the expected maximum of their validation scores.  With the
scores sorted, v_(1) <= ... <= v_(N), the empirical CDF gives the exact expectation

    E[max of k draws] = Σ_i v_(i) [(i/N)^k - ((i-1)/N)^k],

since (i/N)^k is the probability that every draw lies among the i smallest.  Plotted for k = 1..N it
answers "which optimizer is better when I can afford k runs of tuning" (Sivaprasad et al. 2020,
"Optimizer Benchmarking Needs to Account for Hyperparameter Tuning", ICML).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir import atomic_write
from .aggregate import higher_is_better


def expected_max(values: np.ndarray, k: int) -> float:
    """E[max of k draws with replacement from ``values``] (Dodge et al. 2019's closed form)."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0 or k < 1:
        raise ValueError(f"need at least one value and k >= 1 (got {n} values, k={k})")
    cdf = np.arange(n + 1) / n
    return float(np.sum(v * (cdf[1:] ** k - cdf[:-1] ** k)))


def effort_curve(scores: np.ndarray, diverged: np.ndarray, higher_better: bool, floor: float) -> pd.DataFrame:
    """The curve of one task x optimizer: k, expected_best and p_all_diverged for k = 1..N.

    ``scores``: each grid point's tuning score (mean over its seeds); ``diverged``: grid points with a
    diverged seed, which are valued at ``floor`` (the worst finite score of the task's tuning), so
    that the expectation stays finite; ``p_all_diverged`` = (d/N)^k says how often all k trials
    diverge.  Lower-is-better metrics take the expected minimum.
    """
    scores = np.where(diverged, floor, np.asarray(scores, dtype=float))
    sign = 1.0 if higher_better else -1.0
    n, d = len(scores), int(np.sum(diverged))
    ks = np.arange(1, n + 1)
    return pd.DataFrame({"k": ks, "expected_best": [sign * expected_max(sign * scores, k) for k in ks],
                         "p_all_diverged": (d / n) ** ks})


def effort_curves(settings: pd.DataFrame) -> pd.DataFrame:
    """Curves per task x optimizer from ``settings``: one row per tuned grid point with task,
    optimizer, metric, score (mean over tuning seeds; ±inf where a seed diverged) and diverged,
    as ``best``'s ``select_best(...)[0].attrs["scored"]`` holds them."""
    out = []
    for task, g in settings.groupby("task", sort=True):
        finite = g["score"][np.isfinite(g["score"])]
        hb = higher_is_better(g["metric"].iloc[0])
        floor = (finite.min() if hb else finite.max()) if len(finite) else math.nan
        for opt, h in g.groupby("optimizer", sort=True):
            bad = (h["diverged"] > 0) | ~np.isfinite(h["score"])
            curve = effort_curve(h["score"].to_numpy(), bad.to_numpy(), hb, floor)
            out.append(curve.assign(task=task, optimizer=opt, metric=h["metric"].iloc[0], grid_size=len(h)))
    cols = ["task", "optimizer", "metric", "grid_size", "k", "expected_best", "p_all_diverged"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def write_effort(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``effort.csv`` (atomically) and ``effort.png``/``.svg``: one panel per task, a line per optimizer."""
    from .plot import _new, _pretty, optimizer_colors, save

    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "effort.csv"
    atomic_write(csv, lambda tmp: curves.to_csv(tmp, index=False))
    if curves.empty:
        return [csv]
    tasks = sorted(curves["task"].unique())
    colors = optimizer_colors(list(curves["optimizer"].unique()))
    ncols = min(len(tasks), 3)
    fig, axes = _new(math.ceil(len(tasks) / ncols), ncols, h=2.8)
    for ax, task in zip(axes, tasks):
        g = curves[curves["task"] == task]
        for opt, h in g.groupby("optimizer", sort=True):
            ax.plot(h["k"], h["expected_best"], marker="o", ms=3, color=colors[opt], label=opt)
        ax.set_title(task)
        ax.set_xlabel("tuning trials k (grid points drawn)")
        ax.set_ylabel(f"expected best {_pretty(g['metric'].iloc[0])}")
        ax.legend()
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    return [csv, save(fig, out_dir, "effort")]
