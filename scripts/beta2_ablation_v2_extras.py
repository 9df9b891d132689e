"""The β̂₂ ablation v2's post-hoc, descriptive numbers that no `adaxbench report` table holds, from the records.

    python scripts/beta2_ablation_v2_extras.py RUNS_DIR OUT.md

RUNS_DIR is the unpacked runs.tar.xz (results/beta2_ablation_v2/runs). Outside every test family (PROTOCOL.md,
Deviations): where the Reddi iterates are late in training, not only at the last step; the second-half mean loss
on reddi_stochastic; and the paired contrasts the README quotes that no report's baseline gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from adaxbench.rundir import METRICS_FILE, RUN_FILE, read_metrics_strict, read_record

# The Reddi losses are c̄·x at the iterate x in [−1, 1] (PROTOCOL.md, Evaluation).
C_BAR = {"reddi_online": 10 / 101, "reddi_stochastic": 0.2}
LATE = 80_000  # "late": the last fifth of the 100,000 steps, where a settled iterate stays put


def runs(root: Path) -> pd.DataFrame:
    """One row per run: where it lies, its optimizer name, lr, seed and its metrics table."""
    rows = []
    for path in sorted(root.rglob(RUN_FILE)):  # the project's readers: the run-directory contract, checked
        record, problem = read_record(path.parent)
        if record is None:
            sys.exit(f"{path}: {problem}")
        cfg = record.config
        rows.append({"stage": path.relative_to(root).parts[0], "task": cfg["task"]["name"],
                     "arm": cfg["optimizer"]["name"], "lr": float(cfg["optimizer"]["lr"]), "seed": cfg["seed"],
                     "metrics": read_metrics_strict(path.parent / METRICS_FILE).to_pandas()})
    return pd.DataFrame(rows)


def series(metrics: pd.DataFrame, split: str, metric: str) -> pd.DataFrame:
    return metrics[(metrics["split"] == split) & (metrics["metric"] == metric)].sort_values("step")


def final(metrics: pd.DataFrame, split: str, metric: str) -> float:
    return float(series(metrics, split, metric)["value"].iloc[-1])


def paired(a: pd.DataFrame, b: pd.DataFrame, value) -> str:
    """a − b over their shared seeds: mean [95% t interval] (90% interval), the number of pairs and the range."""
    x, y = a.set_index("seed"), b.set_index("seed")
    seeds = sorted(set(x.index) & set(y.index))
    d = np.array([value(x.loc[s, "metrics"]) - value(y.loc[s, "metrics"]) for s in seeds])
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    lo90, hi90 = stats.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    return (f"{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] (90%: [{lo90:+.4f}, {hi90:+.4f}]), {len(d)} pairs, "
            f"per pair {d.min():+.2g} to {d.max():+.2g}")


def reddi_online_table(all_runs: pd.DataFrame) -> list[str]:
    """Per arm and lr (the tuning grid and the post-hoc lrs): the final x and the mean x over the late steps."""
    task = all_runs[(all_runs["task"] == "reddi_online") & all_runs["stage"].isin(["tune", "posthoc"])]
    cells: dict[tuple[str, float], str] = {}
    for (arm, lr), group in task.groupby(["arm", "lr"]):
        m = group["metrics"].iloc[0]  # deterministic: every seed is the same run
        loss = series(m, "train", "loss")
        late = loss[loss["step"] >= LATE]["value"]
        cells[(arm, lr)] = f"{loss['value'].iloc[-1] / C_BAR['reddi_online']:+.2f} / {late.mean() / C_BAR['reddi_online']:+.2f}"
    arms = sorted({a for a, _ in cells})
    lines = ["| lr | " + " | ".join(f"`{a}`" for a in arms) + " |", "|---:|" + "---|" * len(arms)]
    for lr in sorted({lr for _, lr in cells}):
        lines.append(f"| {lr:g} | " + " | ".join(cells.get((a, lr), "—") for a in arms) + " |")
    return lines


def main(root: Path, out: Path) -> None:
    all_runs = runs(root)
    ev = all_runs[all_runs["stage"] == "eval"]

    def arm(task: str, name: str, stage: pd.DataFrame = ev, lr: float | None = None) -> pd.DataFrame:
        return stage[(stage["task"] == task) & (stage["arm"] == name) & ((stage["lr"] == lr) if lr else True)]

    def second_half(m: pd.DataFrame) -> float:
        loss = series(m, "train", "loss")
        return float(loss[loss["step"] > loss["step"].max() / 2]["value"].mean())

    lines = ["# β̂₂ ablation v2: post-hoc numbers from the records", "",
             "Written by `scripts/beta2_ablation_v2_extras.py` from `runs.tar.xz`; descriptive, outside every test "
             "family (PROTOCOL.md, Deviations). Intervals: paired t over the shared seeds.", "",
             "## reddi_online: final x / mean x over steps 80,000–100,000", "",
             "x = train/loss ÷ c̄ (c̄ = 10/101), logged every 1,000 steps; the optimum is x = −1. "
             "A settled iterate has the two equal; one that cycles across [−1, 1] has a late mean far from its final x.",
             "", *reddi_online_table(all_runs), "",
             "## reddi_stochastic: the mean train/loss over the second half of training, each arm at its tuned lr", ""]
    for name in ("sched_adax", "sched_adafactor", "sched_adax_nobc"):
        lines.append(f"- `{name}` − `sched_adam`: {paired(arm('reddi_stochastic', name), arm('reddi_stochastic', 'sched_adam'), second_half)}")
    post = all_runs[all_runs["stage"] == "posthoc"]
    for lr, adax in ((10.0, arm("reddi_stochastic", "sched_adax", post, 10.0)), (3.16, arm("reddi_stochastic", "sched_adax"))):
        lines.append(f"- at one lr for both, {lr:g} (post hoc), `sched_adax` − `sched_adam`: "
                     + paired(adax, arm("reddi_stochastic", "sched_adam", post, lr), second_half))
    lines += ["", "## Paired contrasts no report's baseline gives (final values)", ""]
    contrasts = [("fmnist_mlp", "adam", "sched_adam", "test", "accuracy"),
                 ("fmnist_mlp", "adax", "sched_adax_nobc", "test", "accuracy"),
                 ("reddi_stochastic", "adam", "sched_adam", "train", "loss"),
                 ("quadratic_deep", "sched_adax_nobc", "sched_adax", "test", "loss")]
    for task, a, b, split, metric in contrasts:
        lines.append(f"- {task} {split}/{metric}, `{a}` − `{b}`: "
                     + paired(arm(task, a), arm(task, b), lambda m, s=split, k=metric: final(m, s, k)))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/beta2_ablation_v2_extras.py RUNS_DIR OUT.md")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
