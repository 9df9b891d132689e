"""``adaxbench best SWEEP_DIR``: the winning setting per task x optimizer of a tuning sweep.

The DeepOBS / Crowded Valley protocol: score every setting of a grid on the validation
split (mean over its seeds, final or best value), keep the best per task and optimizer, and
rerun it with more seeds.  ``--write`` emits those reruns as a ready-to-launch script.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import stat
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..rundir import RUN_FILE, Status, WriteError, setting_overrides, umask, write_text
from .aggregate import (grid_edge_warnings, higher_is_better, run_scores, score_settings, setting_labels,
                        split_metric, task_infos, worst_value)
from .load import ReportError, RunSet, load_runs, printable

# More reruns than this per setting is surely a typo (and a script line of that many seeds).
MAX_SEEDS = 10_000


def select_best(rs: RunSet, metric: str | None = None, mode: str = "final") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(best, excluded)``: one row per (task, optimizer) with the setting of the best mean
    selection score, and every run that could not be scored with the reason.

    The rule is the report's (``aggregate.score_settings``): a diverged seed scores as the worst
    possible value, so a setting that sometimes blows up cannot win on its surviving seeds;
    failed, unfinished, unreadable runs and completed runs without a finite score are not scored
    (they are in ``excluded``).  ``metric=None``: each task's own selection metric
    (valid/<the task's metric>, or ``task.select_metric``).  Winners on the edge of their grid
    are in ``best.attrs["warnings"]``.
    """
    if metric is not None:
        split_metric(metric)
    runs = rs.runs
    usable = runs["status"].isin([Status.COMPLETED.value, Status.DIVERGED.value]) & (runs["problem"] == "")
    if not usable.any():
        raise ReportError("no completed or diverged run with readable records")
    infos = task_infos(rs, None, None)
    ev = rs.metrics.loc[rs.metrics["split"] != "batch", ["run", "split", "metric"]].drop_duplicates()
    logged = set(zip(runs.loc[ev["run"].to_numpy(), "task"], ev["split"].astype(str) + "/" + ev["metric"].astype(str)))
    for task, info in infos.items():
        # Score on the asked metric, else the task's selection metric (task.select_metric where a
        # protocol names one, e.g. test/accuracy without a validation split); else a loss.
        # An asked --metric is never swapped for another: a task without it is not scored.
        fallbacks = (metric,) if metric else (info.select_metric, "valid/loss", "train/loss")
        chosen = next((c for c in fallbacks if (task, c) in logged), metric or info.select_metric)
        info.metric = info.select_metric = chosen
        info.higher_better, info.target = higher_is_better(chosen), None
    scores = run_scores(rs, infos, select=mode)
    df = runs[usable][["task", "optimizer", "setting", "seed", "status", "overrides", "path"]].join(scores["sel"], how="left")
    df = df[df["task"].isin(list(infos))]
    no_score = (df["status"] == Status.COMPLETED.value) & ~np.isfinite(df["sel"].astype(float))  # NaN or ±inf
    reasons = {i: runs.at[i, "problem"] or (runs.at[i, "error"] or f"status {runs.at[i, 'status']}")
               for i in runs.index[~usable]}
    reasons.update({i: f"no finite {infos[df.at[i, 'task']].metric} ({mode}) logged" for i in df.index[no_score]})
    reasons.update({i: "no evaluation metric logged" for i in runs.index[usable & ~runs["task"].isin(list(infos))]})
    excluded = pd.DataFrame({"path": [runs.at[i, "path"] for i in reasons], "status": [runs.at[i, "status"] for i in reasons],
                             "reason": list(reasons.values())})
    df = df[~no_score]
    if df.empty:
        asked = f" (no run logs {metric})" if metric and not any(metric == c for _, c in logged) else ""
        raise ReportError(f"no run with a finite selection score{asked}")
    df["overrides"] = df["overrides"].map(setting_overrides)
    hb = {t: higher_is_better(i.metric) for t, i in infos.items()}
    scored = score_settings(df, hb)
    seed_scores = df["sel"].where(df["status"] == Status.COMPLETED.value, df["task"].map(lambda t: worst_value(hb[t])))
    rows = []
    for (task, opt), per_setting in scored.groupby(["task", "optimizer"], sort=True):
        win = per_setting[per_setting["is_best"]].iloc[0]
        first = df.index[(df["task"] == task) & (df["setting"] == win["setting"])][0]
        rest = per_setting[~per_setting["is_best"]]["score"]
        runner = per_setting.loc[rest.idxmax() if hb[task] else rest.idxmin()] if len(rest) else None

        def by_seed(setting: str) -> pd.Series:
            sel = (df["task"] == task) & (df["setting"] == setting)
            return pd.Series(seed_scores[sel].to_numpy(), index=df.loc[sel, "seed"].to_numpy())

        rows.append({"task": task, "optimizer": opt, "metric": infos[task].metric, "mode": mode,
                     "score": win["score"], "seeds": int(win["seeds"]),
                     "settings_tried": len(per_setting), "diverged": int(win["diverged"]),
                     "overrides": df.at[first, "overrides"], "run_json": str(Path(df.at[first, "path"]) / RUN_FILE),
                     "config": rs.configs[first], "setting": win["setting"],
                     **margin_over_runner_up(by_seed(win["setting"]),
                                             None if runner is None else by_seed(runner["setting"])),
                     "runner_up": None if runner is None else runner["setting"],
                     "sampled": sampled_sweep(df.at[first, "path"])})
    best = pd.DataFrame(rows)
    # A sampled search (Optuna) tries continuous values: "the largest tried" says nothing of a grid.
    best.attrs["warnings"] = grid_edge_warnings(scored[~scored["setting"].isin(sampled_settings(df))], rs.settings)
    best.attrs["scored"] = scored.assign(metric=scored["task"].map(lambda t: infos[t].metric))
    best.attrs["labels"] = {k: v for _, g in scored.groupby("task") for k, v in setting_labels(g, rs.settings).items()}
    return best, excluded


TIE_SE = 2.0  # a margin under 2 standard errors of the difference is a tie within the seed noise


def margin_over_runner_up(win: pd.Series, runner: pd.Series | None) -> dict[str, Any]:
    """The winner's margin over the runner-up beside the seed noise, from their per-seed scores
    (index = seed; a diverged seed is ±inf).

    ``noise`` is the standard error of the difference of the means: of the paired differences
    where both settings ran the same seeds (same init and data order, so the seed effect cancels),
    else Welch's sqrt(s1²/n1 + s2²/n2).  ``seed_sd`` is the winner's sd across its seeds.
    ``verdict``: no runner-up, noise-limited (a single tuning seed: the noise is unknown), diverged
    (a side has a diverged seed, the margin is not a number to weigh), tied (margin < 2 SE) or clear.
    """
    out: dict[str, Any] = {"margin": np.nan, "noise": np.nan, "seed_sd": np.nan, "paired": False, "verdict": "no runner-up"}
    if runner is None:
        return out
    out["margin"] = abs(win.mean() - runner.mean()) if np.isfinite(win.mean()) or np.isfinite(runner.mean()) else np.nan
    if not (np.isfinite(win).all() and np.isfinite(runner).all()):
        out["verdict"] = "diverged"
        return out
    out["seed_sd"] = win.std(ddof=1) if len(win) > 1 else np.nan
    if min(len(win), len(runner)) < 2:
        out["verdict"] = "noise-limited"
        return out
    paired = sorted(win.index) == sorted(runner.index) and win.index.is_unique and runner.index.is_unique
    if paired:
        d = win - runner.reindex(win.index)
        noise = d.std(ddof=1) / np.sqrt(len(d))
    else:
        noise = np.sqrt(win.var(ddof=1) / len(win) + runner.var(ddof=1) / len(runner))
    out.update(noise=float(noise), paired=paired, verdict="tied" if out["margin"] < TIE_SE * noise or out["margin"] == 0 else "clear")
    return out


def margin_text(row: Any, labels: dict[str, str] | None = None) -> str:
    """One sentence on a winner's margin (a row of ``select_best``'s first frame)."""
    if row.verdict == "no runner-up":
        return "one setting tried: no runner-up"
    runner = (labels or {}).get(row.runner_up, "the runner-up")
    if row.verdict == "diverged":
        return f"vs {runner}: a seed diverged, so the margin is not weighed against the noise"
    head = f"margin {row.margin:.3g} over {runner}"
    if row.verdict == "noise-limited":
        return f"{head}; one tuning seed: the choice is noise-limited (the seed noise is unknown; use >= 2 seeds)"
    how = "paired over the shared seeds" if row.paired else "Welch, unpaired seeds"
    noise = f"seed noise: SE of the difference {row.noise:.3g} ({how}), sd across seeds {row.seed_sd:.3g}"
    if row.verdict == "tied":
        return f"{head}; {noise}: tied within noise (margin < {TIE_SE:g} SE)"
    ratio = f"{row.margin / row.noise:.1f} SE" if row.noise > 0 else "every seed agrees"
    return f"{head}; {noise}: margin = {ratio}"


def run_score(run_dir: str | Path, direction: str | None = None) -> float:
    """The selection score of one run, as ``best`` scores it (``--mode final``): what a sweep job
    returns to an optimizing sweeper (Optuna).  A diverged, failed or unscored run gets the worst
    value for ``direction`` (``minimize``: +inf, ``maximize``: -inf; default: the metric's own
    direction), so the study goes on and never prefers it."""
    score, maximize = math.nan, direction == "maximize"
    try:
        row = select_best(load_runs([run_dir]))[0].iloc[0]
        score = float(row["score"])
        maximize = higher_is_better(row["metric"]) if direction is None else maximize
    except ReportError:
        pass
    return score if math.isfinite(score) else worst_value(maximize)


def wants_scores(sweeper: Any) -> bool:
    """Whether a sweeper (``hydra.sweeper`` config) reads its jobs' returns: the basic sweeper's grid
    does not, so its jobs skip scoring (a report's load per job)."""
    return not str(sweeper.get("_target_", "")).endswith("BasicSweeper")


def sweep_score(run_dir: str | Path, sweeper: Any) -> float:
    """What a sweep job returns to an optimizing sweeper (``hydra.sweeper`` config, see
    ``wants_scores``): the run's selection score, the worst value for the sweeper's ``direction``
    where the run diverged or failed (Optuna's study goes on)."""
    direction = sweeper.get("direction") if "direction" in sweeper else None
    return run_score(run_dir, str(direction) if isinstance(direction, str) else None)


def sampled_sweep(run_dir: str | Path) -> bool:
    """Whether the run came from a sweeper that samples a search space (Optuna...) rather than
    the basic sweeper's grid, read from its ``.hydra/hydra.yaml``."""
    try:
        from omegaconf import OmegaConf
        target = OmegaConf.load(Path(run_dir) / ".hydra" / "hydra.yaml").hydra.sweeper.get("_target_", "")
    except Exception:  # no Hydra record (the Python API), or an unreadable one: a grid
        return False
    return bool(target) and not target.endswith("BasicSweeper")


def sampled_settings(runs: pd.DataFrame) -> set[str]:
    """The settings (of ``runs``: columns setting, path) that a sampling sweeper proposed."""
    first = runs.drop_duplicates("setting")
    return {row.setting for row in first.itertuples() if sampled_sweep(row.path)}


def best_settings(sweep_dir: str | Path, metric: str | None = None, mode: str = "final") -> pd.DataFrame:
    """One row per (task, optimizer): the setting with the best mean selection score."""
    return select_best(load_runs([sweep_dir]), metric, mode)[0]


def best_per_task(best: pd.DataFrame) -> pd.DataFrame:
    """Of the per-optimizer winners, the best one on each task."""
    rows = []
    for _, g in best.groupby("task", sort=True):
        hb = higher_is_better(g["metric"].iloc[0])
        rows.append(g.loc[g["score"].idxmax() if hb else g["score"].idxmin()])
    return pd.DataFrame(rows)


def _is_config_path(key: str, config: dict[str, Any]) -> bool:
    """``key`` names a value of the run's config (``optimizer.lr``) or a config group (``setting/deepobs``)."""
    d: Any = config
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            break
        d = d[part]
    else:
        return True
    if "." in key:
        return False
    group = resources.files("adaxbench.configs").joinpath(*key.split("/"))
    return group.is_dir()


def override_problem(override: str, config: dict[str, Any], allow_targets: bool = False) -> str | None:
    """Why ``override`` may not go into a rerun script, or None for a plain ``key=value`` (or
    ``+key=value``, or ``++key=value`` as the Python API records its keyword hyperparameters)
    override of this config with a single literal value, as sweep jobs record.

    A run.json is data anyone with write access to the sweep dir can edit; a ``_target_`` or a
    dict/list value in it names code the script would run, so those need ``allow_targets``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    if override.startswith("-") or any(c in override for c in "\n\r\0"):
        return "it is not a key=value override"
    try:
        ov = OverridesParser.create().parse_override(override)
    except Exception as e:  # Hydra's parser raises its own exception types
        return f"Hydra cannot parse it ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if ov.type not in (OverrideType.CHANGE, OverrideType.ADD, OverrideType.FORCE_ADD):
        return "only key=value, +key=value and ++key=value overrides are rerun"
    if ov.is_sweep_override():
        return "a sweep job records single values, not sweeps"
    if "${" in override:
        return "interpolations are not rerun"
    if not allow_targets:
        if "_target_" in override:
            return "it sets a _target_ (code to import and call)"
        if isinstance(ov.value(), (dict, list)):
            return "its value is a dict or list literal, which can carry a _target_"
    if not _is_config_path(ov.key_or_group, config):
        return f"{ov.key_or_group} is not a key of the run's config"
    return None


def check_rerun_overrides(best: pd.DataFrame, allow_targets: bool = False) -> None:
    """ReportError naming the run.json whose overrides cannot be written into a script."""
    for row in best.itertuples():
        for o in row.overrides:
            if (why := override_problem(o, row.config, allow_targets)) is not None:
                hint = ("; check that run.json, then pass --allow-targets to write it anyway"
                        if not allow_targets and override_problem(o, row.config, True) is None else "")
                raise ReportError(f"{row.run_json}: refusing to write override {o!r} into a script: {why}{hint}")


def rerun_script(best: pd.DataFrame, seeds: int, sweep_root: str, allow_targets: bool = False) -> str:
    check_rerun_overrides(best, allow_targets)
    lines = ["#!/usr/bin/env bash", "# Rerun the best setting per task x optimizer with more seeds "
             "(written by `adaxbench best`).", "set -euo pipefail"]
    seed_list = ",".join(str(s) for s in range(seeds))
    for row in best.itertuples():
        args = " ".join(shlex.quote(o) for o in row.overrides)
        root = f"{sweep_root}/{_dir_name(row.task)}_{_dir_name(row.optimizer)}"
        if not row.sampled:
            lines.append(f"adaxbench run -m {args} seed={seed_list} {shlex.quote('hydra.sweep.dir=' + _hydra_string(root))}")
            continue
        # The runs' sweeper (Optuna, perhaps set by an experiment preset) would sample the seeds as a
        # search space; one plain run per seed runs each exactly once.
        lines += [f"adaxbench run {args} seed={s} {shlex.quote('hydra.run.dir=' + _hydra_string(f'{root}/{s}'))}"
                  for s in range(seeds)]
    return "\n".join(lines) + "\n"


def _dir_name(name: str) -> str:
    """A task or optimizer name as one folder name: no ``/``, no ``..``, nothing the shell or Hydra reads."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).lstrip(".") or "_"


def _hydra_string(value: str) -> str:
    """``value`` as one quoted string of Hydra's override grammar: a comma is not a sweep, ``${`` no
    interpolation, ``=`` and spaces plain characters."""
    if re.fullmatch(r"[A-Za-z0-9_/.:+@-]+", value):  # nothing Hydra reads specially: as it is
        return value
    value = re.sub(r"(\\+)(?='|$)", r"\1\1", value)  # backslashes before a quote are escaped in pairs
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def _check_script_path(path: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise ReportError(f"--write {path} is a directory; give a file name, e.g. {p / 'rerun.sh'}")
    if not p.parent.is_dir():
        raise ReportError(f"--write {path}: folder {p.parent} does not exist")
    if p.is_symlink() or (p.exists() and not stat.S_ISREG(p.lstat().st_mode)):
        raise ReportError(f"--write {path} exists and is not a regular file (a link, device or pipe); "
                          "give the path of a new or a regular file")


def write_script(path: str, script: str) -> None:
    """Write ``script`` atomically: a new file is executable as far as the umask allows; an
    existing file keeps its mode (never widened)."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        mode = 0o777 & ~umask()
    write_text(path, script, mode=mode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaxbench best", description=(
        "Best setting per task x optimizer of a tuning sweep, scored on the validation split "
        "(mean over seeds; a diverged seed scores worst)."))
    parser.add_argument("sweep_dir")
    parser.add_argument("--metric", default=None, help="SPLIT/METRIC to select on (default: each task's "
                        "task.select_metric, else valid/<the task's metric>, else train/<the task's metric>; where none "
                        "of them is logged, valid/loss, else train/loss)")
    parser.add_argument("--mode", choices=("final", "best"), default="final",
                        help="score a run by its final or its best evaluation (default %(default)s)")
    parser.add_argument("--write", metavar="FILE", help="write the reruns as a ready-to-launch shell script")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per rerun (default %(default)s)")
    parser.add_argument("--rerun-dir", default=None, help="sweep dir root of the reruns (default SWEEP_DIR_best)")
    parser.add_argument("--allow-targets", action="store_true", help="let --write copy overrides that set a _target_ "
                        "or a dict/list value from the runs' run.json into the script (check those files first)")
    parser.add_argument("--effort", metavar="DIR", help="write tuning-effort curves (expected best score after k "
                        "grid points drawn, Dodge et al. 2019) to DIR/effort.csv and DIR/effort.png")
    args = parser.parse_args(argv)
    try:
        if not Path(args.sweep_dir).is_dir():
            raise ReportError(f"no such sweep dir: {args.sweep_dir}")
        if not 1 <= args.seeds <= MAX_SEEDS:
            raise ReportError(f"--seeds must be in [1, {MAX_SEEDS}], got {args.seeds}")
        if args.write:
            _check_script_path(args.write)
        rs = load_runs([args.sweep_dir])
        best, excluded = select_best(rs, args.metric, args.mode)
        script = None
        if args.write:
            root = args.rerun_dir or str(Path(args.sweep_dir).resolve()) + "_best"
            script = rerun_script(best, args.seeds, root, args.allow_targets)
    except ReportError as e:
        print(f"adaxbench best: error: {e}", file=sys.stderr)
        return 2
    for row in best.itertuples():
        extra = f", {row.diverged} diverged" if row.diverged else ""
        print(f"{row.task:18s} {row.optimizer:16s} {row.metric} ({row.mode}) = {row.score:.4g} "
              f"[{row.seeds} seed(s){extra}; best of {row.settings_tried}]  {' '.join(row.overrides)}")
        print(f"{'':35s} {margin_text(row, best.attrs['labels'])}")
    for note in rs.notes:  # e.g. two classes of one name, told apart
        print(f"adaxbench best: note: {note}", file=sys.stderr)
    for w in best.attrs.get("warnings", []):
        print(f"adaxbench best: warning: {w}", file=sys.stderr)
    if len(excluded):
        print(f"Runs not included ({len(excluded)}):")
        for row in excluded.itertuples():
            print(f"  {printable(row.path)}: {printable(row.reason)}")
    if script is not None:
        try:
            _check_script_path(args.write)  # again: the path may have changed while the runs were read
            write_script(args.write, script)
        except ReportError as e:
            print(f"adaxbench best: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # a WriteError names the file
            reason = e if isinstance(e, WriteError) else f"cannot write {args.write}: {e.strerror or e}"
            print(f"adaxbench best: error: {reason}", file=sys.stderr)
            return 2
        print(f"wrote {args.write}: {len(best)} sweep(s) x {args.seeds} seeds")
    if args.effort:
        from .effort import effort_curves, write_effort

        try:
            files = write_effort(effort_curves(best.attrs["scored"]), Path(args.effort))
        except OSError as e:
            print(f"adaxbench best: error: cannot write to {args.effort}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(f"wrote {', '.join(map(str, files))}")
    return 0
