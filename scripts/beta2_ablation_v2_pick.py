"""The tuned lr of one arm's tuning runs, for scripts/beta2_ablation_v2.sh.

    python scripts/beta2_ablation_v2_pick.py DIR [OPTIMIZER]
        -> "LR"           the winner sits inside its grid
        -> "LR NEXT_LR"   on an edge: the next quarter-decade point beyond it, to widen the grid
The winner is `adaxbench best`'s (mean final selection score over the tuning seeds, a diverged seed
scoring worst). DIR holds the tuning runs of one task: of one optimizer, or of several and OPTIMIZER
names the one to pick for (the GPU study tunes every arm in one packed sweep).
"""

from __future__ import annotations

import sys

from adaxbench.report.best import select_best
from adaxbench.report.load import ReportError, load_runs

QUARTER_DECADE = 10**0.25


def main(run_dir: str, optimizer: str | None = None) -> int:
    try:
        rs = load_runs([run_dir])
        best, _ = select_best(rs)
        if optimizer is not None:
            best = best[best["optimizer"] == optimizer]
    except ReportError as e:
        print(f"{run_dir}: {e}", file=sys.stderr)
        return 2
    if len(best) != 1:
        print(f"{run_dir}: expected the runs of one task and optimizer{f' {optimizer}' if optimizer else ''}, "
              f"found {len(best)} winners", file=sys.stderr)
        return 2
    lr = float(best["config"].iloc[0]["optimizer"]["lr"])
    tried = sorted({float(s["optimizer.lr"]) for s in rs.settings.values()
                    if optimizer is None or s.get("optimizer.name") == optimizer})
    if len(tried) > 1 and lr == tried[-1]:
        print(f"{lr:.3g} {lr * QUARTER_DECADE:.3g}")
    elif len(tried) > 1 and lr == tried[0]:
        print(f"{lr:.3g} {lr / QUARTER_DECADE:.3g}")
    else:
        print(f"{lr:.3g}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print("usage: beta2_ablation_v2_pick.py DIR [OPTIMIZER]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
