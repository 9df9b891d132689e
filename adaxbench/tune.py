"""``adaxbench tune``: the DeepOBS learning-rate tuning protocol end to end, resumable.

Per task and optimizer (Schneider et al. 2019, DeepOBS §3, with the seed discipline of
Sivaprasad et al. 2020):

1. a log-spaced lr grid around a centre (a quarter decade apart by default), every point trained
   with the tuning seeds (2 by default) and ranked by its mean validation score (``best``'s rule);
2. while an optimizer's winner sits on an edge of its grid, the grid grows past that edge
   (``--widen-points`` points per round, at most ``--max-widenings`` rounds);
3. each winner is trained again with evaluation seeds disjoint from the tuning seeds (10 by default);
4. ``adaxbench report`` of the evaluation runs, and tuning-effort curves of the tuning runs.

Every stage is an ``adaxbench run -m`` sweep (any launcher) into a directory of its own under OUT
whose name says what it holds, so relaunching the same command skips the finished runs, resumes the
interrupted ones and takes the same decisions again.  OUT/tune.json and OUT/tune.md record each
stage's choices: grids, widenings, winners with their margins, evaluation seeds.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ConfigError

EVAL_SEED_START = 1000  # evaluation seeds 1000, 1001, ...: disjoint from any tuning seed count < 1000
PROTOCOL_KEYS = ("tasks", "optimizers", "overrides", "lr_centre", "lr_decades", "per_decade", "tuning_seeds",
                 "eval_seeds", "max_widenings", "widen_points", "metric", "mode")
# Set by the protocol itself; an extra override may not set them.
OWN_KEYS = ("task", "optimizer", "optimizer.lr", "seed", "hydra.sweep.dir", "hydra.sweep.subdir")


class TuneError(ValueError):
    """Bad input or a tuning dir that does not fit the command; one line for the user."""


def lr_at(centre: float, per_decade: int, k: int) -> float:
    """Grid point k: centre x 10^(k / per_decade), to 4 significant digits (as written in overrides)."""
    return float(f"{centre * 10 ** (k / per_decade):.4g}")


def _lr_text(lr: float) -> str:
    return f"{lr:g}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block
        self.exit(2, f"adaxbench tune: error: {message} (see adaxbench tune --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaxbench tune", description=(
        "Tune the learning rate of each optimizer on each task (DeepOBS's protocol): a log-spaced grid "
        "with several tuning seeds, widened while the winner sits on its edge, then the winners with "
        "fresh evaluation seeds, the report and tuning-effort curves.  Relaunch the same command to "
        "resume after an interruption."),
        epilog="KEY=VALUE: extra overrides for every run, e.g. trainer.epochs=2 hydra/launcher=packed")
    p.add_argument("--tasks", required=True, help="comma-separated task names (adaxbench list)")
    p.add_argument("--optimizers", required=True, help="comma-separated optimizer names")
    p.add_argument("--out", default="runs/tune", help="output dir; relaunch into it to resume (default %(default)s)")
    p.add_argument("--lr-centre", type=float, default=1e-3, help="centre of the lr grid (default %(default)g)")
    p.add_argument("--lr-decades", type=float, default=1.0,
                   help="the grid spans this many decades each side of the centre (default %(default)g)")
    p.add_argument("--per-decade", type=int, default=4, help="grid points per decade (default 4: 10^(k/4))")
    p.add_argument("--tuning-seeds", type=int, default=2, help="seeds per grid point (0..N-1; default %(default)s)")
    p.add_argument("--eval-seeds", type=int, default=10,
                   help=f"evaluation seeds per winner ({EVAL_SEED_START}.. ; default %(default)s)")
    p.add_argument("--max-widenings", type=int, default=3, help="rounds of widening at most (default %(default)s)")
    p.add_argument("--widen-points", type=int, default=2, help="grid points added per widening (default %(default)s)")
    p.add_argument("--metric", default=None, help="SPLIT/METRIC to select on (default: each task's validation metric)")
    p.add_argument("--mode", choices=("final", "best"), default="final", help="score a run by its final or best value")
    p.add_argument("--baseline", default=None, help="the report's baseline optimizer (default: the first optimizer)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return p


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise TuneError(f"--{what} {text!r}: give distinct comma-separated names, e.g. --{what} a,b")
    return names


def _check_override(o: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if o.startswith("-"):
        raise TuneError(f"unknown option {o} (see adaxbench tune --help)")
    try:
        ov = OverridesParser.create().parse_override(o)
    except Exception as e:  # Hydra's parser raises its own exception types
        raise TuneError(f"cannot parse override {o!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if ov.is_sweep_override():
        raise TuneError(f"override {o!r} sweeps; tune sweeps only the lr and the seeds (one value per key)")
    if ov.key_or_group in OWN_KEYS:
        raise TuneError(f"override {o!r}: tune sets {ov.key_or_group} itself (use --tasks, --optimizers, --lr-*, --*-seeds, --out)")


def protocol_of(a: argparse.Namespace) -> dict[str, Any]:
    """The protocol as tune.json records it, checked; TuneError for bad input."""
    tasks, optimizers = _names(a.tasks, "tasks"), _names(a.optimizers, "optimizers")
    if not (math.isfinite(a.lr_centre) and a.lr_centre > 0):
        raise TuneError(f"--lr-centre must be a positive number, got {a.lr_centre:g}")
    if not (math.isfinite(a.lr_decades) and a.lr_decades >= 0):
        raise TuneError(f"--lr-decades must be >= 0, got {a.lr_decades:g}")
    for name, value, low in (("per-decade", a.per_decade, 1), ("tuning-seeds", a.tuning_seeds, 1),
                             ("eval-seeds", a.eval_seeds, 1), ("max-widenings", a.max_widenings, 0),
                             ("widen-points", a.widen_points, 1)):
        if value < low:
            raise TuneError(f"--{name} must be >= {low}, got {value}")
    if a.tuning_seeds > EVAL_SEED_START:
        raise TuneError(f"--tuning-seeds must be <= {EVAL_SEED_START} (evaluation seeds start at {EVAL_SEED_START})")
    for o in a.overrides:
        _check_override(o)
    if a.metric is not None:
        from .report.aggregate import split_metric
        from .report.load import ReportError

        try:
            split_metric(a.metric)
        except ReportError as e:
            raise TuneError(str(e)) from None
    from .rundir import setting_overrides

    return {"tasks": tasks, "optimizers": optimizers, "overrides": setting_overrides(a.overrides),
            "lr_centre": a.lr_centre, "lr_decades": a.lr_decades, "per_decade": a.per_decade,
            "tuning_seeds": list(range(a.tuning_seeds)),
            "eval_seeds": list(range(EVAL_SEED_START, EVAL_SEED_START + a.eval_seeds)),
            "max_widenings": a.max_widenings, "widen_points": a.widen_points, "metric": a.metric, "mode": a.mode}


def _by_choice(runs: Any, choices: list[str]) -> dict[str, str]:
    """``{--optimizers entry: recorded name}`` from each run's ``optimizer=ENTRY`` override, where they differ."""
    names = {}
    for overrides, recorded in zip(runs["overrides"], runs["optimizer"]):
        for o in overrides:
            key, _, value = o.partition("=")
            if key == "optimizer" and value in choices and value != recorded:
                names[value] = recorded
    return names


def _check_names(protocol: dict[str, Any], overrides: list[str], config_options: Callable[..., list[str]]) -> None:
    for group, names in (("task", protocol["tasks"]), ("optimizer", protocol["optimizers"])):
        known = config_options(group, overrides)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise TuneError(f"unknown {group} {', '.join(unknown)}; available: {', '.join(known)}")


class Tuning:
    """One tuning dir: its protocol, the sweeps it launches and the record of its choices."""

    def __init__(self, out: Path, protocol: dict[str, Any], launch_overrides: list[str], baseline: str | None,
                 run: Callable[..., int]):
        self.out, self.p, self.run = out, protocol, run
        self.launch_overrides = launch_overrides  # Hydra's and bookkeeping overrides (launcher, threads): no part of a setting
        self.baseline = baseline or protocol["optimizers"][0]
        self.recorded_names: dict[str, str] = {}  # --optimizers entry -> the name its runs record
        self.failed = 0
        self.state: dict[str, Any] = {"protocol": protocol, "stage": "tuning", "tasks": {}}

    # ---- sweeps ---------------------------------------------------------------------------------
    def sweep(self, sweep_dir: Path, overrides: list[str], runs: int) -> None:
        """``adaxbench run -m OVERRIDES hydra.sweep.dir=SWEEP_DIR``, unless all ``runs`` finished."""
        from .rundir import FINISHED
        from .train import sweep

        finished = {s.value for s in FINISHED}
        if sweep_dir.is_dir():
            statuses = sweep.job_statuses(sweep_dir)
            if len(statuses) == runs and set(statuses.values()) <= finished:
                print(f"tune: {sweep_dir}: all {runs} runs finished", flush=True)
                return
        print(f"tune: {sweep_dir}: {runs} run(s)", flush=True)
        code = self.run(self.run_args(sweep_dir, overrides), print_best=False)
        if code == 2 or sweep.LAST_SUMMARY is None:
            raise TuneError(f"the sweep into {sweep_dir} did not start (see above)")
        if sweep.LAST_SUMMARY[sweep.ELSEWHERE]:
            raise TuneError(f"another process is training runs of {sweep_dir}; relaunch when it has finished")
        self.failed += sweep.failed_count(sweep.LAST_SUMMARY)

    def run_args(self, sweep_dir: Path, overrides: list[str]) -> list[str]:
        """The ``adaxbench run`` command line of a sweep into ``sweep_dir``."""
        return ["-m", *overrides, *self.launch_overrides, f"hydra.sweep.dir={sweep_dir}"]

    def tuning_overrides(self, task: str, optimizers: list[str], lrs: list[float], seeds: list[int]) -> list[str]:
        return [f"task={task}", f"optimizer={','.join(optimizers)}", f"optimizer.lr={','.join(map(_lr_text, lrs))}",
                f"seed={','.join(map(str, seeds))}", *self.p["overrides"]]

    def check(self, check_run: Callable[[list[str]], None]) -> None:
        """Every task's sweep as ``adaxbench run`` checks it, before anything is written: one lr and seed
        stand for the grid (lrs and seeds are tune's own numbers, checked by ``protocol_of``)."""
        p = self.p
        for task in p["tasks"]:
            overrides = self.tuning_overrides(task, p["optimizers"], [p["lr_centre"]], p["tuning_seeds"][:1])
            try:
                check_run(self.run_args(self.out / "tuning" / task / "grid", overrides))
            except ConfigError as e:  # in adaxbench run's words, naming the task where they do not
                said = str(e)
                raise TuneError(said if f"task={task} " in said else f"{said} (in the sweep of task {task})") from None

    def tuning_sweep(self, sweep_dir: Path, task: str, optimizers: list[str], lrs: list[float]) -> None:
        seeds = self.p["tuning_seeds"]
        self.sweep(sweep_dir, self.tuning_overrides(task, optimizers, lrs, seeds),
                   len(optimizers) * len(lrs) * len(seeds))

    # ---- stages ---------------------------------------------------------------------------------
    def select(self, dirs: list[Path]):
        from .report.best import select_best
        from .report.load import load_runs

        rs = load_runs(dirs)
        self.recorded_names.update(_by_choice(rs.runs, self.p["optimizers"]))
        best, _ = select_best(rs, self.p["metric"], self.p["mode"])
        by_choice = best.assign(optimizer=best["optimizer"].map(self.choice_of)).set_index("optimizer")
        by_choice.attrs = best.attrs
        return by_choice, rs.settings

    def choice_of(self, recorded: str) -> str:
        """The ``--optimizers`` entry a recorded optimizer name ran as (``custom`` records its class's name)."""
        return next((c for c, name in self.recorded_names.items() if name == recorded), recorded)

    def tune_task(self, task: str) -> None:
        p, per = self.p, self.p["per_decade"]
        half = round(p["lr_decades"] * per)
        grids = {o: list(range(-half, half + 1)) for o in p["optimizers"]}

        def at(k: int) -> float:
            return lr_at(p["lr_centre"], per, k)

        root = self.out / "tuning" / task
        dirs = [root / "grid"]
        record: dict[str, Any] = {o: {"widenings": []} for o in p["optimizers"]}
        self.state["tasks"][task] = {"sweeps": [], "optimizers": record}
        self.tuning_sweep(dirs[0], task, p["optimizers"], [at(k) for k in range(-half, half + 1)])
        for round_ in range(1, p["max_widenings"] + 2):
            best, settings = self.select(dirs)
            widen = {}
            for o in p["optimizers"]:
                rec, grid = record[o], grids[o]
                rec["lrs"] = [at(k) for k in sorted(grid)]
                if o not in best.index:
                    rec["edge"] = "no run of this optimizer could be scored"
                    continue
                row = best.loc[o]
                win_lr = float(settings[row["setting"]]["optimizer.lr"])
                k_win = next(k for k in grid if math.isclose(at(k), win_lr, rel_tol=1e-9))
                rec["winner"] = self._winner(row, win_lr, best.attrs["labels"])
                side = [s for s, k in (("smallest", min(grid)), ("largest", max(grid))) if k_win == k]
                if not np.isfinite(row["score"]):
                    rec["edge"] = "every setting diverged: not widened"
                elif side and round_ <= p["max_widenings"]:
                    new = sorted(k for s in side for k in (range(max(grid) + 1, max(grid) + 1 + p["widen_points"])
                                 if s == "largest" else range(min(grid) - p["widen_points"], min(grid))))
                    widen[o] = new
                    rec["widenings"].append({"round": round_, "winner_lr": win_lr, "edge": " and ".join(side),
                                             "added": [at(k) for k in new]})
                elif side:
                    rec["edge"] = (f"the winner is still the {' and '.join(side)} lr tried after "
                                   f"{p['max_widenings']} widening(s): the optimum may lie outside the grid")
                else:
                    rec["edge"] = None
            self.state["tasks"][task]["sweeps"] = [str(d.relative_to(self.out)) for d in dirs]
            self.write_state()
            if not widen:
                break
            for o, new in widen.items():
                lrs = [at(k) for k in new]
                d = root / f"widen_{o}_lr{_lr_text(lrs[0])}-{_lr_text(lrs[-1])}"
                print(f"tune: {task} / {o}: best lr {record[o]['winner']['lr']:g} is the "
                      f"{record[o]['widenings'][-1]['edge']} of the grid: adding {', '.join(map(_lr_text, lrs))}")
                self.tuning_sweep(d, task, [o], lrs)
                dirs.append(d)
                grids[o] += new

    @staticmethod
    def _winner(row: Any, win_lr: float, labels: dict[str, str]) -> dict[str, Any]:
        from .report.best import margin_text

        num = lambda v: float(v) if v is not None and np.isfinite(v) else None  # noqa: E731 (JSON: no NaN)
        text = margin_text(row, labels)
        return {"lr": win_lr, "metric": row["metric"], "mode": row["mode"], "score": num(row["score"]),
                "seeds": int(row["seeds"]), "runner_up": labels.get(row["runner_up"]), "margin": num(row["margin"]),
                "noise_se": num(row["noise"]), "seed_sd": num(row["seed_sd"]), "paired": bool(row["paired"]),
                "verdict": row["verdict"], "text": text}

    def evaluate(self) -> list[Path]:
        self.state["stage"] = "evaluating"
        self.write_state()
        dirs = []
        seeds = self.p["eval_seeds"]
        for task, t in self.state["tasks"].items():
            for o, rec in t["optimizers"].items():
                if "winner" not in rec:
                    continue
                d = self.out / "eval" / task / o
                rec["eval_dir"] = str(d.relative_to(self.out))
                self.sweep(d, [f"task={task}", f"optimizer={o}", f"optimizer.lr={_lr_text(rec['winner']['lr'])}",
                               f"seed={','.join(map(str, seeds))}", *self.p["overrides"]], len(seeds))
                dirs.append(d)
        return dirs

    def report(self, eval_dirs: list[Path]) -> None:
        from .report.cli import main as report_main
        from .report.effort import effort_curves, write_effort

        self.state["stage"] = "reporting"
        self.write_state()
        if not eval_dirs:
            raise TuneError("no optimizer has a tuned lr (no tuning run could be scored): nothing to evaluate; "
                            f"see {self.out / 'tune.md'}")
        baseline = self.recorded_names.get(self.baseline, self.baseline)
        args = [*map(str, eval_dirs), "--out", str(self.out / "report"), "--baseline", baseline]
        if report_main(args) != 0:
            raise TuneError(f"the report of {self.out / 'eval'} failed (see above); rerun: adaxbench report {' '.join(args)}")
        self.state["report"] = "report/report.md"
        scored = [self.select([self.out / s for s in t["sweeps"]])[0].attrs["scored"] for t in self.state["tasks"].values()]
        import pandas as pd

        files = write_effort(effort_curves(pd.concat(scored, ignore_index=True)), self.out)
        self.state["effort"] = [str(f.relative_to(self.out)) for f in files]
        self.state["stage"] = "done"
        self.write_state()

    # ---- the record -----------------------------------------------------------------------------
    def write_state(self) -> None:
        from .rundir import atomic_write, write_json

        write_json(self.out / "tune.json", self.state)
        atomic_write(self.out / "tune.md", lambda tmp: Path(tmp).write_text(self.markdown()))

    def markdown(self) -> str:
        p = self.p
        seeds = lambda s: f"{s[0]}–{s[-1]}" if len(s) > 1 else str(s[0])  # noqa: E731
        lines = ["# lr tuning", "",
                 f"Stage: **{self.state['stage']}**.  Relaunch the same `adaxbench tune` command to resume.", "",
                 f"- tasks: {', '.join(p['tasks'])}; optimizers: {', '.join(p['optimizers'])}",
                 f"- extra overrides: {' '.join(p['overrides']) or 'none'}",
                 f"- grid: lr = {p['lr_centre']:g} × 10^(k/{p['per_decade']}), {p['lr_decades']:g} decade(s) each side; "
                 f"widened by {p['widen_points']} point(s) past an edge holding the winner, at most "
                 f"{p['max_widenings']} time(s)",
                 f"- tuning seeds: {seeds(p['tuning_seeds'])} ({len(p['tuning_seeds'])} per lr); evaluation seeds: "
                 f"{seeds(p['eval_seeds'])} ({len(p['eval_seeds'])}, disjoint from the tuning seeds)",
                 f"- selection: {p['metric'] or 'each task’s validation metric'} ({p['mode']} value), mean over "
                 "the tuning seeds; a diverged seed scores worst", ""]
        if len(p["tuning_seeds"]) < 2:
            lines += ["**One tuning seed: every choice below is noise-limited.**", ""]
        for task, t in self.state["tasks"].items():
            lines += [f"## {task}", "", f"Tuning sweeps: {', '.join(f'`{s}`' for s in t['sweeps'])}", "",
                      "| optimizer | lrs tried | widenings | winner lr | score | margin over the runner-up | evaluation |",
                      "|---|---|---|---|---|---|---|"]
            for o, rec in t["optimizers"].items():
                lrs = rec.get("lrs", [])
                tried = f"{len(lrs)}: {lrs[0]:g} … {lrs[-1]:g}" if lrs else "–"
                wid = "; ".join(f"{w['edge']} edge at {w['winner_lr']:g} → +{', '.join(f'{x:g}' for x in w['added'])}"
                                for w in rec["widenings"]) or "none"
                win = rec.get("winner")
                score = f"{win['metric']} {win['score']:.4g}" if win and win["score"] is not None else "–"
                lines.append(f"| {o} | {tried} | {wid} | {win['lr']:g} | {score} | {win['text']} | "
                             f"{'`' + rec['eval_dir'] + '`' if rec.get('eval_dir') else '–'} |" if win else
                             f"| {o} | {tried} | {wid} | – | – | {rec.get('edge') or '–'} | – |")
            notes = [f"- {o}: {rec['edge']}" for o, rec in t["optimizers"].items() if rec.get("edge") and rec.get("winner")]
            lines += ["", *notes, ""] if notes else [""]
        if self.state.get("report"):
            lines += [f"Report of the evaluation runs: [{self.state['report']}]({self.state['report']}).", ""]
        if self.state.get("effort"):
            lines += ["Tuning-effort curves (expected best validation score after k lrs drawn from the grid, "
                      "Dodge et al. 2019): " + ", ".join(f"[{f}]({f})" for f in self.state["effort"]) + ".", ""]
        return "\n".join(lines)


def _resume_check(out: Path, protocol: dict[str, Any]) -> None:
    from .rundir import read_json

    if out.exists() and not out.is_dir():
        raise TuneError(f"--out {out} is a file; give a directory")
    if not (out / "tune.json").exists():
        return
    previous, problem = read_json(out / "tune.json")
    if problem or not isinstance(previous, dict) or not isinstance(previous.get("protocol"), dict):
        raise TuneError(f"{out / 'tune.json'} is unreadable ({problem or 'no protocol'}); use a new --out")
    old = previous["protocol"]
    diff = [k for k in PROTOCOL_KEYS if old.get(k) != protocol[k]]
    if diff:
        raise TuneError(f"{out} holds a tuning with other {', '.join(diff)} ({'; '.join(f'{k}={old.get(k)}' for k in diff)});"
                        " relaunch it with the same arguments, or use a new --out")


def main(argv: list[str], run: Callable[..., int], config_options: Callable[..., list[str]],
         check_run: Callable[[list[str]], None]) -> int:
    """``adaxbench tune ARGS``.  ``run``: the CLI's ``adaxbench run`` (``run(args, print_best=False)``),
    ``config_options``: its group listing, ``check_run``: its checks of a command line (one line, raised);
    the CLI passes them in, as it sits a layer above."""
    from .report.load import ReportError

    parser = _parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    out = Path(a.out)
    try:
        protocol = protocol_of(a)
        if a.baseline is not None and a.baseline not in protocol["optimizers"]:
            raise TuneError(f"--baseline {a.baseline} is not one of --optimizers {','.join(protocol['optimizers'])}")
        _resume_check(out, protocol)
        _check_names(protocol, a.overrides, config_options)
        # Launcher and other Hydra overrides reach every sweep but are no part of the protocol.
        tuning = Tuning(out, protocol, [o for o in a.overrides if o not in protocol["overrides"]], a.baseline, run)
        tuning.check(check_run)
        out.mkdir(parents=True, exist_ok=True)
        if len(protocol["tuning_seeds"]) < 2:
            print("adaxbench tune: warning: one tuning seed: every choice is noise-limited", file=sys.stderr)
        for task in protocol["tasks"]:
            tuning.tune_task(task)
        tuning.report(tuning.evaluate())
    except TuneError as e:
        print(f"adaxbench tune: error: {e}", file=sys.stderr)
        return 2
    except ReportError as e:  # e.g. no run of a task finished with a score: nothing to choose from
        print(f"adaxbench tune: error: {e}; the runs are in {out}", file=sys.stderr)
        return 1
    print(f"tune: done; choices in {out / 'tune.md'}, report in {out / 'report'}")
    if tuning.failed:
        print(f"tune: {tuning.failed} run(s) failed (listed in the report); relaunch to retry them", file=sys.stderr)
        return 1
    return 0
