"""Per-step time of our optimizers next to torch.optim.Adam, same modes, one process, interleaved.

    python scripts/bench_optim.py                       # ResNet-18 and ResNet-20 parameter sets, CPU (+CUDA)
    python scripts/bench_optim.py --sets resnet18 --devices cpu --rounds 7 --steps 10

Parameters and gradients are random tensors with the models' shapes (nothing else runs).
Each round times every (optimizer, mode) once, in a fixed interleaved order, so drifting
machine load hits all of them alike; the table reports the median over rounds and the
ratio to torch Adam in the same mode, plus the best round (robust on a shared, loaded
machine).  There is no compile step: fused runs torch's own fused Adam kernel.  Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from adaxbench.optim import AdaX, AdaXW, ScheduledBeta2

MODES = {"for-loop": dict(foreach=False, fused=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
OPTIMIZERS = {
    "torch Adam": lambda ps, m: torch.optim.Adam(ps, lr=1e-3, **m),
    "AdaX": lambda ps, m: AdaX(ps, **m),  # weight_decay=0 like torch Adam here: L2 copies the gradient in both
    "AdaX-W": lambda ps, m: AdaXW(ps, **m),
    "ScheduledBeta2(adax)": lambda ps, m: ScheduledBeta2(ps, schedule="adax", **m),
}


def resnet18_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's ResNet-18 (11.69M parameters)."""
    import torchvision

    return [tuple(p.shape) for p in torchvision.models.resnet18().parameters()]


def resnet20_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of the CIFAR ResNet-20 of He et al. 2016 (option-A shortcuts, 0.27M parameters)."""
    shapes: list[tuple[int, ...]] = [(16, 3, 3, 3), (16,), (16,)]
    cin = 16
    for cout in (16, 32, 64):
        for _ in range(3):
            shapes += [(cout, cin, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            cin = cout
    return shapes + [(10, 64), (10,)]


SETS = {"resnet18": resnet18_shapes, "resnet20": resnet20_shapes}


def make_params(shapes: list[tuple[int, ...]], device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    """Random parameters with random (fixed) gradients attached."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=g).to(device))
        p.grad = torch.randn(s, generator=g).to(device)
        params.append(p)
    return params


def time_steps(opt: torch.optim.Optimizer, steps: int, device: str, clock=time.perf_counter) -> float:
    """Mean time of one ``opt.step()`` in milliseconds over ``steps`` steps."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = clock()
    for _ in range(steps):
        opt.step()
    sync()
    return (clock() - t0) / steps * 1e3


def bench(set_name: str, device: str, rounds: int, steps: int, warmup: int, clock=time.perf_counter) -> list[dict]:
    """Median ms/step of every (optimizer, mode) on one parameter set and device."""
    shapes = SETS[set_name]()
    runs = {}
    for opt_name, make in OPTIMIZERS.items():
        for mode, kw in MODES.items():
            opt = make(make_params(shapes, device), kw)
            for _ in range(warmup):
                opt.step()
            runs[opt_name, mode] = (opt, [])
    for _ in range(rounds):
        for opt, times in runs.values():
            times.append(time_steps(opt, steps, device, clock if device == "cpu" else time.perf_counter))
    rows = []
    for (opt_name, mode), (_, times) in runs.items():
        ref_times = runs["torch Adam", mode][1]
        ref = statistics.median(ref_times)
        med = statistics.median(times)
        rows.append(dict(set=set_name, device=device, optimizer=opt_name, mode=mode, ms=med, best=min(times),
                         ratio=med / ref, best_ratio=min(times) / min(ref_times)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="resnet18,resnet20", help="comma list of: " + ", ".join(SETS))
    ap.add_argument("--devices", default="cpu,cuda", help="comma list; cuda is skipped when absent")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="steps per timing")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time for CPU runs (use with --threads 1 on a shared, loaded machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    n_params = {s: sum(torch.Size(x).numel() for x in SETS[s]()) for s in args.sets.split(",")}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.clock} clock for CPU runs"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print("\n| params | device | optimizer | mode | ms/step (median) | × torch Adam | ms/step (best) | × torch Adam (best) |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for s in args.sets.split(","):
        for d in devices:
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            for r in bench(s, d, args.rounds, args.steps, args.warmup, clock):
                print(f"| {s} ({n_params[s] / 1e6:.2f}M) | {d} | {r['optimizer']} | {r['mode']} | {r['ms']:.2f} "
                      f"| {r['ratio']:.2f} | {r['best']:.2f} | {r['best_ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
