"""Wall time of one 4-job sweep through the sequential, submitit_local and joblib launchers.

    python scripts/bench_launchers.py [--train-limit 30000] [--epochs 2] [--jobs 4] [--repeats 3] [--unbudgeted]

Each job trains fmnist_mlp (real Fashion-MNIST) on the first --train-limit examples. The
thread budget (adaxbench/train/threads.py) gives each job its share of the CPUs; goals on
2 cores: submitit_local within 1.4x and joblib n_jobs=2 within 1.05x of the sequential
launcher. The launchers run interleaved, --repeats rounds; each wall time is the median of its
rounds, and each ratio the median of the per-round ratios (a shared VM drifts by 20% within
minutes, so single runs mislead). --unbudgeted also times submitit_local with every job at torch's default threads
(trainer.threads = all CPUs), the behaviour before the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adaxbench.train.threads import usable_cpus  # noqa: E402


def sweep(name: str, launcher: list[str], args: list[str], out: Path) -> tuple[float, list[int]]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "adaxbench", "run", "-m", *launcher, *args,
                           f"hydra.sweep.dir={out / name}"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stdout}\n{proc.stderr}")
    used = [json.loads(p.read_text())["env"]["threads"] for p in sorted((out / name).glob("*/run.json"))]
    return wall, used


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-limit", type=int, default=30000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--unbudgeted", action="store_true")
    a = p.parse_args()
    cpus, why = usable_cpus()
    seeds = ",".join(str(s) for s in range(a.jobs))
    args = ["task=fmnist_mlp", "optimizer=adam", f"trainer.train_limit={a.train_limit}", f"trainer.epochs={a.epochs}",
            "trainer.eval_limit=2000", "trainer.log_every=50", "trainer.progress=false", f"seed={seeds}"]
    launchers = [("sequential", [], None),
                 ("submitit_local", ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=60"], 1.4),
                 ("joblib n_jobs=2", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 1.05)]
    if a.unbudgeted:
        launchers.append(("submitit_local, default threads", ["hydra/launcher=submitit_local",
                          "hydra.launcher.timeout_min=60", f"trainer.threads={cpus}"], None))
    print(f"{a.jobs} jobs of fmnist_mlp, {a.train_limit} examples x {a.epochs} epochs; {why}; "
          f"median of {a.repeats} interleaved rounds")
    walls: dict[str, list[float]] = {name: [] for name, _, _ in launchers}
    used: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="adaxbench_launchers_") as tmp:
        for r in range(a.repeats):
            for name, launcher, _ in launchers:
                wall, used[name] = sweep(f"{name.split()[0]}{len(launcher)}_{r}", launcher, args, Path(tmp))
                walls[name].append(wall)
    base = walls["sequential"]
    print("| launcher | wall (median) | threads per job | ratio to sequential (median; range) | goal |\n"
          "|---|---:|---|---:|---|")
    for name, _, goal in launchers:
        ratios = sorted(w / b for w, b in zip(walls[name], base))
        ratio = statistics.median(ratios)
        verdict = "" if goal is None else f"≤ {goal}x: {'met' if ratio <= goal else 'MISSED'}"
        print(f"| {name} | {statistics.median(walls[name]):.1f} s | {','.join(map(str, used[name]))} | "
              f"{ratio:.2f}x; {ratios[0]:.2f}–{ratios[-1]:.2f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
