"""Report figures (matplotlib Figure objects, no pyplot or backend state): PNG + SVG, one
colour per optimizer name, drawn from the report's ``Analysis`` (analysis.py), which decides what
each figure shows (``draw_figures``).

Each plotted series carries a gid ``series-<n>`` so it is a ``<g id="series-n">`` in the SVG
(tests and scripts can count series without parsing pixels).
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .analysis import Analysis, Panel, TaskAnalysis, TaskCurves
from .plot import _legend, _new, _note, _pretty, _Series, optimizer_colors, save

LINESTYLES = ("-", "--", ":", "-.")  # as many as MAX_CURVES_PER_OPTIMIZER: each drawn setting has its own


# --- helpers -------------------------------------------------------------------------------

def _styles(plotted: pd.DataFrame, colors: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """(colour, linestyle) per setting key: colour by optimizer, linestyle by setting within it."""
    out = {}
    for name, g in plotted.groupby("optimizer", sort=False):
        for i, key in enumerate(g["setting"]):
            out[key] = (colors[name], LINESTYLES[i % len(LINESTYLES)])
    return out


def _draw_curves(ax, panel: Panel, styles: dict[str, tuple[Any, str]], series: _Series) -> None:
    """Each curve of ``panel``: its mean as a line, ± one std as a band where there is one."""
    for c in panel.curves:
        s = c.points
        color, ls = styles[c.setting]
        # A single evaluation is a marker: a line through one point draws nothing.
        (line,) = ax.plot(s["x"], s["mean"], color=color, ls=ls, lw=1.4, label=f"{c.label} (n={c.seeds})",
                          marker="o" if np.isfinite(s["mean"].to_numpy(float)).sum() == 1 else None, ms=5)
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


def _published_lines(ax, t: TaskAnalysis, metric: str, styles: dict, ref_ids: _Series) -> None:
    """The published results of the plotted settings on ``metric``: a labelled dotted line each (a
    band for a range), their budget beside ours."""
    drawn = set()  # two settings of one optimizer match the same published number: one line
    for key, rlist in t.refs.items():
        if key not in styles:
            continue
        for r in rlist:
            if r.metric != metric or r.label() in drawn:
                continue
            drawn.add(r.label())
            kw = dict(color=styles[key][0], lw=1.1, ls=(0, (1, 1.5)),
                      label=f"{r.label()} {r.value_text()} (published{t.budget.ref_note()})")
            art = (ax.axhspan(r.value, r.value_hi, alpha=0.25, **kw) if r.value_hi is not None
                   else ax.axhline(r.value, **kw))
            art.set_gid(ref_ids.gid())


def _minibatch_panels(curves: TaskCurves, axes, styles: dict, series: _Series) -> None:
    """Minibatch loss against step and time (EMA-smoothed per seed), or a note saying why there is none."""
    if curves.minibatch:
        for ax, panel in zip(axes, curves.minibatch):
            _draw_curves(ax, panel, styles, series)
            ax.set(xlabel=X_LABELS[panel.x], ylabel="minibatch loss",
                   title="minibatch loss" + (f" (EMA over {panel.smooth} logs)" if panel.smooth > 1 else ""))
            _auto_log(ax)
    else:
        for ax, bx in zip(axes, ("step", "time")):
            ax.set_title(f"minibatch loss vs {bx}")
            _note(ax, f"no minibatch loss:\n{curves.no_minibatch}")


def curves_figure(an: Analysis, name: str, colors: dict[str, Any]) -> tuple[Figure | None, int]:
    """Eval metric(s) against the analysis' x and minibatch loss against step and time, mean ± std
    over seeds, as a 2 x 2 grid that reads at ~900 px.  Published results of the task's settings are
    labelled dotted lines in the compared metric's panel, their budget beside ours.  The target line
    is drawn where the runs span the target's budget.  A panel that has no data says why.  Returns
    the figure and its number of series."""
    t, curves = an.tasks[name], an.curves(name)
    if not curves.evals:
        return None, 0
    styles = _styles(t.plotted, colors)
    n = len(curves.evals) + 2
    fig, axes = _new(2, 2, h=2.9) if n > 2 else _new(1, 2, h=3.0)
    series, ref_ids = _Series(), _Series("reference")
    for ax, panel in zip(axes, curves.evals):
        metric = panel.metric
        _draw_curves(ax, panel, styles, series)
        ax.set(xlabel=X_LABELS[panel.x], ylabel=_pretty(metric), title=_pretty(metric))
        if not panel.curves:
            _note(ax, f"no finite {_pretty(metric)}\nin any completed run")
            continue
        if "acc" not in metric.split("/")[1]:
            _auto_log(ax)
        if t.curve_target is not None and metric == t.info.metric:
            ax.axhline(t.curve_target, color="0.3", lw=0.8, ls="--", label=f"target {t.curve_target:g}")
        _published_lines(ax, t, metric, styles, ref_ids)
    _minibatch_panels(curves, axes[len(curves.evals):n], styles, series)
    spare = axes[n] if len(axes) > n else None
    _legend(fig, axes[:n], where=spare)
    fig.suptitle(name, fontsize=10)
    return fig, series.n


def adaptivity_figure(an: Analysis, name: str, colors: dict[str, Any]) -> tuple[Figure | None, int]:
    """Logged 1 − β̂₂,t and effective step size (median, else mean) against step, where logged.

    1 − β̂₂,t on a log axis: Adam's β̂₂ → 0.999 and AdaX's → 1 coincide on a linear axis near 1,
    while 1 − β̂₂ (the weight of the newest squared gradient) separates them by decades.  Only
    settings that logged a diagnostic get a line and a legend entry."""
    panels = an.curves(name).adaptivity
    if not panels:
        return None, 0
    styles = _styles(an.tasks[name].plotted, colors)
    fig, axes = _new(1, len(panels), h=3.2)
    series = _Series()
    for ax, panel in zip(axes, panels):
        p = panel.metric.split("/")[1]
        _draw_curves(ax, panel, styles, series)
        ax.set(xlabel="optimizer step", xscale="log", yscale="log",
               ylabel={"beta2_hat": "1 − β̂₂,t", "eff_lr_mean": "mean lr/(√v̂+ε)",
                       "eff_lr_median": "median lr/(√v̂+ε)"}[p],
               title={"beta2_hat": "newest gradient's weight 1 − β̂₂,t"}.get(p, "effective step size"))
    _legend(fig, axes)
    fig.suptitle(f"{name}: logged adaptivity", fontsize=10)
    return fig, series.n


def beta2_figure(schedules: list[tuple[str, tuple[str, float | None, float], str]],
                 colors: dict[str, Any], t_max: float = 1e6) -> tuple[Figure, int]:
    """1 − β̂₂,t for t = 1…t_max on log–log axes, one curve per distinct (schedule, β2, c).

    One panel: on a linear β̂₂ axis every schedule rises to ≈ 1 within ~100 steps and the curves
    coincide; 1 − β̂₂,t (the weight of the newest squared gradient) separates them by decades.

    ``schedules``: (legend label, (schedule, β2, c), optimizer name for the colour)."""
    from ..optim.beta2 import beta2_hat_and_gain  # here: adaxbench.optim imports torch, which reading records must not

    t = np.unique(np.round(np.logspace(0, math.log10(t_max), 600)).astype(np.int64))
    fig, (ax,) = _new(1, 1, h=3.4)
    series = _Series()
    used: dict[str, int] = {}
    for label, (sched, beta2, c), name in schedules:
        g = np.array([beta2_hat_and_gain(sched, int(k), beta2, c)[1] for k in t])
        i = used[name] = used.get(name, -1) + 1
        (line,) = ax.plot(t, g, color=colors.get(name, "0.3"), ls=LINESTYLES[i % len(LINESTYLES)], lw=1.6, label=label)
        line.set_gid(series.gid())
    ax.set(xscale="log", yscale="log", xlabel="step t", ylabel="1 − β̂₂,t", ylim=(1e-12, 2),
           title="weight of the newest squared gradient, 1 − β̂₂,t  (β̂₂,t = 1 − this)")
    _legend(fig, [ax])
    return fig, series.n


def lr_figure(an: Analysis, name: str, colors: dict[str, Any]) -> tuple[Figure | None, int]:
    """Final metric (mean ± std over seeds) against lr, a line per ``LrLine`` of the analysis."""
    t = an.tasks[name]
    if not t.lr_lines:
        return None, 0
    fig, (ax,) = _new(1, 1, h=3.6, w=6.0)
    series = _Series()
    markers = "osD^v<>"
    per_opt: dict[str, int] = {}
    for line in t.lr_lines:
        g = line.rows
        i = per_opt[line.optimizer] = per_opt.get(line.optimizer, -1) + 1
        c = ax.errorbar(g["lr"], g["final_mean"], yerr=g["final_std"].fillna(0), color=colors[line.optimizer],
                        ls=LINESTYLES[i % len(LINESTYLES)], marker=markers[i % len(markers)], ms=4, capsize=3,
                        lw=1.4, label=line.label)
        c.lines[0].set_gid(series.gid())
    ax.set(xscale="log", xlabel="learning rate", ylabel=f"final {_pretty(t.info.metric)}",
           title=f"{name}: learning-rate sensitivity")
    ax.legend(loc="best")
    return fig, series.n


def _profile_lines(ax, rho: pd.DataFrame, lo: pd.DataFrame | None, hi: pd.DataFrame | None,
                   colors: dict[str, Any], where: str) -> int:
    """Step curves ρ(τ), one per optimizer, each over its shaded bootstrap band (same colour;
    gid ``band-<n>``) where ``lo``/``hi`` have one.  ``where``: the steps' side ("post" for a
    right-continuous profile, "pre" for a left-continuous one).  Returns the number of curves."""
    series, bands = _Series(), _Series("band")
    for name in rho.columns:
        c = colors[name]
        if lo is not None and hi is not None and np.isfinite(lo[name].to_numpy(float)).any():
            band = ax.fill_between(rho.index, lo[name], hi[name], step=where, color=c, alpha=0.15, lw=0)
            band.set_gid(bands.gid())
        (line,) = ax.step(rho.index, rho[name], where=where, color=c, lw=1.6, label=name)
        line.set_gid(series.gid())
    ax.set_ylim(-0.02, 1.02)
    return series.n


def profile_figure(rho: pd.DataFrame, colors: dict[str, Any], measure: str, lo: pd.DataFrame | None = None,
                   hi: pd.DataFrame | None = None) -> tuple[Figure, int]:
    """Performance profiles ρ(τ) on a log τ axis (step functions), with their pointwise
    bootstrap bands shaded where given."""
    fig, (ax,) = _new(1, 1, h=3.6)
    n = _profile_lines(ax, rho, lo, hi, colors, "post")
    unit = {"epoch": "epochs", "step": "steps", "time": "training seconds"}[measure]
    ax.set(xscale="log", xlabel=f"τ = time to target ({unit}) ÷ the best optimizer's",
           ylabel="fraction of tasks within τ", title="performance profiles (higher, further left = better)")
    _legend(fig, [ax])  # below the axes: the bands fill the corners a legend inside would cover
    return fig, n


def score_profile_figure(rho: pd.DataFrame, colors: dict[str, Any], lo: pd.DataFrame | None = None,
                         hi: pd.DataFrame | None = None) -> tuple[Figure, int]:
    """rliable's score distributions: the fraction of runs with normalised score ≥ τ against τ
    in [0, 1] (steps that drop just after each score), with their bootstrap bands."""
    fig, (ax,) = _new(1, 1, h=3.6)
    n = _profile_lines(ax, rho, lo, hi, colors, "pre")
    ax.set(xlabel="τ (normalised final score: 0 = worst, 1 = best seed on each task)", xlim=(0, 1),
           ylabel="fraction of runs with score ≥ τ", title="score distributions (higher = better)")
    _legend(fig, [ax])
    return fig, n


def iqm_figure(iqm: pd.DataFrame, colors: dict[str, Any]) -> tuple[Figure, int]:
    """Interquartile mean of normalised scores per optimizer with its CI (rliable's interval plot)."""
    d = iqm.sort_values("iqm")
    fig, (ax,) = _new(1, 1, h=0.8 + 0.35 * len(d))
    series = _Series()
    for i, row in enumerate(d.itertuples()):
        c = colors[row.optimizer]
        if np.isfinite(row.ci_lo):
            ax.plot([row.ci_lo, row.ci_hi], [i, i], color=c, lw=6, alpha=0.45, solid_capstyle="butt")
        (pt,) = ax.plot([row.iqm], [i], "o", color=c, ms=6)
        pt.set_gid(series.gid())
    ax.set_yticks(range(len(d)), list(d["optimizer"]))
    ax.set(xlabel="IQM of normalised final score (1 = best seed on each task)", xlim=(-0.02, 1.02),
           title="across tasks: interquartile mean\n95% stratified-bootstrap CI")  # one line was cut off
    ax.grid(axis="y", visible=False)
    return fig, series.n


# --- every figure of a report ------------------------------------------------------------------

def task_stem(name: str) -> str:
    """A file name stem for a task: readable, at most ~70 characters, and distinct for distinct
    names (``a b`` and ``a/b`` both read ``a_b``: a hash of the name tells them apart)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")[:60] or "task"
    return slug if slug == name else f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _planned(an: Analysis, colors: dict[str, Any]) -> list[tuple[str, Callable[[], tuple[Figure | None, int]]]]:
    """(stem, draw) of every figure the analysis has data for, in the report's order."""
    out: list[tuple[str, Callable]] = []
    if (across := an.across) is not None:
        if len(across.iqm):
            out.append(("iqm", lambda: iqm_figure(across.iqm, colors)))
        if across.reached:
            prof = across.prof
            out.append(("performance_profiles", lambda: profile_figure(prof.rho, colors, an.x, prof.lo, prof.hi)))
        if len(across.norm):
            sprof = across.sprof
            out.append(("score_profiles", lambda: score_profile_figure(sprof.rho, colors, sprof.lo, sprof.hi)))
    for name in an.tasks:
        stem = task_stem(name)
        out += [(f"{stem}_curves", lambda name=name: curves_figure(an, name, colors)),
                (f"{stem}_adaptivity", lambda name=name: adaptivity_figure(an, name, colors)),
                (f"{stem}_lr_sensitivity", lambda name=name: lr_figure(an, name, colors))]
    if an.schedules:
        out.append(("beta2_schedules", lambda: beta2_figure(an.schedules, colors)))
    return out


def draw_figures(an: Analysis, out_dir: Path) -> dict[str, int]:
    """Draw and save (PNG + SVG under ``out_dir``) every figure of the report; {stem: number of
    series} of those drawn, in the report's order (a figure without data is not drawn)."""
    colors = optimizer_colors(an.optimizers)
    drawn = {}
    for stem, draw in _planned(an, colors):
        fig, n = draw()
        if fig is not None:
            save(fig, out_dir, stem)
            drawn[stem] = n
    return drawn
