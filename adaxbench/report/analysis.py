"""A report's analysis: every table, interval, verdict, warning and note it shows, computed once.

The report flows one way: ``load_runs`` (load.py) -> ``analyse`` (here, with the statistics of
aggregate.py) -> figures drawn from the ``Analysis`` (figures.py) -> markdown and HTML laid out
from it (render.py).  Figures and text compute nothing of their own: what a reader sees in a
table or a figure was decided here.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import divergence
from ..rundir import effective_epochs, effective_lr_schedule
from .aggregate import (FAMILIES, ProfileBand, TaskInfo, aggregate, best_run_times, grid_edge_warnings,
                        iqm_across_tasks, label_settings, normalised_scores, performance_profile_band, profile_times,
                        run_scores, score_profile_band, setting_labels, split_metric, task_infos)
from .best import sampled_settings
from .load import ReportError, RunSet, load_runs, usable
from .published_curves import spread_line
from .references import Reference, load_references, references_for
from .text import fmt_num

XS = ("epoch", "step", "time")  # what curves are drawn against and time-to-target is measured in
MAX_TABLE_SETTINGS = 30  # per task in report.md; aggregate.csv always has every setting
MAX_CURVES_PER_OPTIMIZER = 4  # more settings than this: the curve figures draw only the best one
VERDICTS = ("better", "worse", "equivalent", "inconclusive")


# --- the report's options ---------------------------------------------------------------------

def parse_target(target: str | float | None) -> dict[str, float] | float | None:
    """``--target``: one value for every task, or ``TASK=VALUE[,TASK=VALUE...]``."""
    if target is None:
        return target
    bad = ReportError(f"bad --target {target!r}: expected a finite number or TASK=VALUE[,TASK=VALUE...]")
    try:
        value = float(target)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise bad
        return value
    out = {}
    for part in str(target).split(","):
        task, _, val = part.partition("=")
        try:
            out[task.strip()] = float(val)
        except ValueError:
            raise bad from None
        if not math.isfinite(out[task.strip()]):
            raise bad
    return out


def parse_margins(margin: str | dict | None) -> dict[str, float]:
    """``test/accuracy=0.005[,KEY=VALUE...]`` (or a dict) -> {key: margin}, a key being a metric
    (SPLIT/METRIC: every task compared on it) or a task name (its compared metric).  ReportError on
    a bad metric name or a margin that is not a positive number."""
    if margin is None or margin == "":
        return {}
    pairs = margin.items() if isinstance(margin, dict) else (part.partition("=")[::2] for part in str(margin).split(","))
    out = {}
    for metric, val in pairs:
        metric = str(metric).strip()
        if not metric or val in ("", None):
            raise ReportError(f"bad --margin {margin!r}: expected METRIC=VALUE or TASK=VALUE, comma-separated, "
                              "e.g. test/accuracy=0.005")
        if "/" in metric:
            split_metric(metric)
        try:
            m = float(val)
        except (TypeError, ValueError):
            m = math.nan
        if not 0 < m < math.inf:
            raise ReportError(f"bad --margin for {metric}: {val!r} is not a positive number (an equivalence "
                              "margin m > 0, in the metric's units)")
        out[metric] = m
    return out


def check_options(metric: str | None, x: str, select: str, family: str) -> None:
    """ReportError (one line) for an option value the report does not know."""
    if x not in XS:
        raise ReportError(f"bad --x {x!r}: expected one of epoch, step, time")
    if select not in ("final", "best"):
        raise ReportError(f"bad --select {select!r}: expected final or best")
    if family not in FAMILIES:
        raise ReportError(f"bad --family {family!r}: expected table (Holm over every comparison of the report) "
                          "or task (Holm within each task)")
    if metric is not None:
        split_metric(metric)


# --- runs that are in no mean --------------------------------------------------------------------

def _rel(p: str) -> str:
    try:
        r = os.path.relpath(p)
        return p if r.startswith("..") else r
    except ValueError:
        return p


def excluded_runs(rs: RunSet, tasks: dict) -> pd.DataFrame:
    """The "Runs not included" table: every run that is in no mean, with the reason."""
    r = rs.runs
    bad = r[~usable(r) | ~r["task"].isin(list(tasks))]
    reason = bad["problem"].where(bad["problem"] != "", bad["error"])
    reason = reason.where(reason != "", bad["status"].map({
        "running": "still running", "interrupted": "interrupted (resume to finish)",
        "diverged": "diverged", "failed": "failed (no error message)", "completed": "no usable metric logged"})
        .fillna("unknown status"))
    return pd.DataFrame({"run dir": [_rel(p) for p in bad["path"]], "task": bad["task"], "optimizer": bad["optimizer"],
                         "seed": [("" if s is None or s != s else str(int(s)) if float(s).is_integer() else str(s))
                                  for s in bad["seed"]],
                         "status": bad["status"], "reason": reason,
                         "progress": bad["progress"]})


def exclude_unscored(rs: RunSet, tasks: dict, scores: pd.DataFrame) -> None:
    """A completed run without a finite final value of its task's metric cannot enter a mean (it
    would turn its setting's into NaN): it goes under "Runs not included" with the reason."""
    r = rs.runs
    done = r.index[usable(r) & r["task"].isin(list(tasks))]
    s = scores.reindex(done)
    final, best = s["final"].to_numpy(float), s["best"].to_numpy(float)
    for i in done[~np.isfinite(final) | np.isinf(best)]:  # NaN, or ±inf that would enter a mean
        metric = tasks[r.at[i, "task"]].metric
        r.at[i, "problem"] = (f"no finite {metric} value logged (all NaN or missing)" if pd.isna(s.at[i, "best"])
                              else f"final {metric} is {s.at[i, 'final']:g}" if not np.isfinite(s.at[i, "final"])
                              else f"{metric} reaches {s.at[i, 'best']:g}")
    if not usable(r).any():
        raise ReportError(f"no usable run among {len(r)} run dir(s): no completed run has a finite "
                          f"value of its task's metric")


# --- what a task's runs were given ----------------------------------------------------------------

@dataclass
class Budget:
    """What a task's runs were given (distinct values over its completed runs)."""

    epochs: list
    protocol_epochs: list  # the task's own budget (task.epochs), that of its target and references
    steps: list
    batch_size: list
    train_limit: list
    eval_limit: list
    lr_schedule: list

    @property
    def full(self) -> bool:
        """True when every run had the task's own budget: its epochs on the whole training split."""
        return self.epochs == self.protocol_epochs and self.train_limit == [None]

    def ours(self) -> str:
        """``2 epochs on 4,096 training examples``."""
        data = "" if self.train_limit == [None] else f" on {vals(self.train_limit)} training examples"
        return f"{vals(self.epochs)} epochs{data}"

    def ref_note(self) -> str:
        """What a published number's label adds: its budget beside ours, where they differ."""
        return "" if self.full else f", {vals(self.protocol_epochs)} epochs; ours {self.ours()}"

    def text(self) -> str:
        batch = f", batch {vals(self.batch_size)}" if self.batch_size != [None] else ""
        train = ("the whole training split" if self.train_limit == [None]
                 else f"the first {vals(self.train_limit)} training examples (trainer.train_limit)")
        evals = ("the whole evaluation splits" if self.eval_limit == [None]
                 else f"{vals(self.eval_limit)} examples per evaluation split (trainer.eval_limit)")
        proto = ("the task's own budget" if self.full
                 else f"the task's own budget is {vals(self.protocol_epochs)} epochs on the whole training split")
        return (f"Budget: {vals(self.epochs)} epochs, {vals(self.steps)} optimizer steps{batch}, {train}, "
                f"evaluated on {evals}, lr schedule {vals(self.lr_schedule)} ({proto}).")


def vals(values: list) -> str:
    """Distinct values joined with " / " (one value when the runs agree), integers with separators."""
    return " / ".join(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else fmt_num(v) for v in values)


def _schedule_text(cfg: dict) -> str:
    rest = ", ".join(f"{k}={fmt_num(v)}" for k, v in cfg.items() if k != "name")
    return str(cfg.get("name", "constant")) + (f" ({rest})" if rest else "")


def task_budget(rs: RunSet, scores: pd.DataFrame, task: str) -> Budget:
    r = rs.runs
    ids = r.index[(r["task"] == task) & usable(r)]
    cfgs = [rs.configs[i] for i in ids]
    tr = [c.get("trainer") or {} for c in cfgs]
    tk = [c.get("task") or {} for c in cfgs]
    distinct = lambda vals: list(dict.fromkeys(vals))  # noqa: E731
    steps = scores.reindex(ids)["final_step"].dropna()
    return Budget(
        epochs=distinct(effective_epochs(c) for c in cfgs), protocol_epochs=distinct(k.get("epochs") for k in tk),
        steps=distinct(int(v) for v in steps), batch_size=distinct(k.get("batch_size") for k in tk),
        train_limit=distinct(t.get("train_limit") for t in tr), eval_limit=distinct(t.get("eval_limit") for t in tr),
        lr_schedule=distinct(_schedule_text(effective_lr_schedule(c)) for c in cfgs))


# --- hyperparameters, published numbers, warnings ---------------------------------------------------

def setting_hparams(rs: RunSet, key: str) -> dict[str, Any]:
    """A setting's complete optimizer hyperparameters: the built optimizer's param-group values where
    its runs recorded them (a third-party class's defaults included), over the config's."""
    hp = {k.split(".", 1)[1]: v for k, v in rs.settings.get(key, {}).items()
          if k.startswith("optimizer.") and k not in ("optimizer.name", "optimizer._target_")}
    runs = rs.runs.index[rs.runs["setting"] == key]
    recorded = next((rs.recorded[i] for i in runs if i < len(rs.recorded) and rs.recorded[i]), {})
    hp = {**hp, **recorded}
    # ScheduledBeta2 keeps beta2=None ("the schedule's own"): show the β2 it runs with instead, or
    # none for adafactor, which takes none.
    sched = divergence.beta2_schedule(dict(rs.settings.get(key, {})))
    if "beta2" in hp and hp["beta2"] is None and sched is not None:
        if sched[0] == "adafactor":
            del hp["beta2"]
        else:
            hp["beta2"] = sched[1]
    return hp


def hparam_columns(rs: RunSet, keys: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(hyperparameters shared by every setting in ``keys``, the rest of each as text)."""
    hps = [setting_hparams(rs, k) for k in keys]
    common = set.intersection(*(set(h) for h in hps)) if hps else set()
    shared = {k: hps[0][k] for k in sorted(common) if len({repr(h[k]) for h in hps}) == 1} if len(hps) > 1 else {}
    rest = [", ".join(f"{k}={fmt_num(v)}" for k, v in sorted(h.items()) if k not in shared) or "—" for h in hps]
    return shared, rest


def divergence_warnings(a: pd.DataFrame, settings: dict, baseline: str) -> list[str]:
    """One sentence per compared setting whose β̂₂ weighting stays within divergence.WARN_BELOW of
    the baseline's over its run: the comparison cannot separate their schedules.  Other settings of
    the baseline's own optimizer (its lr grid) are named only where their schedule differs."""
    out = []
    base = a[a["is_baseline"]]
    for row in a[a["schedule_tv"] < divergence.WARN_BELOW].itertuples():
        sa = divergence.beta2_schedule(dict(settings[row.setting]))
        sb = divergence.beta2_schedule(dict(settings[base["setting"].iloc[0]]))
        if sa == sb and row.optimizer == base["optimizer"].iloc[0]:
            continue
        if sa == sb:
            why = "they use the same β̂₂ schedule, so any difference comes from elsewhere in the update"
        else:
            apart = (f"their weightings reach a distance of {divergence.APART} only at step {int(row.tv_apart_step):,}"
                     if np.isfinite(row.tv_apart_step) else
                     f"their weightings do not reach {divergence.APART} within {divergence.MAX_STEPS:,} steps")
            why = (f"over this budget the two weight past squared gradients almost identically "
                   f"({divergence.describe(sa)} vs {divergence.describe(sb)}), so the comparison cannot separate "
                   f"their schedules; {apart}")
        out.append(f"{row.label} vs {baseline}: β̂₂ weighting distance {row.schedule_tv:.3f} (below {divergence.WARN_BELOW}) "
                   f"after {int(row.steps):,} steps: {why}.")
    return out


def _several_settings(a: pd.DataFrame) -> pd.Series:
    """Rows of optimizers that ran more than one setting on the task."""
    return a.groupby("optimizer")["setting"].transform("size") > 1


def edge_warnings(rs: RunSet, a: pd.DataFrame) -> list[str]:
    """Winners on the edge of a searched grid (``grid_edge_warnings``); an Optuna search samples: it
    has no grid edge."""
    grid = _several_settings(a) & ~a["setting"].isin(sampled_settings(rs.runs[rs.runs["setting"].isin(a["setting"])]))
    return grid_edge_warnings(a[grid].rename(columns={"sel_mean": "score"}), rs.settings) if grid.any() else []


def best_per_optimizer(a: pd.DataFrame) -> pd.DataFrame | None:
    """The best setting of every optimizer that ran several on the task, with ``tried``: how many it
    ran.  None where every optimizer ran one."""
    multi = _several_settings(a)
    if not multi.any():
        return None
    b = a[multi & a["is_best"]]
    tried = a[multi].groupby("optimizer").size()
    return b.assign(tried=[int(tried[o]) for o in b["optimizer"]])


# --- what the figures draw --------------------------------------------------------------------------

def plotted_settings(a: pd.DataFrame, settings: dict[str, dict] | None = None,
                     max_per_optimizer: int = MAX_CURVES_PER_OPTIMIZER) -> pd.DataFrame:
    """Settings drawn in curve figures: all of an optimizer's settings when there are at most
    ``max_per_optimizer``, else only its best one (the full sweep is in the lr figure/table).
    With ``settings``, labels are recomputed among the plotted settings only, so a legend names
    just the keys that differ between its own lines."""
    keep = []
    for _, g in a[a["seeds"] > 0].groupby("optimizer", sort=True):
        keep.append(g if len(g) <= max_per_optimizer else g[g["is_best"]])
    out = pd.concat(keep) if keep else a.iloc[:0]
    if settings is not None and len(out):
        out = out.assign(label=out["setting"].map(setting_labels(out, settings)))
    return out


@dataclass
class LrLine:
    """One line of the lr-sensitivity figure: an optimizer's settings that differ only in lr."""

    optimizer: str
    label: str
    rows: pd.DataFrame  # lr, final_mean, final_std, sorted by lr


def lr_lines(a: pd.DataFrame, settings: dict[str, dict]) -> list[LrLine]:
    """Final metric against lr: one line per optimizer and combination of its other
    hyperparameters (settings that differ in anything but lr are never joined), where it ran at
    least two lrs."""
    a = a[a["seeds"] > 0].copy()
    a["lr"] = [settings[k].get("optimizer.lr") for k in a["setting"]]
    a = a[pd.to_numeric(a["lr"], errors="coerce").notna()]
    a["lr"] = a["lr"].astype(float)
    # Everything but the lr identifies a line.
    a["rest"] = [json.dumps({k: v for k, v in settings[s].items() if k != "optimizer.lr"}, sort_keys=True, default=str)
                 for s in a["setting"]]
    lines = [(n, r) for (n, r), g in a.groupby(["optimizer", "rest"], sort=True) if g["lr"].nunique() >= 2]
    if not lines:
        return []
    firsts = pd.DataFrame([{"optimizer": n, "setting": a.loc[(a["optimizer"] == n) & (a["rest"] == r), "setting"].iloc[0]}
                           for n, r in lines])
    names = setting_labels(firsts, settings, drop=("optimizer.lr",))
    return [LrLine(name, names[key], a[(a["optimizer"] == name) & (a["rest"] == rest)].sort_values("lr"))
            for (name, rest), key in zip(lines, firsts["setting"])]


def beta2_schedules(agg: pd.DataFrame, settings: dict) -> list[tuple[str, divergence.Schedule, str]]:
    """The distinct β̂₂ schedules of the settings that ran: (legend label, (schedule, β2, c), optimizer)."""
    sched = {}
    for key in agg.loc[agg["seeds"] > 0, "setting"]:
        s = settings[key]
        sc = divergence.beta2_schedule(dict(s))
        if sc is not None:
            sched.setdefault(sc, s.get("optimizer.name"))
    return [(n + ("" if n == sc[0] else f" ({sc[0]})") + (f" β2={sc[1]:g}" if sc[0] != "adafactor" else f" c={sc[2]:g}"),
             sc, n)
            for sc, n in sorted(sched.items(), key=lambda kv: (kv[1], kv[0][0], str(kv[0][1]), kv[0][2]))]


MAX_POINTS = 2000  # per curve; keeps SVGs small for long runs


@dataclass
class Curve:
    """One plotted setting's line: the mean over its seeds against x, ± one std (NaN with one seed)."""

    setting: str
    label: str  # the setting's label among the plotted ones
    seeds: int
    points: pd.DataFrame  # x, mean, std: sorted by x, every k-th row where it has more than MAX_POINTS


@dataclass
class Panel:
    """A panel of curves: ``metric``'s values against ``x``, one curve per plotted setting with a
    finite mean (in the order of ``TaskAnalysis.plotted``)."""

    metric: str  # SPLIT/METRIC; batch/beta2_hat's values are 1 − β̂₂,t (the newest gradient's weight)
    x: str  # epoch, step or time
    curves: list[Curve]
    smooth: int = 0  # EMA span applied to each run before the mean (0 or 1: none)


@dataclass
class TaskCurves:
    """The curve figures' data of one task, from its usable runs of the plotted settings."""

    evals: list[Panel]  # the compared metric, then its split's accuracy/loss where logged
    minibatch: list[Panel]  # minibatch loss against step and time; empty where none was logged
    no_minibatch: str  # why there is no minibatch loss (where ``minibatch`` is empty)
    adaptivity: list[Panel]  # 1 − β̂₂,t and the effective step size against step, where logged


def _curve_rows(rs: RunSet, ids: pd.Index, metric: str) -> pd.DataFrame:
    """``metric``'s rows of the runs ``ids``, with their setting id ``sid``."""
    d = rs.select(*metric.split("/"))
    d = d.loc[d["run"].isin(ids), ["run", "step", "epoch", "time", "value"]]
    # Integer setting ids: a string column of JSON keys per metric row would dominate the time.
    sid = np.full(int(rs.runs.index.max()) + 1, -1)
    sid[rs.runs.index.to_numpy()] = rs.runs["sid"].to_numpy()
    return d.assign(sid=sid[d["run"].to_numpy()])


def mean_curves(rs: RunSet, d: pd.DataFrame, by: str, x: str, plotted: pd.DataFrame, smooth: int = 0) -> list[Curve]:
    """Mean over seeds ± one std of ``d``'s values per plotted setting, the seeds' rows grouped by
    ``by`` (epoch or step) and placed at their mean ``x``.  ``smooth`` > 1: an EMA of that span per
    run first, so the band is the spread of the smoothed seeds.  Settings with no finite mean have
    no curve."""
    if smooth > 1:
        d = d.sort_values(["run", "step"], kind="stable")
        ema = d.groupby("run", sort=False)["value"].ewm(span=smooth).mean()
        d = d.assign(value=ema.reset_index(level=0, drop=True))
    # One groupby for all settings (per-setting groupbys dominate the run time at scale).
    g = d.assign(_x=d[x]).groupby(["sid", by], sort=True)
    stats = pd.DataFrame({"x": g["_x"].mean(), "mean": g["value"].mean(), "std": g["value"].std()})
    have = set(stats.index.get_level_values(0))
    sid_of = dict(zip(rs.runs["setting"], rs.runs["sid"]))
    out = []
    for row in plotted.itertuples():
        if sid_of[row.setting] not in have:
            continue
        s = stats.loc[sid_of[row.setting]].sort_values("x")
        s = s.iloc[:: max(1, math.ceil(len(s) / MAX_POINTS))]
        if np.isfinite(s["mean"].to_numpy(float)).any():
            out.append(Curve(row.setting, row.label, int(row.seeds), s.reset_index(drop=True)))
    return out


def _log_every(rs: RunSet, ids: pd.Index) -> Any:
    vals = {(rs.configs[i].get("trainer") or {}).get("log_every") for i in ids}
    vals.discard(None)
    return min(vals) if vals else None


def _no_minibatch(rs: RunSet, ids: pd.Index, metric: str) -> str:
    """Why runs logged no minibatch loss: a log interval longer than the run, or none logged."""
    steps = rs.select(*metric.split("/"))
    steps = int(steps.loc[steps["run"].isin(ids), "step"].max()) if len(steps) else 0
    le = _log_every(rs, ids)
    return (f"trainer.log_every = {le} exceeds\nthe runs' {steps} steps" if le is not None and le > steps
            else "the runs logged none")


def task_curves(rs: RunSet, t: TaskAnalysis, x: str) -> TaskCurves:
    """The curves of ``t``'s plotted settings, over their usable runs."""
    r, plotted, metric = rs.runs, t.plotted, t.info.metric
    ids = r.index[usable(r) & (r["task"] == t.name) & r["setting"].isin(plotted["setting"])]
    logged = rs.logged(ids)
    split, name = metric.split("/")
    evals = [m for m in [metric] + [f"{split}/{n}" for n in ("accuracy", "loss") if n != name]
             if tuple(m.split("/")) in logged]
    panels = [Panel(m, x, mean_curves(rs, _curve_rows(rs, ids, m), "epoch", x, plotted)) for m in evals]
    minibatch, why = [], ""
    if ("batch", "loss") in logged:
        d = _curve_rows(rs, ids, "batch/loss")
        span = max(1, int(d.groupby("run").size().median() // 50))
        minibatch = [Panel("batch/loss", bx, mean_curves(rs, d, "step", bx, plotted, smooth=span), smooth=span)
                     for bx in ("step", "time")]
    else:
        why = _no_minibatch(rs, ids, metric)
    # The median effective step: the mean is dominated by coordinates that never saw a
    # gradient (lr/eps, e.g. 1e9 for AdaX's eps = 1e-12), the median describes the network.
    step_size = "eff_lr_median" if ("batch", "eff_lr_median") in logged else "eff_lr_mean"
    adaptivity = []
    for p in (p for p in ("beta2_hat", step_size) if ("batch", p) in logged):
        d = _curve_rows(rs, ids, f"batch/{p}")
        if p == "beta2_hat":
            d = d.assign(value=1.0 - d["value"].to_numpy(float))
        adaptivity.append(Panel(f"batch/{p}", "step", mean_curves(rs, d, "step", "step", plotted)))
    return TaskCurves(panels, minibatch, why, adaptivity)


# --- the analysis ------------------------------------------------------------------------------------

@dataclass
class TaskAnalysis:
    """Everything the report shows about one task."""

    info: TaskInfo
    budget: Budget
    rows: pd.DataFrame  # the task's rows of the aggregate (a row per setting)
    shown: pd.DataFrame  # the rows its table shows: all, or past MAX_TABLE_SETTINGS the best per optimizer
    shared: dict[str, Any]  # hyperparameters every shown row has
    hparams: list[str]  # each shown row's other hyperparameters, as text
    refs: dict[str, list[Reference]]  # published results per setting key
    spread: str | None  # our curves inside or outside a published spread
    divergence_warnings: list[str]
    edge_warnings: list[str]
    best: pd.DataFrame | None  # best_per_optimizer
    plotted: pd.DataFrame  # the settings the curve figures draw, labelled among themselves
    lr_lines: list[LrLine]
    curve_target: float | None  # the target drawn on the curves: none where the runs do not span its budget

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def has_baseline(self) -> bool:
        """The baseline ran on the task: its rows have a Δ."""
        return bool(self.rows["is_baseline"].any())

    @property
    def margin(self) -> tuple[float, str] | None:
        """(equivalence margin m, where it came from) of the task's comparisons; None without any."""
        m = self.rows.loc[self.rows["margin_source"] != "", ["margin", "margin_source"]]
        return None if m.empty else tuple(m.iloc[0])

    @property
    def curves_trimmed(self) -> bool:
        """Some optimizer ran more settings than the curve figures draw."""
        return len(self.plotted) < int((self.rows["seeds"] > 0).sum())

    @property
    def used_refs(self) -> dict[str, Reference]:
        """The published sources some setting matched, by source."""
        return {r.source: r for rl in self.refs.values() for r in rl}


@dataclass
class AcrossTasks:
    """The cross-task aggregates (two tasks or more)."""

    norm: pd.DataFrame  # normalised final scores of each optimizer's best setting
    iqm: pd.DataFrame
    times: pd.DataFrame  # task x optimizer median time-to-target
    prof: ProfileBand  # performance profiles
    sprof: ProfileBand  # score distributions
    verdicts: dict[str, int]  # per-task verdicts of the optimizers' best settings, by word

    @property
    def reached(self) -> bool:
        """Some optimizer reached some task's target: there is a performance profile."""
        return bool(np.isfinite(self.times.to_numpy()).any())


@dataclass
class Analysis:
    """Every table, interval, verdict, warning and note of a report, computed once; figures and text read it."""

    rs: RunSet
    scores: pd.DataFrame  # a row per run (run_scores)
    agg: pd.DataFrame  # a row per task x setting (aggregate)
    tasks: dict[str, TaskAnalysis]
    missing: list[str]  # tasks without the requested metric
    excluded: pd.DataFrame  # "Runs not included"
    baseline: str
    x: str
    select: str
    family: str
    across: AcrossTasks | None = None
    schedules: list = field(default_factory=list)  # beta2_schedules
    _curves: dict[str, TaskCurves] = field(default_factory=dict, repr=False)

    @property
    def usable(self) -> int:
        return int(usable(self.rs.runs).sum())

    def curves(self, task: str) -> TaskCurves:
        """The curve figures' data of ``task`` (computed when first asked: a report without
        figures never needs it)."""
        if task not in self._curves:
            self._curves[task] = task_curves(self.rs, self.tasks[task], self.x)
        return self._curves[task]

    @property
    def notes(self) -> list[str]:
        """What loading had to say (e.g. two classes of one name, told apart by their modules)."""
        return list(self.rs.notes)

    @property
    def warnings(self) -> list[str]:
        """Winners on the edge of their grid, every task's."""
        return [w for t in self.tasks.values() for w in t.edge_warnings]

    @property
    def optimizers(self) -> list[str]:
        """Every optimizer name among the runs (each gets one colour in every figure)."""
        return list(self.rs.runs.loc[self.rs.runs["optimizer"] != "", "optimizer"])

    def summary_table(self) -> pd.DataFrame:
        """summary.csv: a row per run, its scores and its config as columns."""
        rs = self.rs
        summ = rs.runs.drop(columns=["setting", "sid", "overrides"]).join(self.scores.add_prefix("report."), how="left")
        cfg = pd.json_normalize([c if isinstance(c, dict) else {} for c in rs.configs]).add_prefix("config.")
        return pd.concat([summ.reset_index(drop=True), cfg], axis=1)

    def aggregate_table(self) -> pd.DataFrame:
        """aggregate.csv: a row per task x setting, its hyperparameters as columns."""
        rows = [{k: (str(v) if isinstance(v, (list, dict)) else v) for k, v in self.rs.settings[key].items()}
                for key in self.agg["setting"]]
        return pd.concat([self.agg.drop(columns=["setting"]).reset_index(drop=True),
                          pd.DataFrame(rows).add_prefix("config.")], axis=1)


def analyse(paths: Iterable[str | os.PathLike], metric: str | None = None, x: str = "epoch",
            target: str | float | None = None, baseline: str = "adam", select: str = "final",
            margin: str | dict | None = None, family: str = "table") -> Analysis:
    """Load the runs under ``paths`` and compute everything the report shows."""
    check_options(metric, x, select, family)
    tgt = parse_target(target)
    margins = parse_margins(margin)

    rs = load_runs(paths)
    rs.runs["label"] = label_settings(rs)
    ok = rs.runs[usable(rs.runs)]
    if ok.empty:
        raise ReportError(f"no usable run among {len(rs.runs)} run dir(s): none is completed with "
                          f"readable metrics (see run.json status of each)")
    tasks = task_infos(rs, metric, tgt, margins)
    tasks = {k: v for k, v in tasks.items() if not v.note}
    missing = sorted(set(ok["task"]) - set(tasks))
    if not tasks:
        raise ReportError(f"no usable run logs {metric or 'any evaluation metric'}: "
                          "pass --metric SPLIT/METRIC that the runs logged, e.g. test/accuracy")
    if unknown := sorted(set(margins) - {t.metric for t in tasks.values()} - set(tasks)):
        raise ReportError(f"--margin for {', '.join(unknown)}: no task is compared on it (compared: "
                          f"{', '.join(sorted({t.metric for t in tasks.values()}))}; tasks: {', '.join(tasks)})")
    scores = run_scores(rs, tasks, select)
    exclude_unscored(rs, tasks, scores)
    agg = aggregate(rs, tasks, scores, baseline, x, family)
    refs = load_references()
    per_task = {name: analyse_task(rs, scores, agg, info, baseline, refs) for name, info in tasks.items()}
    an = Analysis(rs, scores, agg, per_task, missing, excluded_runs(rs, tasks), baseline, x, select, family,
                  schedules=beta2_schedules(agg, rs.settings))
    if len(tasks) >= 2:
        an.across = across_tasks(rs, scores, agg, tasks, x)
    return an


def analyse_task(rs: RunSet, scores: pd.DataFrame, agg: pd.DataFrame, info: TaskInfo, baseline: str,
                 refs: list[Reference]) -> TaskAnalysis:
    a = agg[agg["task"] == info.name]
    budget = task_budget(rs, scores, info.name)
    shown = a if len(a) <= MAX_TABLE_SETTINGS else a[a["is_best"]]
    shared, hparams = hparam_columns(rs, list(shown["setting"]))
    return TaskAnalysis(
        info=info, budget=budget, rows=a, shown=shown, shared=shared, hparams=hparams,
        refs={k: references_for(refs, info.name, info.metric, rs.settings[k]) for k in a["setting"]},
        spread=spread_line(rs, info.name, info.metric, a["setting"]),
        divergence_warnings=divergence_warnings(a, rs.settings, baseline), edge_warnings=edge_warnings(rs, a),
        best=best_per_optimizer(a), plotted=plotted_settings(a, rs.settings), lr_lines=lr_lines(a, rs.settings),
        curve_target=info.target if budget.full or info.target_source == "--target" else None)


def across_tasks(rs: RunSet, scores: pd.DataFrame, agg: pd.DataFrame, tasks: dict[str, TaskInfo],
                 x: str) -> AcrossTasks:
    """IQM, performance profiles and score distributions over the tasks, with their bands."""
    joined = rs.runs.join(scores, how="left")
    norm = normalised_scores(joined, agg, tasks)
    times = profile_times(agg, list(tasks))
    ratios = times.div(times.min(axis=1), axis=0).to_numpy()
    top = max(4.0, float(np.nanmax(ratios[np.isfinite(ratios)], initial=1.0)) * 1.1)
    taus = np.unique(np.concatenate([np.logspace(0, math.log10(top), 400), ratios[np.isfinite(ratios)]]))
    prof = performance_profile_band(best_run_times(joined, agg, x), list(tasks), list(times.columns), taus)
    s_taus = np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), norm["score"].to_numpy(float)]))
    v = agg.loc[agg["is_best"] & (agg["verdict"] != ""), "verdict"]
    return AcrossTasks(norm, iqm_across_tasks(norm), times, prof, score_profile_band(norm, s_taus),
                       {w: int((v == w).sum()) for w in VERDICTS})
