"""Build a report directory: figures, tables, report.md, report.html, summary.csv, aggregate.csv."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import figures as F
from . import divergence
from .aggregate import (ALPHA, FAMILIES, LEVEL, MIN_SEEDS_STAR, N_BOOT, ProfileBand, TaskInfo, _fmt_num, aggregate,
                        best_run_times, grid_edge_warnings, iqm_across_tasks, label_settings, normalised_scores,
                        performance_profile_band, profile_times, run_scores, score_profile_band, split_metric,
                        task_infos, verdict_text, NO_MARGIN)
from ..rundir import atomic_write, effective_epochs, effective_lr_schedule, write_text
from .best import sampled_settings
from .load import ReportError, RunSet, load_runs
from .published_curves import spread_line
from .references import load_references, references_for

MAX_TABLE_SETTINGS = 30  # per task in report.md; aggregate.csv always has every setting
FORMATS = ("md", "html")


@dataclass
class Report:
    """What ``build_report`` made: output paths, tables and figure series counts."""

    out: Path
    files: list[Path] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    aggregate: pd.DataFrame | None = None
    excluded: pd.DataFrame | None = None
    series: dict[str, int] = field(default_factory=dict)  # figure stem -> number of series
    warnings: list[str] = field(default_factory=list)  # winners on the edge of their grid
    seconds: float = 0.0
    analysis: "Analysis | None" = None


# --- formatting -----------------------------------------------------------------------------

def _g(v: float, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return format(v, spec)


def _pm(m: float, s: float) -> str:
    return _g(m) if s is None or math.isnan(s) else f"{_g(m)} ± {_g(s)}"


def _band_text(prof: Any, resampled: str, csv: str, coupled: str = "") -> str:
    """The sentences under a profile figure that say what its shaded band is, and where and why
    there is none.  ``coupled``: why one thin pair removes every band (else only its own)."""
    shaded = bool(np.isfinite(prof.lo.to_numpy(float)).any())
    text = ""
    if shaded:
        first = prof.rho.columns[0]
        text += (f" Shaded: the pointwise {LEVEL:.0%} band of a stratified bootstrap ({N_BOOT} resamples of "
                 f"{resampled}): how far the curve moves with other seeds of the same settings. It does not cover "
                 f"the choice of settings or of tasks. {csv} has each band beside its curve (columns "
                 f"{first}_lo and {first}_hi for {first}, and so on).")
    if prof.thin:
        pairs = ", ".join(f"{t} / {o}" for t, o in prof.thin)
        which = "No bands" if coupled else "No band for " + ", ".join(dict.fromkeys(o for _, o in prof.thin))
        text += (f" {which}: fewer than 2 seeds on {pairs}, whose spread the bootstrap cannot see"
                 + (f", and {coupled}." if coupled else "."))
    return text


def _slug(s: str) -> str:
    """A file name stem for a task: readable, at most ~70 characters, and distinct for distinct
    names (``a b`` and ``a/b`` both read ``a_b``: a hash of the name tells them apart)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_.")[:60] or "task"
    return slug if slug == s else f"{slug}-{hashlib.sha1(s.encode()).hexdigest()[:8]}"


def _rel(p: str) -> str:
    try:
        r = os.path.relpath(p)
        return p if r.startswith("..") else r
    except ValueError:
        return p


# --- blocks -> markdown / html ----------------------------------------------------------------

def _md_cell(v: Any) -> str:
    # ("](" escaped: a name like [x](http://...) or ![i](...) stays text, never a live link or image)
    s = str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("](", "\\](").replace("][", "\\][")
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(blocks: list[tuple]) -> str:
    """Render blocks as GitHub Markdown (relative image links, escaped table cells)."""
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + _md_cell(b[2]))
        elif b[0] == "p":
            out.append(_md_cell(b[1]).replace("\\|", "|"))
        elif b[0] == "table":
            df = b[1]
            out.append("| " + " | ".join(_md_cell(c) for c in df.columns) + " |")
            out.append("|" + "|".join("---" for _ in df.columns) + "|")
            out.extend("| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False))
        elif b[0] == "img":
            out.append(f"![{_md_cell(b[2])}]({b[1]})")
        elif b[0] == "links":
            out.extend(f"- [{_md_cell(text)}]({href})" + (f" {_md_cell(tail)}" if tail else "")
                       for text, href, tail in b[1])
        out.append("")
    return "\n".join(out)


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;"
       "line-height:1.4}.scroll{overflow-x:auto;max-width:100%}"
       "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;height:auto}"
       "p.warn{background:#fff4e0;border-left:4px solid #e0a030;padding:.3em .6em}")


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (but - and _), spaces to -."""
    return re.sub(r"[^\w\- ]", "", title.lower(), flags=re.UNICODE).replace(" ", "-")


def to_html(blocks: list[tuple], root: Path) -> str:
    """Render blocks as one self-contained HTML page: PNGs inlined, every string escaped,
    headings with GitHub's anchors (so the same links work in report.md and report.html),
    wide tables scrolling inside the page instead of widening it."""
    e = html.escape
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'><title>adaxbench report</title>",
           f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]} id='{e(anchor(str(b[2])), quote=True)}'>{e(str(b[2]))}</h{b[1]}>")
        elif b[0] == "p":
            cls = " class='warn'" if str(b[1]).startswith("⚠") else ""
            out.append(f"<p{cls}>{e(str(b[1]))}</p>")
        elif b[0] == "table":
            df = b[1]
            out.append("<div class='scroll'><table><thead><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
                       + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>"
                       for row in df.itertuples(index=False))
            out.append("</tbody></table></div>")
        elif b[0] == "img":
            data = base64.b64encode((root / b[1]).read_bytes()).decode()
            out.append(f"<p><img src='data:image/png;base64,{data}' alt='{e(str(b[2]), quote=True)}'></p>")
        elif b[0] == "links":
            out.append("<ul>" + "".join(f"<li><a href='{e(href, quote=True)}'>{e(text)}</a>"
                                        + (f" {e(tail)}" if tail else "") + "</li>" for text, href, tail in b[1])
                       + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


# --- the report -------------------------------------------------------------------------------

def _parse_target(target: str | float | None) -> dict[str, float] | float | None:
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


def _parse_margins(margin: str | dict | None) -> dict[str, float]:
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


def _setting_columns(rs: RunSet, keys: Iterable[str]) -> pd.DataFrame:
    rows = [{k: (str(v) if isinstance(v, (list, dict)) else v) for k, v in rs.settings[key].items()} for key in keys]
    return pd.DataFrame(rows)


def _excluded(rs: RunSet, tasks: dict) -> pd.DataFrame:
    r = rs.runs
    bad = r[(r["status"] != "completed") | (r["problem"] != "") | ~r["task"].isin(list(tasks))]
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


def _exclude_unscored(rs: RunSet, tasks: dict, scores: pd.DataFrame) -> None:
    """A completed run without a finite final value of its task's metric cannot enter a mean (it
    would turn its setting's into NaN): it goes under "Runs not included" with the reason."""
    r = rs.runs
    done = r.index[(r["status"] == "completed") & (r["problem"] == "") & r["task"].isin(list(tasks))]
    s = scores.reindex(done)
    final, best = s["final"].to_numpy(float), s["best"].to_numpy(float)
    for i in done[~np.isfinite(final) | np.isinf(best)]:  # NaN, or ±inf that would enter a mean
        metric = tasks[r.at[i, "task"]].metric
        r.at[i, "problem"] = (f"no finite {metric} value logged (all NaN or missing)" if pd.isna(s.at[i, "best"])
                              else f"final {metric} is {s.at[i, 'final']:g}" if not np.isfinite(s.at[i, "final"])
                              else f"{metric} reaches {s.at[i, 'best']:g}")
    if not ((r["status"] == "completed") & (r["problem"] == "")).any():
        raise ReportError(f"no usable run among {len(r)} run dir(s): no completed run has a finite "
                          f"value of its task's metric")


# --- analysis: everything the report says, in one object ---------------------------------------

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
        data = "" if self.train_limit == [None] else f" on {_vals(self.train_limit)} training examples"
        return f"{_vals(self.epochs)} epochs{data}"

    def text(self) -> str:
        batch = f", batch {_vals(self.batch_size)}" if self.batch_size != [None] else ""
        train = ("the whole training split" if self.train_limit == [None]
                 else f"the first {_vals(self.train_limit)} training examples (trainer.train_limit)")
        evals = ("the whole evaluation splits" if self.eval_limit == [None]
                 else f"{_vals(self.eval_limit)} examples per evaluation split (trainer.eval_limit)")
        proto = ("the task's own budget" if self.full
                 else f"the task's own budget is {_vals(self.protocol_epochs)} epochs on the whole training split")
        return (f"Budget: {_vals(self.epochs)} epochs, {_vals(self.steps)} optimizer steps{batch}, {train}, "
                f"evaluated on {evals}, lr schedule {_vals(self.lr_schedule)} ({proto}).")


def _vals(values: list) -> str:
    """Distinct values joined with " / " (one value when the runs agree), integers with separators."""
    return " / ".join(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else _fmt_num(v) for v in values)


def _schedule_text(cfg: dict) -> str:
    rest = ", ".join(f"{k}={_fmt_num(v)}" for k, v in cfg.items() if k != "name")
    return str(cfg.get("name", "constant")) + (f" ({rest})" if rest else "")


def task_budget(rs: RunSet, scores: pd.DataFrame, task: str) -> Budget:
    r = rs.runs
    ids = r.index[(r["task"] == task) & (r["status"] == "completed") & (r["problem"] == "")]
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


def _hparam_columns(rs: RunSet, keys: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(hyperparameters shared by every setting in ``keys``, the rest of each as text)."""
    hps = [setting_hparams(rs, k) for k in keys]
    common = set.intersection(*(set(h) for h in hps)) if hps else set()
    shared = {k: hps[0][k] for k in sorted(common) if len({repr(h[k]) for h in hps}) == 1} if len(hps) > 1 else {}
    rest = [", ".join(f"{k}={_fmt_num(v)}" for k, v in sorted(h.items()) if k not in shared) or "—" for h in hps]
    return shared, rest


@dataclass
class Analysis:
    """Every table, interval and verdict of a report, computed once; figures and text read it."""

    rs: RunSet
    tasks: dict[str, TaskInfo]
    missing: list[str]
    scores: pd.DataFrame
    agg: pd.DataFrame
    excluded: pd.DataFrame
    budgets: dict[str, Budget]
    baseline: str
    x: str
    select: str
    family: str
    edge_warnings: dict[str, list[str]]
    norm: pd.DataFrame | None = None
    iqm: pd.DataFrame | None = None
    times: pd.DataFrame | None = None
    prof: ProfileBand | None = None
    sprof: ProfileBand | None = None

    @property
    def usable(self) -> int:
        return int(((self.rs.runs["status"] == "completed") & (self.rs.runs["problem"] == "")).sum())


def analyse(paths: Iterable[str | os.PathLike], metric: str | None = None, x: str = "epoch",
            target: str | float | None = None, baseline: str = "adam", select: str = "final",
            margin: str | dict | None = None, family: str = "table") -> Analysis:
    """Load the runs under ``paths`` and compute everything the report shows."""
    if x not in F.X_LABELS:
        raise ReportError(f"bad --x {x!r}: expected one of epoch, step, time")
    if select not in ("final", "best"):
        raise ReportError(f"bad --select {select!r}: expected final or best")
    if family not in FAMILIES:
        raise ReportError(f"bad --family {family!r}: expected table (Holm over every comparison of the report) "
                          "or task (Holm within each task)")
    if metric is not None:
        split_metric(metric)
    tgt = _parse_target(target)
    margins = _parse_margins(margin)

    rs = load_runs(paths)
    rs.runs["label"] = label_settings(rs)
    usable = rs.runs[(rs.runs["status"] == "completed") & (rs.runs["problem"] == "")]
    if usable.empty:
        raise ReportError(f"no usable run among {len(rs.runs)} run dir(s): none is completed with "
                          f"readable metrics (see run.json status of each)")
    tasks = task_infos(rs, metric, tgt, margins)
    tasks = {k: v for k, v in tasks.items() if not v.note}
    missing = sorted(set(usable["task"]) - set(tasks))
    if not tasks:
        raise ReportError(f"no usable run logs {metric or 'any evaluation metric'}: "
                          "pass --metric SPLIT/METRIC that the runs logged, e.g. test/accuracy")
    if unknown := sorted(set(margins) - {t.metric for t in tasks.values()} - set(tasks)):
        raise ReportError(f"--margin for {', '.join(unknown)}: no task is compared on it (compared: "
                          f"{', '.join(sorted({t.metric for t in tasks.values()}))}; tasks: {', '.join(tasks)})")
    scores = run_scores(rs, tasks, select)
    _exclude_unscored(rs, tasks, scores)
    agg = aggregate(rs, tasks, scores, baseline, x, family)
    an = Analysis(rs, tasks, missing, scores, agg, _excluded(rs, tasks),
                  {n: task_budget(rs, scores, n) for n in tasks}, baseline, x, select, family, {})
    for name in tasks:
        a = agg[agg["task"] == name]
        multi = a.groupby("optimizer")["setting"].transform("size") > 1
        grid = multi & ~a["setting"].isin(sampled_settings(rs.runs[rs.runs["setting"].isin(a["setting"])]))
        an.edge_warnings[name] = (grid_edge_warnings(a[grid].rename(columns={"sel_mean": "score"}), rs.settings)
                                  if grid.any() else [])  # an Optuna search samples: it has no grid edge
    if len(tasks) >= 2:
        joined = rs.runs.join(scores, how="left")
        an.norm = normalised_scores(joined, agg, tasks)
        an.iqm = iqm_across_tasks(an.norm)
        an.times = profile_times(agg, list(tasks))
        ratios = an.times.div(an.times.min(axis=1), axis=0).to_numpy()
        top = max(4.0, float(np.nanmax(ratios[np.isfinite(ratios)], initial=1.0)) * 1.1)
        taus = np.unique(np.concatenate([np.logspace(0, math.log10(top), 400), ratios[np.isfinite(ratios)]]))
        an.prof = performance_profile_band(best_run_times(joined, agg, x), list(tasks), list(an.times.columns), taus)
        s_taus = np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), an.norm["score"].to_numpy(float)]))
        an.sprof = score_profile_band(an.norm, s_taus)
    return an


# --- text: the report's blocks from the analysis ------------------------------------------------

def _delta_cell(row: Any) -> str:
    if row.is_baseline:
        return "baseline"
    if not row.test:
        return "—"
    if row.test == "exact":
        return f"{row.delta:+.4g} (exact)"
    return f"{row.delta:+.4g} [{_g(row.ci_lo, '+.4g')}, {_g(row.ci_hi, '+.4g')}]" + (" *" if row.significant else "")


def _test_cell(row: Any) -> str:
    if row.test == "paired t":
        return f"paired t, {row.pairs} pairs"
    if row.test == "exact":
        return "exact (no spread over seeds)"
    return row.test or "—"


def _tv_cell(row: Any) -> str:
    if not np.isfinite(row.schedule_tv):
        return "—"
    return f"{row.schedule_tv:.3f} at {int(row.steps):,} steps"


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


def _verdict_counts(agg: pd.DataFrame) -> str:
    v = agg.loc[agg["is_best"] & (agg["verdict"] != ""), "verdict"]
    counts = [f"{int((v == w).sum())} {w}" for w in ("better", "worse", "equivalent", "inconclusive")]
    return f"{', '.join(counts)} (of {len(v)} comparisons)"


def across_tasks_blocks(an: Analysis, fig: Any, colors: dict) -> list[tuple]:
    iqm, prof, sprof, times, x = an.iqm, an.prof, an.sprof, an.times, an.x
    blocks: list[tuple] = [
        ("h", 2, "Across tasks"),
        ("p", f"The per-task verdicts behind these aggregates (each optimizer's best setting against {an.baseline}): "
              f"{_verdict_counts(an.agg)}. The aggregates below rank optimizers over tasks; they decide nothing "
              "that the per-task verdicts do not."),
        ("p", "Interquartile mean (IQM) of each optimizer's final scores over all task × seed pairs, its "
              f"best setting per task, with a {LEVEL:.0%} stratified-bootstrap CI ({N_BOOT} resamples of "
              "the seeds within each task) — the aggregate of rliable (Agarwal et al. 2021) for few "
              "runs on many tasks. Scores are normalised per task: 0 = the worst and 1 = the best final "
              "value of any seed there (a diverged seed scores 0), which stretches differences that no "
              "per-task test resolves to the full range. A CI needs ≥ 2 seeds on every task."),
        ("table", pd.DataFrame({
            "optimizer": iqm["optimizer"], "tasks": iqm["tasks"], "seeds": iqm["seeds"],
            f"IQM [{LEVEL:.0%} CI]": [f"{_g(m, '.3f')} [{_g(lo, '.3f')}, {_g(hi, '.3f')}]"
                                      for m, lo, hi in zip(iqm["iqm"], iqm["ci_lo"], iqm["ci_hi"])],
            "mean": [_g(v, ".3f") for v in iqm["mean"]]}))]
    img = fig("iqm", lambda: F.iqm_figure(iqm, colors) if len(iqm) else (None, 0))
    if img:
        blocks.append(("img", img, "interquartile mean across tasks"))
    blocks.append(("h", 3, "Performance profiles"))
    if not np.isfinite(times.to_numpy()).any():
        blocks.append(("p", "No performance profile: no optimizer reached the target of any task (targets come from "
                            "--target or the tasks' target keys), so there is no time to compare."))
    else:
        blocks.append(("p", f"AlgoPerf's definition: per task, each optimizer's best setting (by its {an.select} "
                            f"validation metric, or the compared metric where no valid split is logged) is timed by the "
                            f"median over seeds of its {F.X_LABELS[x]} to reach the task's target (∞ if not reached, "
                            "diverged or not run); ρ(τ) is the fraction of tasks on which that time is within a factor τ "
                            "of the fastest optimizer's."
                            + _band_text(prof, "the finished seeds within each task × optimizer best setting, each "
                                               "median time and every ratio recomputed", "performance_profiles.csv",
                                         "every optimizer's ratios depend on all optimizers' times on a task")))
        tt = times.map(lambda v: _g(v, ".4g")).reset_index()
        blocks.append(("table", tt.rename(columns={"task": f"median {F.X_LABELS[x]} to target"})))
        img = fig("performance_profiles", lambda: F.profile_figure(prof.rho, colors, x, prof.lo, prof.hi))
        if img:
            blocks.append(("img", img, "performance profiles"))
    blocks += [("h", 3, "Score distributions"),
               ("p", "rliable's performance profile (Agarwal et al. 2021): for each τ in [0, 1], the fraction "
                     "of an optimizer's runs (its best setting per task) whose normalised final score is at "
                     "least τ, averaged over the tasks it ran on so that every task weighs the same. The "
                     "whole distribution behind the IQM: a curve above another everywhere ranks higher, and "
                     "decides no more than the IQM does."
                     + _band_text(sprof, "the seeds within each task", "score_profiles.csv"))]
    img = fig("score_profiles", lambda: F.score_profile_figure(sprof.rho, colors, sprof.lo, sprof.hi)
              if len(an.norm) else (None, 0))
    if img:
        blocks.append(("img", img, "score distributions"))
    return blocks


def _target_text(task: TaskInfo, budget: Budget) -> str:
    if task.target is None:
        return "no target (pass --target VALUE)"
    text = f"target {task.target:g} (from {task.target_source})"
    if task.target_source == "task config" and not budget.full:
        text += (f", set for the task's own budget of {_vals(budget.protocol_epochs)} epochs; ours is "
                 f"{budget.ours()}, so it is not drawn on the curves")
    return text


def task_blocks(an: Analysis, name: str, fig: Any, colors: dict, refs: list) -> list[tuple]:
    task, budget, rs, baseline = an.tasks[name], an.budgets[name], an.rs, an.baseline
    a = an.agg[an.agg["task"] == name]
    blocks: list[tuple] = [("h", 2, f"Task {name}"), ("p", budget.text())]
    blocks.append(("p", f"Metric {task.metric} ({'higher' if task.higher_better else 'lower'} is better), "
                        f"{_target_text(task, budget)}. Mean ± std over completed seeds. Δ = setting − baseline "
                        f"({baseline}, its best setting) on the final metric with its {LEVEL:.0%} interval: paired t "
                        "over the seeds both ran where they share seeds, else Welch's t; * where the Holm-adjusted p "
                        f"(over {'this task' if an.family == 'task' else 'every comparison of the report'}) is below "
                        f"{ALPHA:g}, with ≥ {MIN_SEEDS_STAR} seeds a side. Verdict: equivalent within ±m (Holm-adjusted "
                        "TOST), else better or worse (the star), else inconclusive with the seeds that would settle it "
                        "at 80% power (for ±m, or to detect the Δ seen where |Δ| > m); a diverged seed on either side "
                        f"rules out equivalent; {_margin_text(a, task)}. See docs/statistics.md."))
    shown = a if len(a) <= MAX_TABLE_SETTINGS else a[a["is_best"]]
    if len(shown) < len(a):
        blocks.append(("p", f"{len(a)} settings: showing the best per optimizer; all are in aggregate.csv."))
    has_base = a["is_baseline"].any()
    task_refs = {k: references_for(refs, name, task.metric, rs.settings[k]) for k in a["setting"]}
    shared, rest = _hparam_columns(rs, list(shown["setting"]))
    if shared:
        blocks.append(("p", "Hyperparameters of every row: " + ", ".join(f"{k}={_fmt_num(v)}" for k, v in shared.items())
                            + "."))
    ref_budget = "" if budget.full else f", {_vals(budget.protocol_epochs)} epochs; ours {budget.ours()}"
    rows = list(shown.itertuples())
    tab = pd.DataFrame({
        "optimizer": shown["label"], "hyperparameters": rest, "seeds": shown["seeds"],
        f"final {task.metric}": [_pm(m, s) for m, s in zip(shown["final_mean"], shown["final_std"])],
        f"best {task.metric}": [_pm(m, s) for m, s in zip(shown["best_mean"], shown["best_std"])],
        f"Δ final vs {baseline} [{LEVEL:.0%} CI]": [_delta_cell(r) if has_base else "—" for r in rows],
        "test": [_test_cell(r) for r in rows],
        "p (Holm)": [f"{_g(r.p_value, '.2g')} ({_g(r.p_holm, '.2g')})" if np.isfinite(r.p_value) else "—" for r in rows],
        "verdict": ["baseline" if r.is_baseline else verdict_text(r._asdict()) if r.verdict else "—" for r in rows],
        "β̂₂ weighting distance": [_tv_cell(r) for r in rows],
        "reached target": [f"{r}/{n}" if task.target is not None else "—"
                           for r, n in zip(shown["reached"], shown["finished"])],
        "epochs to target": [_g(v, ".3g") for v in shown["epochs_to_target"]],
        "seconds to target": [_g(v, ".3g") for v in shown["seconds_to_target"]],
        "diverged": shown["diverged"], "failed": shown["failed"], "running": shown["running"],
    })
    if (tab["β̂₂ weighting distance"] == "—").all():  # no pair with a known β̂₂ schedule: AdaX's question is not asked
        tab = tab.drop(columns="β̂₂ weighting distance")
    if any(task_refs.values()):
        tab.insert(4, f"published {task.metric}", ["; ".join(f"{r.value_text()} {r.source}{r.detail()}{ref_budget}"
                                                             for r in task_refs[k]) or "—" for k in shown["setting"]])
    blocks.append(("table", tab))
    blocks += [("p", f"⚠ {w}") for w in divergence_warnings(a, rs.settings, baseline)]
    used = {r.source: r for rl in task_refs.values() for r in rl}
    if used:
        blocks.append(("p", "Published: results of the same optimizer (and the hyperparameters the source fixes) on "
                            f"this task at the task's own budget ({_vals(budget.protocol_epochs)} epochs), from the "
                            "sources below; their protocol may differ from these runs'."
                            + ("" if budget.full else f" Ours: {budget.ours()}: not comparable numbers.")))
        blocks.append(("links", [(r.source, r.url, "— " + r.citation) for r in used.values()]))
    if (line := spread_line(rs, name, task.metric, a["setting"])) is not None:
        blocks.append(("p", line))
    if not has_base:
        blocks.append(("p", f"No completed {baseline} run on this task: no Δ column (choose with --baseline)."))
    blocks.append(("p", "Epochs/seconds to target: mean over the seeds that reached it (training time, "
                        "evaluation excluded); 'reached target' counts completed and diverged seeds."))
    slug = _slug(name)
    drawn_task = task if budget.full or task.target_source == "--target" else replace(task, target=None)
    img = fig(f"{slug}_curves", lambda: F.curves_figure(rs, a, drawn_task, an.x, colors, task_refs,
                                                       ref_note=ref_budget))
    if img:
        blocks.append(("img", img, f"{name} curves"))
    blocks.append(("p", "Lines: mean over seeds; bands: ± one std; a single evaluation is a marker. Minibatch loss "
                        "is smoothed per seed (EMA) before averaging."
                        + (" Dotted lines: published results." if used else "")
                        + (" Optimizers with more than four settings show only their best."
                           if len(F.plotted_settings(a)) < (a["seeds"] > 0).sum() else "")))
    img = fig(f"{slug}_adaptivity", lambda: F.adaptivity_figure(rs, a, task, colors))
    if img:
        blocks.append(("img", img, f"{name} logged beta2 and effective step size"))
    img = fig(f"{slug}_lr_sensitivity", lambda: F.lr_figure(a, rs.settings, task, colors))
    if img:
        blocks.append(("img", img, f"{name} learning-rate sensitivity"))
    multi = a.groupby("optimizer")["setting"].transform("size") > 1
    if multi.any():
        b = a[multi & a["is_best"]]
        tried = a[multi].groupby("optimizer").size()
        blocks += [("h", 3, f"Best setting per optimizer on {name}"),
                   ("p", f"Selected by the {an.select} {task.select_metric}: mean over seeds, a diverged seed "
                         "counting as the worst value (the rule `adaxbench best` uses)."),
                   ("table", pd.DataFrame({
                       "optimizer": b["optimizer"], "best setting": b["label"],
                       f"{an.select} {task.select_metric}": [_g(v) for v in b["sel_mean"]],
                       f"final {task.metric}": [_pm(m, s) for m, s in zip(b["final_mean"], b["final_std"])],
                       "settings tried": [int(tried[o]) for o in b["optimizer"]]}))]
        blocks += [("p", f"⚠ {w}") for w in an.edge_warnings[name]]
    return blocks


def _margin_text(a: pd.DataFrame, task: TaskInfo) -> str:
    m = a.loc[a["margin_source"] != "", ["margin", "margin_source"]]
    if m.empty:
        return "no comparison"
    value, source = m.iloc[0]
    if not np.isfinite(value):
        return f"{NO_MARGIN} (losses have no default margin)"
    why = {"--margin": "from --margin", "task config": "from the task's equivalence_margin"}.get(
        source, "the default: half a point of accuracy")
    return f"m = {value:.3g} ({why})"


def schedule_blocks(an: Analysis, fig: Any, colors: dict) -> list[tuple]:
    sched = {}
    for key in an.agg.loc[an.agg["seeds"] > 0, "setting"]:
        s = an.rs.settings[key]
        sc = divergence.beta2_schedule(dict(s))
        if sc is not None:
            sched.setdefault(sc, s.get("optimizer.name"))
    if not sched:
        return []
    items = [(n + ("" if n == sc[0] else f" ({sc[0]})")
              + (f" β2={sc[1]:g}" if sc[0] != "adafactor" else f" c={sc[2]:g}"), sc, n)
             for sc, n in sorted(sched.items(), key=lambda kv: (kv[1], kv[0][0], str(kv[0][1]), kv[0][2]))]
    blocks: list[tuple] = [
        ("h", 2, "β̂₂ schedules"),
        ("p", "The weight 1 − β̂₂,t that each schedule present gives the newest squared gradient "
              "(β̂₂,t: the effective second-moment weight, bias correction folded in), t = 1 to 1e6. The "
              "'β̂₂ weighting distance' of the task tables is the total-variation distance between two such "
              "schedules' weightings of all past squared gradients after the run's steps (0: the same, 1: disjoint).")]
    img = fig("beta2_schedules", lambda: F.beta2_figure(items, colors))
    if img:
        blocks.append(("img", img, "beta2 schedules"))
    return blocks


def report_blocks(an: Analysis, fig: Any) -> list[tuple]:
    """The whole report as blocks (headings, paragraphs, tables, images, link lists)."""
    rs, tasks = an.rs, an.tasks
    colors = F.optimizer_colors(list(rs.runs.loc[rs.runs["optimizer"] != "", "optimizer"]))
    blocks: list[tuple] = [("h", 1, "adaxbench report"), (
        "p", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from {len(rs.runs)} run dir(s): "
             f"{an.usable} completed and usable, {len(an.excluded)} listed under 'Runs not included'. "
             f"Tasks: {', '.join(tasks)}. Baseline: {an.baseline}. Curves against {an.x}.")]
    if an.missing:
        blocks.append(("p", f"Tasks without the requested metric (not scored): {', '.join(an.missing)}."))
    for note in rs.notes:  # e.g. two classes of one name, told apart by their modules
        blocks.append(("p", f"Note: {note}"))
    contents = ([("Across tasks", "#" + anchor("Across tasks"), "")] if len(tasks) >= 2 else []) + \
        [(f"Task {n}", "#" + anchor(f"Task {n}"), "") for n in tasks] + \
        [("Runs not included", "#" + anchor("Runs not included"), ""),
         ("summary.csv", "summary.csv", "(a row per run)"), ("aggregate.csv", "aggregate.csv", "(a row per task × setting)")]
    blocks.append(("links", contents))
    if an.iqm is not None:
        blocks += across_tasks_blocks(an, fig, colors)
    refs = load_references()
    for name in tasks:
        blocks += task_blocks(an, name, fig, colors, refs)
    blocks += schedule_blocks(an, fig, colors)
    blocks.append(("h", 2, "Runs not included"))
    if an.excluded.empty:
        blocks.append(("p", "None: every run dir completed and was readable."))
    else:
        blocks += [("p", "Running, interrupted, diverged, failed or unreadable runs are not in the means above "
                         "(diverged seeds do count as misses in 'reached target')."),
                   ("table", an.excluded)]
    return blocks


def write_tables(an: Analysis, outdir: Path) -> tuple[list[Path], pd.DataFrame]:
    """summary.csv (a row per run) and aggregate.csv (a row per task × setting), hyperparameters as
    columns; the cross-task CSVs where there are several tasks."""
    rs, agg = an.rs, an.agg
    summ = rs.runs.drop(columns=["setting", "sid", "overrides"]).join(an.scores.add_prefix("report."), how="left")
    cfg = pd.json_normalize([c if isinstance(c, dict) else {} for c in rs.configs]).add_prefix("config.")
    summ = pd.concat([summ.reset_index(drop=True), cfg], axis=1)
    atomic_write(outdir / "summary.csv", lambda tmp: summ.to_csv(tmp, index=False))
    agg_out = pd.concat([agg.drop(columns=["setting"]).reset_index(drop=True),
                         _setting_columns(rs, agg["setting"]).add_prefix("config.")], axis=1)
    atomic_write(outdir / "aggregate.csv", lambda tmp: agg_out.to_csv(tmp, index=False))
    files = [outdir / "summary.csv", outdir / "aggregate.csv"]
    if an.iqm is not None:
        atomic_write(outdir / "iqm.csv", lambda tmp: an.iqm.to_csv(tmp, index=False))
        atomic_write(outdir / "performance_profiles.csv", an.prof.to_csv_frame().to_csv)
        atomic_write(outdir / "score_profiles.csv", an.sprof.to_csv_frame().to_csv)
        files += [outdir / "iqm.csv", outdir / "performance_profiles.csv", outdir / "score_profiles.csv"]
    return files, summ


def build_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike = "report",
                 metric: str | None = None, x: str = "epoch", target: str | float | None = None,
                 baseline: str = "adam", formats: Iterable[str] = FORMATS, select: str = "final",
                 figures: bool = True, margin: str | dict | None = None, family: str = "table") -> Report:
    """Read every run under ``paths`` and write the comparison report into ``out``: load and
    analyse (``analyse``), draw the figures and lay out the text from that analysis, write.

    ``figures=False`` skips the figures (tables and CSVs only, much faster).  ``margin``:
    equivalence margins per metric (``"test/accuracy=0.005"``); ``family``: "table" or "task", what
    Holm's adjustment runs over.  Raises ReportError (one line) when nothing usable was found or an
    argument is invalid.
    """
    t0 = time.perf_counter()
    if isinstance(formats, str):  # formats="md" as on the command line, not the letters m, d
        formats = formats.split(",")
    formats = [f.strip() for f in formats if f.strip()]
    if (bad := [f for f in formats if f not in FORMATS]) or not formats:
        raise ReportError(f"bad --format {','.join(bad)!r}: expected md, html or md,html")
    an = analyse(paths, metric, x, target, baseline, select, margin, family)

    outdir = Path(out)
    figdir = outdir / "figures"
    if figdir.is_symlink():  # files are replaced, never written through links: a linked folder is refused
        raise ReportError(f"{figdir} is a symbolic link: remove it, or choose another --out")
    figdir.mkdir(parents=True, exist_ok=True)
    rep = Report(out=outdir, excluded=an.excluded, analysis=an)

    def fig(stem: str, make: Any) -> str | None:
        """Draw (``make()`` -> (figure, series)) and save a figure; its link, or None."""
        if not figures:
            return None
        f, n = make()
        if f is None:
            return None
        F.save(f, figdir, stem)
        rep.series[stem] = n
        rep.files += [figdir / f"{stem}.png", figdir / f"{stem}.svg"]
        return f"figures/{stem}.png"

    blocks = report_blocks(an, fig)
    files, summ = write_tables(an, outdir)
    rep.files += files
    rep.summary, rep.aggregate = summ, an.agg
    if "md" in formats:
        write_text(outdir / "report.md", to_markdown(blocks))
        rep.files.append(outdir / "report.md")
    if "html" in formats:
        write_text(outdir / "report.html", to_html(blocks, outdir))
        rep.files.append(outdir / "report.html")
    rep.warnings = [w for ws in an.edge_warnings.values() for w in ws]
    rep.seconds = time.perf_counter() - t0
    return rep
