"""``adaxbench report PATH... [options]``: the command-line entry of the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..rundir import WriteError
from .load import ReportError
from .render import build_report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise ReportError(f"{message} (see adaxbench report --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaxbench report", description=(
        "Compare optimizers across run dirs and sweep dirs (searched recursively for run.json): "
        "figures, tables with seed spread, paired or Welch CIs, Holm-adjusted p and a verdict per "
        "comparison (better, worse, equivalent within ±m, inconclusive), published results, time-to-target, "
        "performance profiles and cross-task IQM."))
    p.add_argument("paths", nargs="+", metavar="PATH", help="run dirs, sweep dirs or run.json files")
    p.add_argument("--out", default="report", help="output dir (default: ./report)")
    p.add_argument("--metric", default=None,
                   help="SPLIT/METRIC to compare, e.g. test/accuracy, valid/loss "
                        "(default: the task's metric, else test/accuracy, else the first logged)")
    p.add_argument("--x", default="epoch", choices=["epoch", "step", "time"],
                   help="x axis of the evaluation curves and the measure of time-to-target in the "
                        "performance profiles (default: epoch)")
    p.add_argument("--target", default=None,
                   help="target VALUE for all tasks, or TASK=VALUE[,TASK=VALUE...] (default: the task's target)")
    p.add_argument("--baseline", default="adam", help="optimizer name the others are compared to (default: adam)")
    p.add_argument("--format", default="md,html", help="md, html or md,html (default: md,html)")
    p.add_argument("--select", default="final", choices=["final", "best"],
                   help="pick each optimizer's best setting by its final or best validation metric")
    p.add_argument("--margin", default=None, metavar="KEY=M[,KEY=M...]",
                   help="equivalence margin per compared metric or per task, e.g. test/accuracy=0.005 or "
                        "reddi_online=0.002 (a task's wins over its metric's; default: the task's "
                        "equivalence_margin, else 0.005 for accuracies and none for losses)")
    p.add_argument("--family", default="table", choices=["table", "task"],
                   help="what Holm's adjustment runs over: every comparison of the report (table, default) "
                        "or each task's (task)")
    p.add_argument("--no-figures", action="store_true", help="tables and CSVs only (fast)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the report; returns the exit code (2 with one line on stderr for bad input)."""
    try:
        a = _parser().parse_args(argv)
        if Path(a.out).exists() and not Path(a.out).is_dir():
            raise ReportError(f"--out {a.out} is a file; give a directory (it is created if missing)")
        rep = build_report(a.paths, out=a.out, metric=a.metric, x=a.x, target=a.target,
                           baseline=a.baseline, formats=a.format.split(","), select=a.select,
                           figures=not a.no_figures, margin=a.margin, family=a.family)
    except ReportError as e:
        print(f"adaxbench report: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or an unwritable --out: each file written so far replaced a whole one
        reason = e if isinstance(e, WriteError) else f"cannot write into {a.out}: {e.strerror or e}"
        print(f"adaxbench report: error: {reason}; earlier report files there are kept whole", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    for w in rep.warnings:
        print(f"adaxbench report: warning: {w}", file=sys.stderr)
    main_file = next((f for f in rep.files if f.name in ("report.md", "report.html")), rep.out)
    print(f"wrote {main_file} ({len(rep.files)} files, {rep.seconds:.1f} s); "
          f"{len(rep.excluded)} run(s) not included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
