"""Report figures (matplotlib Figure objects, no pyplot or backend state): PNG + SVG, one
colour per optimizer name.

Each plotted series carries a gid ``series-<n>`` so it is a ``<g id="series-n">`` in the SVG
(tests and scripts can count series without parsing pixels).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from .aggregate import TaskInfo, split_metric
from .load import RunSet

LINESTYLES = ("-", "--", ":", "-.")
MAX_POINTS = 2000  # per plotted curve; keeps SVGs small for long runs
RC = {"svg.fonttype": "none", "svg.hashsalt": "adaxbench", "font.size": 9, "axes.grid": True,
      "grid.alpha": 0.3, "legend.fontsize": 8, "legend.framealpha": 0.8, "savefig.dpi": 120}


# --- β̂₂ schedules ---------------------------------------------------------------------------

def _beta2_hat_reference(schedule: str, t: int, beta2: float | None = None, decay_rate: float = 0.8) -> float:
    """The effective second-moment weight β̂₂,t of each schedule (used until adaxbench.optim
    provides ``beta2_hat``).  Adam with bias correction: β2(1−β2^{t−1})/(1−β2^t); AdaX:
    1 − β2/((1+β2)^t − 1); AdaFactor: 1 − t^{−c}.  expm1/log1p keep them exact for huge t."""
    if schedule == "adam":
        b = 0.999 if beta2 is None else beta2
        return b * math.expm1((t - 1) * math.log(b)) / math.expm1(t * math.log(b))
    if schedule == "adax":
        b = 1e-4 if beta2 is None else beta2
        z = t * math.log1p(b)
        return 1.0 if z > 700 else 1.0 - b / math.expm1(z)
    if schedule == "adafactor":
        return 1.0 - float(t) ** (-decay_rate)
    raise ValueError(f"unknown beta2 schedule {schedule!r}: expected adam, adax or adafactor")


def beta2_hat_fn() -> Callable[..., float]:
    """``adaxbench.optim.beta2_hat`` when it exists, else the local reference."""
    try:
        from adaxbench.optim import beta2_hat  # type: ignore[attr-defined]
        return beta2_hat
    except ImportError:
        return _beta2_hat_reference


SCHEDULES = {"adam": "adam", "adamw": "adam", "amsgrad": "adam", "sched_adam": "adam",
             "adax": "adax", "adaxw": "adax", "sched_adax": "adax",
             "adafactor": "adafactor", "sched_adafactor": "adafactor"}


def beta2_schedule(setting: dict[str, Any]) -> tuple[str, float | None, float] | None:
    """(schedule, β2, decay rate c) of a flattened optimizer setting, or None (sgd, rmsprop…)."""
    name = str(setting.get("optimizer.name", ""))
    sched = SCHEDULES.get(name)
    if sched is None:
        return None
    betas = setting.get("optimizer.betas")
    beta2 = setting.get("optimizer.beta2", betas[1] if isinstance(betas, (list, tuple)) and len(betas) > 1 else None)
    if sched == "adam":
        return sched, float(0.999 if beta2 is None else beta2), 0.8
    if sched == "adax":
        return sched, float(1e-4 if beta2 is None else beta2), 0.8
    if "optimizer.beta2_decay" in setting:  # torch.optim.Adafactor: beta2_decay = −c
        c = -float(setting["optimizer.beta2_decay"])
    else:
        c = float(setting.get("optimizer.decay_rate", 0.8))
    return sched, None, c


# --- helpers -------------------------------------------------------------------------------

class _PlainLog(LogFormatter):
    """Log-axis tick labels as 0.01, 10, 1e+06 (no mathtext)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}" if 1e-3 <= abs(x) < 1e5 else f"{x:.0e}"


def optimizer_colors(names: list[str]) -> dict[str, Any]:
    """A fixed colour per optimizer name (sorted, tab10 then tab20), shared by every figure."""
    names = sorted(set(names))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def save(fig: Figure, out_dir: Path, stem: str) -> Path:
    """Write ``stem.png`` and ``stem.svg``; returns the PNG path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:  # plain "1e-05" tick labels: mathtext layout dominates the draw time
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(_PlainLog(labelOnlyBase=True))
                # Label minor ticks only when the axis spans at most ~1.5 decades.
                axis.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(1.5, 0.4)))
    with matplotlib.rc_context(RC):
        fig.savefig(out_dir / f"{stem}.png")
        fig.set_layout_engine("none")  # the layout is fixed by the first draw; don't redo it
        fig.savefig(out_dir / f"{stem}.svg")
    return out_dir / f"{stem}.png"


def _new(nrows: int, ncols: int, w: float = 5.0, h: float = 3.6) -> tuple[Figure, np.ndarray]:
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


class _Series:
    """Hands out gids, so every data series is countable in the SVG."""

    def __init__(self) -> None:
        self.n = 0

    def gid(self) -> str:
        self.n += 1
        return f"series-{self.n}"


def _thin(df: pd.DataFrame) -> pd.DataFrame:
    return df.iloc[:: max(1, math.ceil(len(df) / MAX_POINTS))]


def _styles(plotted: pd.DataFrame, colors: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """(colour, linestyle) per setting key: colour by optimizer, linestyle by setting within it."""
    out = {}
    for name, g in plotted.groupby("optimizer", sort=False):
        for i, key in enumerate(g["setting"]):
            out[key] = (colors[name], LINESTYLES[i % len(LINESTYLES)])
    return out


def plotted_settings(agg_task: pd.DataFrame, max_per_optimizer: int = len(LINESTYLES)) -> pd.DataFrame:
    """Settings drawn in curve figures: all of an optimizer's settings when there are at most
    ``max_per_optimizer``, else only its best one (the full sweep is in the lr figure/table)."""
    keep = []
    for _, g in agg_task[agg_task["seeds"] > 0].groupby("optimizer", sort=True):
        keep.append(g if len(g) <= max_per_optimizer else g[g["is_best"]])
    return pd.concat(keep) if keep else agg_task.iloc[:0]


def _sid_of(rs: RunSet) -> dict[str, int]:
    return dict(zip(rs.runs["setting"], rs.runs["sid"]))


def _curve_data(rs: RunSet, run_ids: pd.Index, split: str, metric: str) -> pd.DataFrame:
    d = rs.select(split, metric)
    d = d.loc[d["run"].isin(run_ids), ["run", "step", "epoch", "time", "value"]]
    # Integer setting ids: a string column of JSON keys per metric row would dominate the time.
    sid = np.full(int(rs.runs.index.max()) + 1, -1)
    sid[rs.runs.index.to_numpy()] = rs.runs["sid"].to_numpy()
    return d.assign(sid=sid[d["run"].to_numpy()])


def _band_plot(ax, d: pd.DataFrame, by: str, x: str, plotted: pd.DataFrame, styles, series: _Series,
               sid_of: dict[str, int], smooth: int = 0) -> None:
    """Mean over seeds (line) ± one std (band) per setting, grouping rows by ``by``."""
    if smooth > 1:  # EMA per run first, so the band is the spread of the smoothed seeds
        d = d.sort_values(["run", "step"], kind="stable")
        ema = d.groupby("run", sort=False)["value"].ewm(span=smooth).mean()
        d = d.assign(value=ema.reset_index(level=0, drop=True))
    # One groupby for all settings (per-setting groupbys dominate the run time at scale).
    d = d.assign(_x=d[x])
    g = d.groupby(["sid", by], sort=True)
    stats = pd.DataFrame({"x": g["_x"].mean(), "mean": g["value"].mean(), "std": g["value"].std()})
    have = set(stats.index.get_level_values(0))
    for _, row in plotted.iterrows():
        if sid_of[row["setting"]] not in have:
            continue
        s = _thin(stats.loc[sid_of[row["setting"]]].sort_values("x"))
        color, ls = styles[row["setting"]]
        label = f"{row['label']} (n={int(row['seeds'])})"
        (line,) = ax.plot(s["x"], s["mean"], color=color, ls=ls, lw=1.4, label=label)
        line.set_gid(series.gid())
        if s["std"].notna().any():
            ax.fill_between(s["x"], s["mean"] - s["std"], s["mean"] + s["std"], color=color, alpha=0.18, lw=0)


def _auto_log(ax) -> None:
    """Log y axis for positive series spanning more than ~1.5 decades (losses that blow up or
    converge over orders of magnitude); linear otherwise, so negative losses stay visible."""
    ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines() if (line.get_gid() or "").startswith("series-")]
    ys = np.concatenate(ys) if ys else np.array([])
    ys = ys[np.isfinite(ys)]
    if ys.size and ys.min() > 0 and ys.max() / ys.min() > 30:
        ax.set_yscale("log")


X_LABELS = {"epoch": "epoch", "step": "optimizer step", "time": "training time (s)"}


def _pretty(metric: str) -> str:
    split, name = split_metric(metric)
    return f"{split} {name}"


def curves_figure(rs: RunSet, agg_task: pd.DataFrame, task: TaskInfo, x: str,
                  colors: dict[str, Any]) -> tuple[Figure | None, int]:
    """Eval metric(s) against ``x`` and minibatch loss against step and time, mean ± std over
    seeds.  Returns the figure and its number of series."""
    plotted = plotted_settings(agg_task)
    styles = _styles(plotted, colors)
    runs = rs.runs
    ids = runs.index[(runs["task"] == task.name) & (runs["status"] == "completed") & (runs["problem"] == "")
                     & runs["setting"].isin(plotted["setting"])]
    split, name = split_metric(task.metric)
    logged = rs.logged(ids)
    evals = [task.metric] + [f"{split}/{n}" for n in ("accuracy", "loss") if n != name and (split, n) in logged]
    evals = [e for e in evals if tuple(e.split("/")) in logged]
    batch = ("batch", "loss") in logged
    if not evals and not batch:
        return None, 0
    fig, axes = _new(1, len(evals) + 2 * batch, w=4.6)
    series = _Series()
    for ax, metric in zip(axes, evals):
        _band_plot(ax, _curve_data(rs, ids, *split_metric(metric)), "epoch", x, plotted, styles, series,
                   _sid_of(rs))
        ax.set(xlabel=X_LABELS[x], ylabel=_pretty(metric), title=f"{task.name}: {_pretty(metric)}")
        if "acc" not in metric.split("/")[1]:
            _auto_log(ax)
        if task.target is not None and metric == task.metric:
            ax.axhline(task.target, color="0.3", lw=0.8, ls="--", label=f"target {task.target:g}")
    if batch:
        d = _curve_data(rs, ids, "batch", "loss")
        span = max(1, int(d.groupby("run").size().median() // 50))
        for ax, bx in zip(axes[len(evals):], ("step", "time")):
            _band_plot(ax, d, "step", bx, plotted, styles, series, _sid_of(rs), smooth=span)
            ax.set(xlabel=X_LABELS[bx], ylabel="minibatch loss", title="minibatch loss" + (f" (EMA, span {span} logs)" if span > 1 else ""))
            _auto_log(ax)
    # One legend for all panels, outside them: the curves stay visible.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper")
    return fig, series.n


def adaptivity_figure(rs: RunSet, agg_task: pd.DataFrame, task: TaskInfo,
                      colors: dict[str, Any]) -> tuple[Figure | None, int]:
    """Logged β̂₂,t and effective step size (median, else mean) against step, where logged."""
    plotted = plotted_settings(agg_task)
    styles = _styles(plotted, colors)
    runs = rs.runs
    ids = runs.index[(runs["task"] == task.name) & (runs["status"] == "completed") & (runs["problem"] == "")
                     & runs["setting"].isin(plotted["setting"])]
    logged = rs.logged(ids)
    # The median effective step: the mean is dominated by coordinates that never saw a
    # gradient (lr/eps, e.g. 1e9 for AdaX's eps = 1e-12), the median describes the network.
    step_size = "eff_lr_median" if ("batch", "eff_lr_median") in logged else "eff_lr_mean"
    panels = [p for p in ("beta2_hat", step_size) if ("batch", p) in logged]
    if not panels:
        return None, 0
    fig, axes = _new(1, len(panels), w=4.8)
    series = _Series()
    for ax, p in zip(axes, panels):
        _band_plot(ax, _curve_data(rs, ids, "batch", p), "step", "step", plotted, styles, series, _sid_of(rs))
        ax.set(xlabel="optimizer step", xscale="log", yscale="linear" if p == "beta2_hat" else "log",
               ylabel={"beta2_hat": "logged β̂₂,t", "eff_lr_mean": "mean effective step size",
                       "eff_lr_median": "median effective step size lr/(√v̂+ε)"}[p],
               title=f"{task.name}: {'logged β̂₂,t' if p == 'beta2_hat' else 'effective step size'}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper")
    return fig, series.n


def beta2_figure(schedules: list[tuple[str, tuple[str, float | None, float], str]],
                 colors: dict[str, Any], t_max: float = 1e6) -> tuple[Figure, int]:
    """β̂₂,t for t = 1…t_max (log axis), one curve per distinct (schedule, β2, c).

    ``schedules``: (legend label, (schedule, β2, c), optimizer name for the colour)."""
    fn = beta2_hat_fn()
    t = np.unique(np.round(np.logspace(0, math.log10(t_max), 600)).astype(np.int64))
    fig, axes = _new(1, 2, w=5.2, h=4.0)
    series = _Series()
    used: dict[str, int] = {}
    for label, (sched, beta2, c), name in schedules:
        y = np.array([fn(sched, int(k), beta2=beta2, decay_rate=c) if beta2 is not None
                      else fn(sched, int(k), decay_rate=c) for k in t])
        i = used[name] = used.get(name, -1) + 1
        style = dict(color=colors.get(name, "0.3"), ls=LINESTYLES[i % len(LINESTYLES)], lw=1.6, label=label)
        for ax, v in zip(axes, (y, 1.0 - y)):
            (line,) = ax.plot(t, v, **style)
            line.set_gid(series.gid())
    axes[0].set(xscale="log", xlabel="step t", ylabel="β̂₂,t", ylim=(-0.02, 1.02),
                title="effective second-moment weight β̂₂,t")
    # 1 − β̂₂,t on a log axis separates the schedules where β̂₂,t ≈ 1 hides them.
    axes[1].set(xscale="log", yscale="log", xlabel="step t", ylabel="1 − β̂₂,t", ylim=(1e-12, 2),
                title="weight of the newest squared gradient, 1 − β̂₂,t")
    axes[1].legend(loc="lower left")
    return fig, series.n


def lr_figure(agg_task: pd.DataFrame, settings: dict[str, dict], task: TaskInfo,
              colors: dict[str, Any]) -> tuple[Figure | None, int]:
    """Final metric (mean ± std over seeds) against lr for optimizers swept over ≥ 2 lrs; at
    each lr the best setting over the other swept hyperparameters."""
    a = agg_task[agg_task["seeds"] > 0].copy()
    a["lr"] = [settings[k].get("optimizer.lr") for k in a["setting"]]
    a = a[pd.to_numeric(a["lr"], errors="coerce").notna()]
    a["lr"] = a["lr"].astype(float)
    swept = [n for n, g in a.groupby("optimizer") if g["lr"].nunique() >= 2]
    if not swept:
        return None, 0
    fig, (ax,) = _new(1, 1, w=6.0, h=4.0)
    series = _Series()
    hb = task.higher_better
    for name in sorted(swept):
        g = a[a["optimizer"] == name]
        # Best over the other hyperparameters at each lr, by the selection score.
        g = g.sort_values("sel_mean", ascending=not hb).drop_duplicates("lr").sort_values("lr")
        c = ax.errorbar(g["lr"], g["final_mean"], yerr=g["final_std"].fillna(0), color=colors[name],
                        marker="o", ms=4, capsize=3, lw=1.4, label=name)
        c.lines[0].set_gid(series.gid())
    ax.set(xscale="log", xlabel="learning rate", ylabel=f"final {_pretty(task.metric)}",
           title=f"{task.name}: learning-rate sensitivity")
    ax.legend(loc="lower right" if hb else "upper right")
    return fig, series.n


def profile_figure(rho: pd.DataFrame, colors: dict[str, Any], measure: str) -> tuple[Figure, int]:
    """Performance profiles ρ(τ) on a log τ axis (step functions)."""
    fig, (ax,) = _new(1, 1, w=6.0, h=4.0)
    series = _Series()
    for name in rho.columns:
        (line,) = ax.step(rho.index, rho[name], where="post", color=colors[name], lw=1.6, label=name)
        line.set_gid(series.gid())
    unit = {"epoch": "epochs", "step": "steps", "time": "training seconds"}[measure]
    ax.set(xscale="log", xlabel=f"τ = time to target ({unit}) ÷ the best optimizer's on that task",
           ylabel="fraction of tasks within τ of best", ylim=(-0.02, 1.02),
           title="performance profiles (higher and further left is better)")
    ax.legend(loc="lower right")
    return fig, series.n
