"""Cost of one packed training step as a function of the pack's size M.

On a GPU a big pack is launch-bound: every aten op a step dispatches costs host time (~5-10 µs;
most of them launch a kernel), whatever the members' arithmetic. This script measures the proxy
on any machine: the aten ops dispatched per training step of a pack (counted with a
TorchDispatchMode, i.e. below autograd and vmap: the ops that run, views included; averaged
over one epoch, its permutations included, without log steps), and the ms per step (the
fastest of --repeats epochs), for packs of M members of the β̂₂ study's shape (fmnist_mlp,
ScheduledBeta2 arms with an lr grid: members differing in their hyperparameters get their own
param groups).

    python scripts/bench_pack_step.py [--members 8,32,64] [--task fmnist_mlp] [--train-limit 1280]
                                      [--arms sched_adam,sched_adax] [--lrs 6] [--device auto]

Ops that grow with M are what a pack's step pays per member; ops that stay flat are paid once.
Writes nothing outside a temporary directory; Fashion-MNIST must be present for fmnist tasks.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from adaxbench.api import compose
from adaxbench.plugins import run_provenance
from adaxbench.train.packed import Member, PackRun
from adaxbench.train.runner import Run, StopSignals, _rng_state, prepare, seed_everything
from adaxbench.train.validate import check_config


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def build_pack(members: int, args, root: Path) -> PackRun:
    """A pack as the packed launcher trains it: member k has arm k mod len(arms), an lr of the
    grid and its own seed."""
    lrs = [10 ** (-3 + 0.25 * k) for k in range(args.lrs)]
    pack = []
    for k in range(members):
        arm, lr = args.arms[k % len(args.arms)], lrs[(k // len(args.arms)) % len(lrs)]
        cfg = compose([f"task={args.task}", f"optimizer={arm}", f"optimizer.lr={lr:.3g}", f"seed={k}",
                       f"trainer.device={args.device}", f"trainer.train_limit={args.train_limit}",
                       "trainer.progress=false", f"trainer.log_every={args.log_every}", "trainer.checkpoint=false"])
        pack.append(Member(Run(cfg, root / str(k)), k, check_config(cfg)))
    setup = prepare(pack[0].run.cfg, run_provenance(pack[0].run.config_dict()))
    for m in pack:  # as packed._train builds them
        m.run.run_dir.mkdir(parents=True)
        seed_everything(m.seed)
        m.trainee = m.run.build(setup, m.spec, resume=False)
        m.rng = _rng_state()
    return PackRun(pack, setup, StopSignals())


def measure(members: int, args) -> tuple[int, float, float, int]:
    """(param groups, aten ops per step, ms per step, steps per epoch) of an M-member pack."""
    with tempfile.TemporaryDirectory() as tmp:
        run = build_pack(members, args, Path(tmp))
        steps = run.task.steps_per_epoch
        run.train_epoch(0)  # warm-up: lazy initialisation, optimizer state
        counter = CountOps()
        with counter:
            run.train_epoch(1)
        best = float("inf")
        for epoch in range(2, 2 + args.repeats):
            t0 = time.perf_counter()
            run.train_epoch(epoch)
            best = min(best, time.perf_counter() - t0)
        if args.verbose:
            print(f"M={members}: {counter.ops.most_common(12)}")
        return len(run.pack.groups), counter.ops.total() / steps, 1000 * best / steps, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", default="8,32,64", help="pack sizes M, comma-separated")
    parser.add_argument("--task", default="fmnist_mlp")
    parser.add_argument("--train-limit", type=int, default=1280, help="training examples per epoch (batch 128)")
    parser.add_argument("--arms", default="sched_adam,sched_adax,sched_adafactor,sched_adax_nobc",
                        help="optimizer configs, assigned round robin")
    parser.add_argument("--lrs", type=int, default=6, help="lrs in the grid (10^-3 upwards in quarter decades)")
    parser.add_argument("--log-every", type=int, default=1000, help="trainer.log_every (the study's: 1000)")
    parser.add_argument("--device", default="auto", help="auto: cuda where there is one, else cpu")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs; the fastest counts")
    parser.add_argument("--verbose", action="store_true", help="also the most frequent ops")
    args = parser.parse_args()
    args.arms = args.arms.split(",")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{args.task}, {args.train_limit} training examples, arms {','.join(args.arms)} x {args.lrs} lrs, "
          f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| members | param groups | aten ops per step | ms per step |")
    print("|---:|---:|---:|---:|")
    for members in map(int, args.members.split(",")):
        groups, ops, ms, _ = measure(members, args)
        print(f"| {members} | {groups} | {ops:,.0f} | {ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
