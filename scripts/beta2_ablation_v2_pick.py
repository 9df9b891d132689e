"""The tuned lr per optimizer of a task's tuning runs, for scripts/beta2_ablation_v2.sh and beta2_ablation_gpu.sh.

    python scripts/beta2_ablation_v2_pick.py DIR
        one line per optimizer tuned in DIR (the runs of one task):
        "OPTIMIZER LR"           its winner sits inside its grid
        "OPTIMIZER LR NEXT_LR"   on an edge: the next quarter-decade point beyond it, to widen the grid
The winner is `adaxbench best`'s (mean final selection score over the tuning seeds, a diverged seed
scoring worst).
"""

from __future__ import annotations

import math
import sys

from adaxbench.report.best import select_best
from adaxbench.report.load import ReportError, load_runs



def beyond(lr: float, step: int) -> float:
    """The quarter-decade lattice point `step` places from lr (10^(k/4): 1e-3, 1.78e-3, 3.16e-3, 5.62e-3, 1e-2...)."""
    return 10 ** ((round(4 * math.log10(lr)) + step) / 4)


def main(run_dir: str) -> int:
    try:
        rs = load_runs([run_dir])
        best, _ = select_best(rs)
    except ReportError as e:
        print(f"{run_dir}: {e}", file=sys.stderr)
        return 2
    if best["task"].nunique() != 1:
        print(f"{run_dir}: expected the runs of one task, found {', '.join(best['task'].unique())}", file=sys.stderr)
        return 2
    for optimizer, config in zip(best["optimizer"], best["config"]):
        lr = float(config["optimizer"]["lr"])
        tried = sorted({float(s["optimizer.lr"]) for s in rs.settings.values() if s.get("optimizer.name") == optimizer})
        line = f"{optimizer} {lr:.3g}"
        if len(tried) > 1 and lr == tried[-1]:
            line += f" {beyond(lr, +1):.3g}"
        elif len(tried) > 1 and lr == tried[0]:
            line += f" {beyond(lr, -1):.3g}"
        print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: beta2_ablation_v2_pick.py DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
