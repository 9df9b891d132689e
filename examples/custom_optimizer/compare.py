"""Lion against Adam and AdaX, from Python: three optimizers x seeds, then the report.

    PYTHONPATH=examples/custom_optimizer python examples/custom_optimizer/compare.py [--quick]

Runs go to runs/lion_vs_adam_py/, the report to runs/lion_vs_adam_py/report/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import adaxbench
from lion import Lion

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="quadratic_deep", help="any task of `adaxbench list` (default: quadratic_deep)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/lion_vs_adam_py")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 seed, no figures (a smoke test)")
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    budget = ["trainer.epochs=1", "trainer.progress=false"] if args.quick else []
    out = Path(args.out)

    for seed in range(seeds):
        common = [f"task={args.task}", f"seed={seed}", *budget]
        # Your optimizer: the class and its hyperparameters (the name recorded is "Lion")...
        adaxbench.run(Lion, common, lr=3e-4, betas=(0.9, 0.99), run_dir=out / f"lion/{seed}")
        # ... or, the same run, its yaml by name from your config dir (as --config-dir does):
        # adaxbench.run("lion", common, config_dir=HERE / "configs", run_dir=...)
        # Ours, by name.
        adaxbench.run("adam", common, run_dir=out / f"adam/{seed}")
        adaxbench.run("adax", common, run_dir=out / f"adax/{seed}")

    runs = adaxbench.load_runs(out)
    print(runs[["optimizer", "seed", "status", "test/loss"]].to_string(index=False))
    report = adaxbench.report(out, out=out / "report", baseline="adam", figures=not args.quick)
    print(f"report: {report.out / 'report.md'}")


if __name__ == "__main__":
    main()
