"""Build a report directory: figures, tables, report.md, report.html, summary.csv, aggregate.csv."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import figures as F
from .aggregate import (LEVEL, MIN_SEEDS_STAR, N_BOOT, aggregate, best_run_times, grid_edge_warnings,
                        iqm_across_tasks, label_settings, normalised_scores, performance_profile_band,
                        profile_times, run_scores, score_profile_band, split_metric, task_infos)
from .load import ReportError, RunSet, load_runs
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
    # (brackets escaped: a name like [x](http://...) or ![i](...) stays text, never a live link or image)
    s = str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("[", "\\[").replace("]", "\\]")
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


def build_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike = "report",
                 metric: str | None = None, x: str = "epoch", target: str | float | None = None,
                 baseline: str = "adam", formats: Iterable[str] = FORMATS, select: str = "final",
                 figures: bool = True) -> Report:
    """Read every run under ``paths`` and write the comparison report into ``out``.

    ``figures=False`` skips the figures (tables and CSVs only, much faster).

    Raises ReportError (one line) when nothing usable was found or an argument is invalid.
    """
    t0 = time.perf_counter()
    if x not in F.X_LABELS:
        raise ReportError(f"bad --x {x!r}: expected one of epoch, step, time")
    if select not in ("final", "best"):
        raise ReportError(f"bad --select {select!r}: expected final or best")
    formats = [f.strip() for f in formats if f.strip()]
    if (bad := [f for f in formats if f not in FORMATS]) or not formats:
        raise ReportError(f"bad --format {','.join(bad)!r}: expected md, html or md,html")
    if metric is not None:
        split_metric(metric)
    tgt = _parse_target(target)

    rs = load_runs(paths)
    rs.runs["label"] = label_settings(rs)
    usable = rs.runs[(rs.runs["status"] == "completed") & (rs.runs["problem"] == "")]
    if usable.empty:
        raise ReportError(f"no usable run among {len(rs.runs)} run dir(s): none is completed with "
                          f"readable metrics (see run.json status of each)")
    tasks = task_infos(rs, metric, tgt)
    tasks = {k: v for k, v in tasks.items() if not v.note}
    missing = sorted(set(usable["task"]) - set(tasks))
    if not tasks:
        raise ReportError(f"no usable run logs {metric or 'any evaluation metric'}: "
                          "pass --metric SPLIT/METRIC that the runs logged, e.g. test/accuracy")
    scores = run_scores(rs, tasks, select)
    _exclude_unscored(rs, tasks, scores)
    agg = aggregate(rs, tasks, scores, baseline, x)
    excluded = _excluded(rs, tasks)

    outdir = Path(out)
    figdir = outdir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    rep = Report(out=outdir, excluded=excluded)
    colors = F.optimizer_colors(list(rs.runs.loc[rs.runs["optimizer"] != "", "optimizer"]))

    def fig(stem: str, made: tuple) -> str | None:
        f, n = made
        if f is None or not figures:
            return None
        F.save(f, figdir, stem)
        rep.series[stem] = n
        rep.files += [figdir / f"{stem}.png", figdir / f"{stem}.svg"]
        return f"figures/{stem}.png"

    n_usable = len(usable)
    refs = load_references()
    blocks: list[tuple] = [("h", 1, "adaxbench report"), (
        "p", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from {len(rs.runs)} run dir(s): "
             f"{n_usable} completed and usable, {len(excluded)} listed under 'Runs not included'. "
             f"Tasks: {', '.join(tasks)}. Baseline: {baseline}. Curves against {x}.")]
    if missing:
        blocks.append(("p", f"Tasks without the requested metric (not scored): {', '.join(missing)}."))
    contents = ([("Across tasks", "#" + anchor("Across tasks"), "")] if len(tasks) >= 2 else []) + \
        [(f"Task {n}", "#" + anchor(f"Task {n}"), "") for n in tasks] + \
        [("Runs not included", "#" + anchor("Runs not included"), ""),
         ("summary.csv", "summary.csv", "(a row per run)"), ("aggregate.csv", "aggregate.csv", "(a row per task × setting)")]
    blocks.append(("links", contents))
    all_warnings: list[str] = []

    # Across tasks first: the cross-task summary.
    if len(tasks) >= 2:
        blocks.append(("h", 2, "Across tasks"))
        joined = rs.runs.join(scores, how="left")
        norm = normalised_scores(joined, agg, tasks)
        iqm = iqm_across_tasks(norm)
        blocks += [("p", "Interquartile mean (IQM) of each optimizer's final scores over all task × seed pairs, its "
                         f"best setting per task, with a {LEVEL:.0%} stratified-bootstrap CI ({N_BOOT} resamples of "
                         "the seeds within each task) — the aggregate of rliable (Agarwal et al. 2021) for few "
                         "runs on many tasks. Scores are normalised per task: 0 = the worst and 1 = the best final "
                         "value of any seed there (a diverged seed scores 0). A CI needs ≥ 2 seeds on every task."),
                   ("table", pd.DataFrame({
                       "optimizer": iqm["optimizer"], "tasks": iqm["tasks"], "seeds": iqm["seeds"],
                       f"IQM [{LEVEL:.0%} CI]": [f"{_g(m, '.3f')} [{_g(lo, '.3f')}, {_g(hi, '.3f')}]"
                                                 for m, lo, hi in zip(iqm["iqm"], iqm["ci_lo"], iqm["ci_hi"])],
                       "mean": [_g(v, ".3f") for v in iqm["mean"]]}))]
        img = fig("iqm", F.iqm_figure(iqm, colors) if figures and len(iqm) else (None, 0))
        if img:
            blocks.append(("img", img, "interquartile mean across tasks"))
        iqm.to_csv(outdir / "iqm.csv", index=False)
        rep.files.append(outdir / "iqm.csv")
        times = profile_times(agg, list(tasks))
        finite = times.to_numpy()[np.isfinite(times.to_numpy())]
        ratios = times.div(times.min(axis=1), axis=0).to_numpy()
        top = max(4.0, float(np.nanmax(ratios[np.isfinite(ratios)], initial=1.0)) * 1.1)
        taus = np.unique(np.concatenate([np.logspace(0, math.log10(top), 400), ratios[np.isfinite(ratios)]]))
        prof = performance_profile_band(best_run_times(joined, agg, x), list(tasks), list(times.columns), taus)
        blocks += [("h", 3, "Performance profiles"),
                   ("p", f"AlgoPerf's definition: per task, each optimizer's best setting (by its {select} "
                         f"validation metric, or the compared metric where no valid split is logged) is timed by the median over seeds of its {F.X_LABELS[x]} to reach the "
                         "task's target (∞ if not reached, diverged or not run); ρ(τ) is the fraction of tasks "
                         "on which that time is within a factor τ of the fastest optimizer's."
                         + ("" if finite.size else " No optimizer reached any target.")
                         + _band_text(prof, "the finished seeds within each task × optimizer best setting, each "
                                            "median time and every ratio recomputed", "performance_profiles.csv",
                                      "every optimizer's ratios depend on all optimizers' times on a task"))]
        tt = times.map(lambda v: _g(v, ".4g")).reset_index()
        blocks.append(("table", tt.rename(columns={"task": f"median {F.X_LABELS[x]} to target"})))
        img = fig("performance_profiles",
                  F.profile_figure(prof.rho, colors, x, prof.lo, prof.hi) if figures else (None, 0))
        if img:
            blocks.append(("img", img, "performance profiles"))
        rep.files.append(outdir / "performance_profiles.csv")
        prof.to_csv_frame().to_csv(outdir / "performance_profiles.csv")
        s_taus = np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), norm["score"].to_numpy(float)]))
        sprof = score_profile_band(norm, s_taus)
        blocks += [("h", 3, "Score distributions"),
                   ("p", "rliable's performance profile (Agarwal et al. 2021): for each τ in [0, 1], the fraction "
                         "of an optimizer's runs (its best setting per task) whose normalised final score is at "
                         "least τ, averaged over the tasks it ran on so that every task weighs the same. The "
                         "whole distribution behind the IQM: a curve above another everywhere dominates it."
                         + _band_text(sprof, "the seeds within each task", "score_profiles.csv"))]
        img = fig("score_profiles", F.score_profile_figure(sprof.rho, colors, sprof.lo, sprof.hi)
                  if figures and len(norm) else (None, 0))
        if img:
            blocks.append(("img", img, "score distributions"))
        rep.files.append(outdir / "score_profiles.csv")
        sprof.to_csv_frame().to_csv(outdir / "score_profiles.csv")

    for name, task in tasks.items():
        a = agg[agg["task"] == name]
        blocks.append(("h", 2, f"Task {name}"))
        tdesc = (f"target {task.target:g} (from {task.target_source})" if task.target is not None
                 else "no target (pass --target VALUE)")
        blocks.append(("p", f"Metric {task.metric} ({'higher' if task.higher_better else 'lower'} is better), "
                            f"{tdesc}. Mean ± std over completed seeds. Δ = setting − baseline ({baseline}, its "
                            f"best setting) on the final metric, with Welch's {LEVEL:.0%} t interval over seeds "
                            f"(unequal variances); * where it excludes 0, shown only with ≥ {MIN_SEEDS_STAR} "
                            "seeds on both sides."))
        shown = a if len(a) <= MAX_TABLE_SETTINGS else a[a["is_best"]]
        if len(shown) < len(a):
            blocks.append(("p", f"{len(a)} settings: showing the best per optimizer; all are in aggregate.csv."))
        has_base = a["is_baseline"].any()
        task_refs = {k: references_for(refs, name, task.metric, rs.settings[k]) for k in a["setting"]}
        tab = pd.DataFrame({
            "optimizer": shown["label"],
            "seeds": shown["seeds"],
            f"final {task.metric}": [_pm(m, s) for m, s in zip(shown["final_mean"], shown["final_std"])],
            f"best {task.metric}": [_pm(m, s) for m, s in zip(shown["best_mean"], shown["best_std"])],
            f"Δ final vs {baseline} [{LEVEL:.0%} CI]": [
                "baseline" if b else ("—" if not has_base or math.isnan(d) else
                                      f"{d:+.4g} [{_g(lo, '+.4g')}, {_g(hi, '+.4g')}]" + (" *" if sig else ""))
                for b, d, lo, hi, sig in zip(shown["is_baseline"], shown["delta"], shown["ci_lo"], shown["ci_hi"],
                                             shown["significant"])],
            "reached target": [f"{r}/{n}" if task.target is not None else "—"
                               for r, n in zip(shown["reached"], shown["finished"])],
            "epochs to target": [_g(v, ".3g") for v in shown["epochs_to_target"]],
            "seconds to target": [_g(v, ".3g") for v in shown["seconds_to_target"]],
            "diverged": shown["diverged"], "failed": shown["failed"], "running": shown["running"],
        })
        if any(task_refs.values()):
            tab.insert(3, f"published {task.metric}", ["; ".join(f"{r.value_text()} {r.source}{r.detail()}" for r in task_refs[k]) or "—"
                                                       for k in shown["setting"]])
        blocks.append(("table", tab))
        used = {r.source: r for rl in task_refs.values() for r in rl}
        if used:
            blocks.append(("p", "Published: results of the same optimizer (and the hyperparameters the source fixes) "
                                "on this task, from the sources below; their protocol may differ from these runs'."))
            blocks.append(("links", [(r.source, r.url, "— " + r.citation) for r in used.values()]))
        if not has_base:
            blocks.append(("p", f"No completed {baseline} run on this task: no Δ column (choose with --baseline)."))
        blocks.append(("p", "Epochs/seconds to target: mean over the seeds that reached it (training time, "
                            "evaluation excluded); 'reached target' counts completed and diverged seeds."))
        slug = _slug(name)
        img = fig(f"{slug}_curves", F.curves_figure(rs, a, task, x, colors, task_refs) if figures else (None, 0))
        if img:
            blocks.append(("img", img, f"{name} curves"))
        blocks.append(("p", "Lines: mean over seeds; bands: ± one std. Minibatch loss is smoothed per seed "
                            "(EMA) before averaging."
                            + (" Dotted lines: published results." if used else "")
                            + (" Optimizers with more than four settings show only their best."
                               if len(F.plotted_settings(a)) < (a["seeds"] > 0).sum() else "")))
        img = fig(f"{slug}_adaptivity", F.adaptivity_figure(rs, a, task, colors) if figures else (None, 0))
        if img:
            blocks.append(("img", img, f"{name} logged beta2 and effective step size"))
        img = fig(f"{slug}_lr_sensitivity", F.lr_figure(a, rs.settings, task, colors) if figures else (None, 0))
        if img:
            blocks.append(("img", img, f"{name} learning-rate sensitivity"))
        multi = a.groupby("optimizer")["setting"].transform("size") > 1
        if multi.any():
            b = a[multi & a["is_best"]]
            tried = a[multi].groupby("optimizer").size()
            warns = grid_edge_warnings(a[multi].rename(columns={"sel_mean": "score"}), rs.settings)
            all_warnings += warns
            blocks += [("h", 3, f"Best setting per optimizer on {name}"),
                       ("p", f"Selected by the {select} {task.select_metric}: mean over seeds, a diverged seed "
                             "counting as the worst value (the rule `adaxbench best` uses)."),
                       ("table", pd.DataFrame({
                           "optimizer": b["optimizer"], "best setting": b["label"],
                           f"{select} {task.select_metric}": [_g(v) for v in b["sel_mean"]],
                           f"final {task.metric}": [_pm(m, s) for m, s in zip(b["final_mean"], b["final_std"])],
                           "settings tried": [int(tried[o]) for o in b["optimizer"]]}))]
            blocks += [("p", f"⚠ {w}") for w in warns]

    sched = {}
    for key in agg.loc[agg["seeds"] > 0, "setting"]:
        s = rs.settings[key]
        sc = F.beta2_schedule(s)
        if sc is not None:
            sched.setdefault(sc, s.get("optimizer.name"))
    if sched:
        items = [(n + ("" if n == sc[0] else f" ({sc[0]})")
                  + (f" β2={sc[1]:g}" if sc[0] != "adafactor" else f" c={sc[2]:g}"), sc, n)
                 for sc, n in sorted(sched.items(), key=lambda kv: (kv[1], kv[0][0], str(kv[0][1]), kv[0][2]))]
        blocks += [("h", 2, "β̂₂ schedules"),
                   ("p", "The weight 1 − β̂₂,t that each schedule present gives the newest squared gradient "
                         "(β̂₂,t: the effective second-moment weight, bias correction folded in), t = 1 to 1e6.")]
        img = fig("beta2_schedules", F.beta2_figure(items, colors) if figures else (None, 0))
        if img:
            blocks.append(("img", img, "beta2 schedules"))

    blocks.append(("h", 2, "Runs not included"))
    if excluded.empty:
        blocks.append(("p", "None: every run dir completed and was readable."))
    else:
        blocks += [("p", "Running, interrupted, diverged, failed or unreadable runs are not in the means above "
                         "(diverged seeds do count as misses in 'reached target')."),
                   ("table", excluded)]

    # CSVs: a row per run and a row per task × setting, with the hyperparameters as columns.
    summ = rs.runs.drop(columns=["setting", "sid", "overrides"]).join(scores.add_prefix("report."), how="left")
    cfg = pd.json_normalize([c if isinstance(c, dict) else {} for c in rs.configs]).add_prefix("config.")
    summ = pd.concat([summ.reset_index(drop=True), cfg], axis=1)
    summ.to_csv(outdir / "summary.csv", index=False)
    agg_out = pd.concat([agg.drop(columns=["setting"]).reset_index(drop=True),
                         _setting_columns(rs, agg["setting"]).add_prefix("config.")], axis=1)
    agg_out.to_csv(outdir / "aggregate.csv", index=False)
    rep.files += [outdir / "summary.csv", outdir / "aggregate.csv"]
    rep.summary, rep.aggregate = summ, agg

    if "md" in formats:
        (outdir / "report.md").write_text(to_markdown(blocks))
        rep.files.append(outdir / "report.md")
    if "html" in formats:
        (outdir / "report.html").write_text(to_html(blocks, outdir))
        rep.files.append(outdir / "report.html")
    rep.warnings = all_warnings
    rep.seconds = time.perf_counter() - t0
    return rep
