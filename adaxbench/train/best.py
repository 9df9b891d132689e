"""``adaxbench best SWEEP_DIR``: the winning setting per task x optimizer of a tuning sweep.

The DeepOBS / Crowded Valley protocol: score every setting of a grid on the validation
split (mean over its seeds, final or best value), keep the best per task and optimizer, and
rerun it with more seeds.  ``--write`` emits those reruns as a ready-to-launch script.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd

from ..report.aggregate import grid_edge_warnings, higher_is_better, run_scores, score_settings, split_metric, task_infos
from ..report.load import ReportError, load_runs
from .record import setting_overrides


def best_settings(sweep_dir: str | Path, metric: str | None = None, mode: str = "final") -> pd.DataFrame:
    """One row per (task, optimizer): the setting with the best mean selection score, by the
    rule ``adaxbench report`` uses (report.aggregate.score_settings): a diverged seed scores as
    the worst possible value; failed or unfinished runs are ignored.  ``metric=None``: each
    task's own validation metric (valid/<the task's metric>).  Winners on the edge of their grid
    are in ``.attrs["warnings"]``.
    """
    rs = load_runs([sweep_dir])
    runs = rs.runs[rs.runs["status"].isin(["completed", "diverged"]) & (rs.runs["problem"] == "")]
    if runs.empty:
        raise ReportError(f"no completed or diverged runs under {sweep_dir}")
    if metric is not None:
        split_metric(metric)
    infos = task_infos(rs, None, None)
    ev = rs.metrics.loc[rs.metrics["split"] != "batch", ["run", "split", "metric"]].drop_duplicates()
    logged = set(zip(rs.runs.loc[ev["run"].to_numpy(), "task"], ev["split"].astype(str) + "/" + ev["metric"].astype(str)))
    for task, info in infos.items():
        # Score on the asked metric, else the task's selection metric (task.select_metric where a
        # protocol names one, e.g. test/accuracy without a validation split); else a loss.
        want = metric or info.select_metric
        chosen = next((c for c in (want, info.select_metric, "valid/loss", "train/loss") if (task, c) in logged), want)
        info.metric = info.select_metric = chosen
        info.higher_better, info.target = higher_is_better(chosen), None
    scores = run_scores(rs, infos, select=mode)
    df = runs[["task", "optimizer", "setting", "status", "overrides"]].join(scores["sel"], how="left")
    df["overrides"] = df["overrides"].map(setting_overrides)
    scored = score_settings(df, {t: higher_is_better(i.metric) for t, i in infos.items()})

    rows = []
    for (task, opt), per_setting in scored.groupby(["task", "optimizer"], sort=True):
        win = per_setting[per_setting["is_best"]].iloc[0]
        first = df.index[(df["task"] == task) & (df["setting"] == win["setting"])][0]
        rows.append({"task": task, "optimizer": opt, "metric": infos[task].metric, "mode": mode,
                     "score": win["score"], "seeds": int(win["seeds"]),
                     "settings_tried": len(per_setting), "diverged": int(win["diverged"]),
                     "overrides": df.at[first, "overrides"]})
    out = pd.DataFrame(rows)
    out.attrs["warnings"] = grid_edge_warnings(scored, rs.settings)
    return out


def rerun_script(best: pd.DataFrame, seeds: int, sweep_root: str) -> str:
    lines = ["#!/usr/bin/env bash", "# Rerun the best setting per task x optimizer with more seeds "
             "(written by `adaxbench best`).", "set -euo pipefail"]
    seed_list = ",".join(str(s) for s in range(seeds))
    for row in best.itertuples():
        args = " ".join(shlex.quote(o) for o in row.overrides)
        out = shlex.quote(f"{sweep_root}/{row.task}_{row.optimizer}")
        lines.append(f"adaxbench run -m {args} seed={seed_list} hydra.sweep.dir={out}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaxbench best", description=(
        "Best setting per task x optimizer of a tuning sweep, scored on the validation split "
        "(mean over seeds; a diverged seed scores worst)."))
    parser.add_argument("sweep_dir")
    parser.add_argument("--metric", default=None, help="SPLIT/METRIC to select on (default: each task's validation "
                        "metric, valid/<the task's metric>; tasks without it fall back to valid/loss)")
    parser.add_argument("--mode", choices=("final", "best"), default="final",
                        help="score a run by its final or its best evaluation (default %(default)s)")
    parser.add_argument("--write", metavar="FILE", help="write the reruns as a ready-to-launch shell script")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per rerun (default %(default)s)")
    parser.add_argument("--rerun-dir", default=None, help="sweep dir root of the reruns (default SWEEP_DIR_best)")
    args = parser.parse_args(argv)
    try:
        if not Path(args.sweep_dir).is_dir():
            raise ReportError(f"no such sweep dir: {args.sweep_dir}")
        if args.seeds < 1:
            raise ReportError(f"--seeds must be >= 1, got {args.seeds}")
        best = best_settings(args.sweep_dir, args.metric, args.mode)
    except ReportError as e:
        print(f"adaxbench best: error: {e}", file=sys.stderr)
        return 2
    for row in best.itertuples():
        extra = f", {row.diverged} diverged" if row.diverged else ""
        print(f"{row.task:18s} {row.optimizer:16s} {row.metric} ({row.mode}) = {row.score:.4g} "
              f"[{row.seeds} seed(s){extra}; best of {row.settings_tried}]  {' '.join(row.overrides)}")
    for w in best.attrs.get("warnings", []):
        print(f"adaxbench best: warning: {w}", file=sys.stderr)
    if args.write:
        root = args.rerun_dir or str(Path(args.sweep_dir).resolve()) + "_best"
        Path(args.write).write_text(rerun_script(best, args.seeds, root))
        Path(args.write).chmod(0o755)
        print(f"wrote {args.write}: {len(best)} sweep(s) x {args.seeds} seeds")
    return 0
