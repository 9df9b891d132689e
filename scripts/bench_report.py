"""Time `adaxbench report` on synthetic sweeps: 250, 500 and 1,000 run dirs × 100 epochs.

    python scripts/bench_report.py [--dir /tmp/adaxbench_bench] [--runs 1000] [--epochs 100]

Runs span 2 tasks × 4 optimizers × 3 lrs × seeds, each logging train/valid/test loss and
accuracy every epoch and batch loss, lr, grad_norm, β̂₂ and eff. lr every 10 of 100 steps per
epoch (~5,600 metric rows per run).  Prints the time to load, to make the tables and CSVs
only (--no-figures), and to make the full report with figures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from report_fixtures import synthetic_sweep  # noqa: E402

from adaxbench.report import build_report, load_runs  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="where to write the synthetic runs (default: a temp dir, removed)")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=100)
    a = p.parse_args()
    root = Path(a.dir or tempfile.mkdtemp(prefix="adaxbench_bench_"))
    # Quarter, quarter, half: the first 1, 2 and 3 groups hold 25%, 50% and 100% of the runs.
    sizes = [a.runs // 4, a.runs // 4, a.runs - 2 * (a.runs // 4)]
    t0 = time.perf_counter()
    for i, n in enumerate(sizes):
        if not (root / f"g{i}").exists():
            synthetic_sweep(root / f"g{i}", n, epochs=a.epochs, seed=i, start=sum(sizes[:i]))
    print(f"generated {a.runs} runs × {a.epochs} epochs in {time.perf_counter() - t0:.1f} s under {root}")
    try:
        for k in (1, 2, 3):
            paths = [root / f"g{i}" for i in range(k)]
            n = sum(sizes[:k])
            t = time.perf_counter()
            rs = load_runs(paths)
            t_load = time.perf_counter() - t
            tables = build_report(paths, out=root / f"tables{k}", figures=False)
            rep = build_report(paths, out=root / f"report{k}")
            print(f"{n:5d} runs: {len(rs.metrics):>9,} metric rows; load {t_load:5.1f} s; "
                  f"tables only {tables.seconds:5.1f} s; full report {rep.seconds:5.1f} s "
                  f"({len(rep.files)} files)", flush=True)
    finally:
        if a.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
