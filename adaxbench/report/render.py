"""Build a report directory: figures, tables, report.md, report.html, summary.csv, aggregate.csv.

The report flows one way: ``analyse`` (analysis.py) computes everything it shows, ``draw_figures``
(figures.py) draws from that analysis, and this module lays the analysis out as text (blocks of
headings, paragraphs, tables, images and links, rendered as Markdown and HTML) and writes it all.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import figures as F
from ..rundir import atomic_write, write_text
from .aggregate import ALPHA, LEVEL, MIN_SEEDS_STAR, N_BOOT, TaskInfo
from .analysis import Analysis, Budget, TaskAnalysis, analyse, vals
from .load import ReportError
from .text import fmt_num

FORMATS = ("md", "html")

NO_MARGIN = "no margin: set --margin or the task's equivalence_margin"


def verdict_text(row: Mapping[str, Any]) -> str:
    """The verdict as a report cell: ``better``, ``equivalent within ±0.005``, ``inconclusive: ~12
    pairs for ±0.005``, ``inconclusive: ~14 pairs to detect Δ = −0.112``, ``inconclusive: 2 of 5
    seeds diverged`` (never "no difference")."""
    v, m = row["verdict"], row["margin"]
    ms = f"±{m:.3g}" if m is not None and np.isfinite(m) else ""
    k, total = int(row.get("diverged_seeds", 0) or 0), int(row.get("compared_seeds", 0) or 0)
    diverged = f"{k} of {total} seeds diverged" if k else ""
    if v == "equivalent":
        return f"equivalent within {ms}"
    if v != "inconclusive":
        return v + (" (exact)" if row["test"] == "exact" else "") + (f" ({diverged})" if diverged else "")
    if row["test"] != "exact" and row["n"] < MIN_SEEDS_STAR:
        return f"inconclusive: fewer than {MIN_SEEDS_STAR} seeds" + (f"; {diverged}" if diverged else "")
    if diverged:
        return f"inconclusive: {diverged}"
    if not ms:
        return f"inconclusive ({NO_MARGIN})"
    n = row["seeds_needed"]
    unit = "pairs" if row["pairs"] else "seeds a side"
    goal = f"to detect Δ = {row['delta']:.3g}" if abs(row["delta"]) > m else f"for {ms}"
    return f"inconclusive: ~{int(n)} {unit} {goal}" if np.isfinite(n) else f"inconclusive: > 100,000 {unit} {goal}"


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
    analysis: Analysis | None = None


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


def _img(figs: dict[str, int], stem: str, alt: str) -> list[tuple]:
    """The image block of a drawn figure; nothing where it was not drawn."""
    return [("img", f"figures/{stem}.png", alt)] if stem in figs else []


def _warnings(sentences: list[str]) -> list[tuple]:
    return [("p", f"⚠ {w}") for w in sentences]


def _verdict_counts(verdicts: dict[str, int]) -> str:
    counts = [f"{n} {w}" for w, n in verdicts.items()]
    return f"{', '.join(counts)} (of {sum(verdicts.values())} comparisons)"


def across_tasks_blocks(an: Analysis, figs: dict[str, int]) -> list[tuple]:
    across, x = an.across, an.x
    iqm = across.iqm
    blocks: list[tuple] = [
        ("h", 2, "Across tasks"),
        ("p", f"The per-task verdicts behind these aggregates (each optimizer's best setting against {an.baseline}): "
              f"{_verdict_counts(across.verdicts)}. The aggregates below rank optimizers over tasks; they decide "
              "nothing that the per-task verdicts do not."),
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
    blocks += _img(figs, "iqm", "interquartile mean across tasks")
    blocks.append(("h", 3, "Performance profiles"))
    if not across.reached:
        blocks.append(("p", "No performance profile: no optimizer reached the target of any task (targets come from "
                            "--target or the tasks' target keys), so there is no time to compare."))
    else:
        blocks.append(("p", f"AlgoPerf's definition: per task, each optimizer's best setting (by its {an.select} "
                            f"validation metric, or the compared metric where no valid split is logged) is timed by the "
                            f"median over seeds of its {F.X_LABELS[x]} to reach the task's target (∞ if not reached, "
                            "diverged or not run); ρ(τ) is the fraction of tasks on which that time is within a factor τ "
                            "of the fastest optimizer's."
                            + _band_text(across.prof, "the finished seeds within each task × optimizer best setting, "
                                                      "each median time and every ratio recomputed",
                                         "performance_profiles.csv",
                                         "every optimizer's ratios depend on all optimizers' times on a task")))
        tt = across.times.map(lambda v: _g(v, ".4g")).reset_index()
        blocks.append(("table", tt.rename(columns={"task": f"median {F.X_LABELS[x]} to target"})))
        blocks += _img(figs, "performance_profiles", "performance profiles")
    blocks += [("h", 3, "Score distributions"),
               ("p", "rliable's performance profile (Agarwal et al. 2021): for each τ in [0, 1], the fraction "
                     "of an optimizer's runs (its best setting per task) whose normalised final score is at "
                     "least τ, averaged over the tasks it ran on so that every task weighs the same. The "
                     "whole distribution behind the IQM: a curve above another everywhere ranks higher, and "
                     "decides no more than the IQM does."
                     + _band_text(across.sprof, "the seeds within each task", "score_profiles.csv"))]
    return blocks + _img(figs, "score_profiles", "score distributions")


def _target_text(task: TaskInfo, budget: Budget) -> str:
    if task.target is None:
        return "no target (pass --target VALUE)"
    text = f"target {task.target:g} (from {task.target_source})"
    if task.target_source == "task config" and not budget.full:
        text += (f", set for the task's own budget of {vals(budget.protocol_epochs)} epochs; ours is "
                 f"{budget.ours()}, so it is not drawn on the curves")
    return text


def _margin_text(t: TaskAnalysis) -> str:
    if t.margin is None:
        return "no comparison"
    value, source = t.margin
    if not np.isfinite(value):
        return f"{NO_MARGIN} (losses have no default margin)"
    why = {"--margin": "from --margin", "task config": "from the task's equivalence_margin"}.get(
        source, "the default: half a point of accuracy")
    return f"m = {value:.3g} ({why})"


def _task_intro(an: Analysis, t: TaskAnalysis) -> list[tuple]:
    """The task's heading, budget and how to read its table."""
    task = t.info
    blocks: list[tuple] = [("h", 2, f"Task {task.name}"), ("p", t.budget.text())]
    blocks.append(("p", f"Metric {task.metric} ({'higher' if task.higher_better else 'lower'} is better), "
                        f"{_target_text(task, t.budget)}. Mean ± std over completed seeds. Δ = setting − baseline "
                        f"({an.baseline}, its best setting) on the final metric with its {LEVEL:.0%} interval: paired t "
                        "over the seeds both ran where they share seeds, else Welch's t; * where the Holm-adjusted p "
                        f"(over {'this task' if an.family == 'task' else 'every comparison of the report'}) is below "
                        f"{ALPHA:g}, with ≥ {MIN_SEEDS_STAR} seeds a side. Verdict: equivalent within ±m (Holm-adjusted "
                        "TOST), else better or worse (the star), else inconclusive with the seeds that would settle it "
                        "at 80% power (for ±m, or to detect the Δ seen where |Δ| > m); a diverged seed on either side "
                        f"rules out equivalent; {_margin_text(t)}. See docs/statistics.md."))
    if len(t.shown) < len(t.rows):
        blocks.append(("p", f"{len(t.rows)} settings: showing the best per optimizer; all are in aggregate.csv."))
    if t.shared:
        blocks.append(("p", "Hyperparameters of every row: "
                            + ", ".join(f"{k}={fmt_num(v)}" for k, v in t.shared.items()) + "."))
    return blocks


def _task_table(an: Analysis, t: TaskAnalysis) -> pd.DataFrame:
    """The task's table: a row per shown setting, against the baseline."""
    task, shown, baseline = t.info, t.shown, an.baseline
    rows = list(shown.itertuples())
    tab = pd.DataFrame({
        "optimizer": shown["label"], "hyperparameters": t.hparams, "seeds": shown["seeds"],
        f"final {task.metric}": [_pm(m, s) for m, s in zip(shown["final_mean"], shown["final_std"])],
        f"best {task.metric}": [_pm(m, s) for m, s in zip(shown["best_mean"], shown["best_std"])],
        f"Δ final vs {baseline} [{LEVEL:.0%} CI]": [_delta_cell(r) if t.has_baseline else "—" for r in rows],
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
    if any(t.refs.values()):
        ref_note = t.budget.ref_note()
        tab.insert(4, f"published {task.metric}", ["; ".join(f"{r.value_text()} {r.source}{r.detail()}{ref_note}"
                                                             for r in t.refs[k]) or "—" for k in shown["setting"]])
    return tab


def _published_blocks(t: TaskAnalysis) -> list[tuple]:
    """Where the published numbers of the table come from, and how our curves lie in their spread."""
    blocks: list[tuple] = []
    budget = t.budget
    if used := t.used_refs:
        blocks.append(("p", "Published: results of the same optimizer (and the hyperparameters the source fixes) on "
                            f"this task at the task's own budget ({vals(budget.protocol_epochs)} epochs), from the "
                            "sources below; their protocol may differ from these runs'."
                            + ("" if budget.full else f" Ours: {budget.ours()}: not comparable numbers.")))
        blocks.append(("links", [(r.source, r.url, "— " + r.citation) for r in used.values()]))
    if t.spread is not None:
        blocks.append(("p", t.spread))
    return blocks


def _task_figures(t: TaskAnalysis, figs: dict[str, int]) -> list[tuple]:
    stem, name = F.task_stem(t.name), t.name
    blocks = _img(figs, f"{stem}_curves", f"{name} curves")
    blocks.append(("p", "Lines: mean over seeds; bands: ± one std; a single evaluation is a marker. Minibatch loss "
                        "is smoothed per seed (EMA) before averaging."
                        + (" Dotted lines: published results." if t.used_refs else "")
                        + (" Optimizers with more than four settings show only their best."
                           if t.curves_trimmed else "")))
    blocks += _img(figs, f"{stem}_adaptivity", f"{name} logged beta2 and effective step size")
    return blocks + _img(figs, f"{stem}_lr_sensitivity", f"{name} learning-rate sensitivity")


def _best_blocks(an: Analysis, t: TaskAnalysis) -> list[tuple]:
    """The best setting of each optimizer that ran several, and the grid edges they sit on."""
    b, task = t.best, t.info
    if b is None:
        return []
    return [("h", 3, f"Best setting per optimizer on {t.name}"),
            ("p", f"Selected by the {an.select} {task.select_metric}: mean over seeds, a diverged seed "
                  "counting as the worst value (the rule `adaxbench best` uses)."),
            ("table", pd.DataFrame({
                "optimizer": b["optimizer"], "best setting": b["label"],
                f"{an.select} {task.select_metric}": [_g(v) for v in b["sel_mean"]],
                f"final {task.metric}": [_pm(m, s) for m, s in zip(b["final_mean"], b["final_std"])],
                "settings tried": b["tried"]}))] + _warnings(t.edge_warnings)


def task_blocks(an: Analysis, t: TaskAnalysis, figs: dict[str, int]) -> list[tuple]:
    """A task's section: its table with what it needs to be read, figures and best settings."""
    blocks = _task_intro(an, t) + [("table", _task_table(an, t))] + _warnings(t.divergence_warnings)
    blocks += _published_blocks(t)
    if not t.has_baseline:
        blocks.append(("p", f"No completed {an.baseline} run on this task: no Δ column (choose with --baseline)."))
    blocks.append(("p", "Epochs/seconds to target: mean over the seeds that reached it (training time, "
                        "evaluation excluded); 'reached target' counts completed and diverged seeds."))
    return blocks + _task_figures(t, figs) + _best_blocks(an, t)


def schedule_blocks(an: Analysis, figs: dict[str, int]) -> list[tuple]:
    if not an.schedules:
        return []
    return [("h", 2, "β̂₂ schedules"),
            ("p", "The weight 1 − β̂₂,t that each schedule present gives the newest squared gradient "
                  "(β̂₂,t: the effective second-moment weight, bias correction folded in), t = 1 to 1e6. The "
                  "'β̂₂ weighting distance' of the task tables is the total-variation distance between two such "
                  "schedules' weightings of all past squared gradients after the run's steps (0: the same, 1: "
                  "disjoint).")] + _img(figs, "beta2_schedules", "beta2 schedules")


def report_blocks(an: Analysis, figs: dict[str, int]) -> list[tuple]:
    """The whole report as blocks (headings, paragraphs, tables, images, link lists); ``figs``: the
    figures drawn (``figures.draw_figures``)."""
    rs, tasks = an.rs, an.tasks
    blocks: list[tuple] = [("h", 1, "adaxbench report"), (
        "p", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from {len(rs.runs)} run dir(s): "
             f"{an.usable} completed and usable, {len(an.excluded)} listed under 'Runs not included'. "
             f"Tasks: {', '.join(tasks)}. Baseline: {an.baseline}. Curves against {an.x}.")]
    if an.missing:
        blocks.append(("p", f"Tasks without the requested metric (not scored): {', '.join(an.missing)}."))
    blocks += [("p", f"Note: {note}") for note in an.notes]
    contents = ([("Across tasks", "#" + anchor("Across tasks"), "")] if len(tasks) >= 2 else []) + \
        [(f"Task {n}", "#" + anchor(f"Task {n}"), "") for n in tasks] + \
        [("Runs not included", "#" + anchor("Runs not included"), ""),
         ("summary.csv", "summary.csv", "(a row per run)"), ("aggregate.csv", "aggregate.csv", "(a row per task × setting)")]
    blocks.append(("links", contents))
    if an.across is not None:
        blocks += across_tasks_blocks(an, figs)
    for t in tasks.values():
        blocks += task_blocks(an, t, figs)
    blocks += schedule_blocks(an, figs)
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
    summ, agg = an.summary_table(), an.aggregate_table()
    atomic_write(outdir / "summary.csv", lambda tmp: summ.to_csv(tmp, index=False))
    atomic_write(outdir / "aggregate.csv", lambda tmp: agg.to_csv(tmp, index=False))
    files = [outdir / "summary.csv", outdir / "aggregate.csv"]
    if (across := an.across) is not None:
        atomic_write(outdir / "iqm.csv", lambda tmp: across.iqm.to_csv(tmp, index=False))
        atomic_write(outdir / "performance_profiles.csv", across.prof.to_csv_frame().to_csv)
        atomic_write(outdir / "score_profiles.csv", across.sprof.to_csv_frame().to_csv)
        files += [outdir / "iqm.csv", outdir / "performance_profiles.csv", outdir / "score_profiles.csv"]
    return files, summ


def build_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike = "report",
                 metric: str | None = None, x: str = "epoch", target: str | float | None = None,
                 baseline: str = "adam", formats: Iterable[str] = FORMATS, select: str = "final",
                 figures: bool = True, margin: str | dict | None = None, family: str = "table") -> Report:
    """Read every run under ``paths`` and write the comparison report into ``out``, one way: load
    and analyse (``analysis.analyse``), draw the figures from that analysis
    (``figures.draw_figures``), lay out its text (``report_blocks``), write.

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
    rep.series = F.draw_figures(an, figdir) if figures else {}
    rep.files += [figdir / f"{stem}.{ext}" for stem in rep.series for ext in ("png", "svg")]
    blocks = report_blocks(an, rep.series)
    files, rep.summary = write_tables(an, outdir)
    rep.files += files
    rep.aggregate = an.agg
    if "md" in formats:
        write_text(outdir / "report.md", to_markdown(blocks))
        rep.files.append(outdir / "report.md")
    if "html" in formats:
        write_text(outdir / "report.html", to_html(blocks, outdir))
        rep.files.append(outdir / "report.html")
    rep.warnings = an.warnings
    rep.seconds = time.perf_counter() - t0
    return rep
