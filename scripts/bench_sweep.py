"""Seed sweeps: packed (``hydra/launcher=packed``) against the sequential basic launcher.

Each scenario runs the same sweep twice through the real CLI (``adaxbench run -m``), once per
launcher, into fresh sweep dirs, and prints
  wall        - wall-clock seconds of the whole sweep (process start to exit), best of --repeats
  train sps   - training samples/s of the sweep: all samples over the training seconds (the
                sum of the jobs' for the sequential launcher; one pack's members share theirs)
  speed-up    - sequential / packed wall time, and packed / sequential training samples/s (the
                goals are on the latter: at these reduced budgets the wall time of both is mostly
                per-job work that packing keeps, Hydra composing each job's config and every
                job's records)
  max rel diff- of the final metrics between the two sweeps (float32 rounding at most)
On CPU: 32 seeds each of reddi_online, quadratic_deep and rosenbrock_2d (goal: packed >= 10x,
one torch thread per process: their tensors are too small to share), 16 seeds of rosenbrock_2d at
its full 100 epochs (rosenbrock_2d_full; goal: packed >= 5x wall time) and 8 seeds of
fmnist_mlp (goal: >= 0.8x; compute-bound on 2 cores), all with reduced budgets (below) so the
script ends in a few minutes. With CUDA (detected) it adds fmnist_mlp and fmnist_2c2d with 16
seeds for one full epoch each (goal: packed >= 5x samples/s).

    python scripts/bench_sweep.py [--scenarios reddi_online,quadratic_deep,...] [--seeds N] [--repeats 2]
                                  [--threads N] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# Reduced budgets (the protocols' full budgets: reddi 100,000 steps, the DeepOBS problems and
# fmnist_mlp 100 epochs): the ratios are per step, so they do not depend on the budget much.
CPU_SCENARIOS = {
    "reddi_online": (32, ["task=reddi_online", "optimizer=adam", "optimizer.lr=0.5", "optimizer.betas=[0.9,0.99]",
                          "trainer.epochs=2"]),  # 2 x 1,000 steps
    "quadratic_deep": (32, ["task=quadratic_deep", "optimizer=adam", "optimizer.lr=0.01", "trainer.epochs=100"]),  # DeepOBS budget
    "rosenbrock_2d": (32, ["task=rosenbrock_2d", "optimizer=adam", "optimizer.lr=0.01", "trainer.epochs=5"]),
    # The full budget: per-epoch work (evaluation, records, checkpoints) weighs as in real use.
    "rosenbrock_2d_full": (16, ["task=rosenbrock_2d", "optimizer=adam", "optimizer.lr=0.01"]),
    "fmnist_mlp": (8, ["task=fmnist_mlp", "optimizer=adam", "trainer.train_limit=10000", "trainer.eval_limit=2000",
                       "trainer.epochs=1"]),  # 78 steps of batch 128
}
GPU_SCENARIOS = {
    "fmnist_mlp_gpu": (16, ["task=fmnist_mlp", "optimizer=adam", "trainer.epochs=1"]),
    "fmnist_2c2d_gpu": (16, ["task=fmnist_2c2d", "optimizer=adam", "trainer.epochs=1"]),
}
GOALS = {"reddi_online": 10.0, "quadratic_deep": 10.0, "rosenbrock_2d": 10.0, "fmnist_mlp": 0.8,
         "fmnist_mlp_gpu": 5.0, "fmnist_2c2d_gpu": 5.0}
# Goals on the wall-time ratio instead (full budgets, where a pack's wall time should follow its throughput).
WALL_GOALS = {"rosenbrock_2d_full": 5.0}


def sweep(launcher: str, seeds: int, overrides: list[str], device: str, out: Path, threads: int | None) -> dict:
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    args = [sys.executable, "-m", "adaxbench", "run", "-m", f"hydra/launcher={launcher}", *overrides,
            f"seed=range(0,{seeds})", f"trainer.device={device}", "trainer.progress=false", "trainer.log_every=50",
            f"hydra.sweep.dir={out}"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/run.json"))]
    assert len(runs) == seeds and all(r["status"] == "completed" for r in runs), [r["status"] for r in runs]
    samples = sum(r["throughput"]["samples"] for r in runs)
    seconds = [r["timing"]["train_seconds"] for r in runs]
    train_seconds = max(seconds) if launcher == "packed" else sum(seconds)
    return {"wall": wall, "sps": samples / train_seconds, "final": [r["final"] for r in runs]}


def best(a: dict | None, b: dict) -> dict:
    if a is None:
        return b
    return {"wall": min(a["wall"], b["wall"]), "sps": max(a["sps"], b["sps"]), "final": b["final"]}


def max_rel_diff(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        for key, value in x.items():
            worst = max(worst, abs(value - y[key]) / max(abs(value), 1e-12))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=None, help="comma-separated (default: CPU ones, + GPU ones on CUDA)")
    parser.add_argument("--seeds", type=int, default=None, help="override every scenario's number of seeds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each sweep, interleaved; the best counts")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per sweep process (default: 1 for the synthetic problems, whose tiny "
                             "tensors only lose to thread synchronisation, else torch's default)")
    args = parser.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto"
                                                                               else args.device)
    scenarios = dict(CPU_SCENARIOS)
    if device.startswith("cuda"):
        scenarios.update(GPU_SCENARIOS)
    if args.scenarios:
        scenarios = {k: {**CPU_SCENARIOS, **GPU_SCENARIOS}[k] for k in args.scenarios.split(",")}
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{os.cpu_count()}-core CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}\n")
    print("| task | seeds | threads | launcher | wall s | train samples/s | speed-up (wall) | speed-up (samples/s) |"
          " goal | max rel diff |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---:|")
    for task, (seeds, overrides) in scenarios.items():
        seeds = args.seeds or seeds
        threads = args.threads or (1 if task.startswith(("reddi_online", "quadratic_deep", "rosenbrock_2d")) else None)
        seq, pk = None, None
        for _ in range(args.repeats):  # interleaved; the best of each (a shared machine is noisy)
            with tempfile.TemporaryDirectory() as tmp:
                seq = best(seq, sweep("basic", seeds, overrides, device, Path(tmp) / "basic", threads))
                pk = best(pk, sweep("packed", seeds, overrides, device, Path(tmp) / "packed", threads))
        wall_ratio, sps_ratio = seq["wall"] / pk["wall"], pk["sps"] / seq["sps"]
        goal, measured, on = (WALL_GOALS[task], wall_ratio, "wall") if task in WALL_GOALS else \
            (GOALS.get(task), sps_ratio, "samples/s")
        verdict = "" if goal is None else f"{on} >= {goal:g}x: {'met' if measured >= goal else 'MISSED'}"
        diff = max_rel_diff(seq["final"], pk["final"])
        shown = threads or torch.get_num_threads()
        print(f"| {task} | {seeds} | {shown} | sequential | {seq['wall']:.1f} | {seq['sps']:,.0f} | | | | |")
        print(f"| {task} | {seeds} | {shown} | **packed** | {pk['wall']:.1f} | {pk['sps']:,.0f} | **{wall_ratio:.1f}x** | "
              f"**{sps_ratio:.1f}x** | {verdict} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
