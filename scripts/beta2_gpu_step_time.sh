#!/usr/bin/env bash
# How long the full-budget β̂₂ study (scripts/beta2_ablation_gpu.sh) will train on this GPU, measured before it runs:
#   scripts/beta2_gpu_step_time.sh        # fmnist_mlp and fmnist_2c2d, in fp32 and bf16
# Per task and precision it trains one epoch of the study's packs: the tuning pack (4 arms x 6 lrs x 2 tuning seeds,
# 48 members) and the evaluation sweep (the 4 arms and the 2 harness checks x 10 seeds: packs of 40 ScheduledBeta2,
# 10 Adam, 10 AdaX members). It prints each pack's ms per step (timing.train_seconds / progress.step, the median
# over its members) and the study's training time at 100 epochs: the tuning pack and the evaluation packs, and
# per widening round (up to 3; a pack of a few members) about the Adam pack's. One epoch includes each process's
# start-up, so these are upper bounds; evaluations and records add 30-50% (docs/benchmarks.md, "Packs on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PY=$(command -v python || command -v python3)
source scripts/beta2_study_settings.sh
ROOT=${STEP_ROOT:-runs/gpu_step_time}
TASKS=${STEP_TASKS:-fmnist_mlp fmnist_2c2d}
PRECISIONS=${STEP_PRECISIONS:-fp32 bf16}
# For plumbing checks at tiny scale only: extra overrides, one lr grid for every task, the seeds.
EXTRA=${STEP_EXTRA:-}
GRID=${STEP_GRID:-}
TUNE_SEEDS=${STEP_SEEDS:-$STUDY_TUNE_SEEDS}
EVAL_SEEDS=${STEP_EVAL_SEEDS:-$STUDY_EVAL_SEEDS}
sweep() {  # sweep DIR OVERRIDE...
  local dir=$1; shift
  # shellcheck disable=SC2086
  adaxbench run -m experiment=beta2_ablation_gpu trainer.epochs=1 "$@" hydra.sweep.dir="$dir" $EXTRA \
    >> "$ROOT/runs.log" 2>&1 || { echo "the sweep into $dir failed: see $ROOT/runs.log" >&2; exit 1; }
}

mkdir -p "$ROOT"
for task in $TASKS; do
  grid=${GRID:-$(study_grid "$task")}
  for precision in $PRECISIONS; do
    sweep "$ROOT/$task/$precision/tune" task="$task" trainer.precision="$precision" \
      optimizer="$(join "${STUDY_ARMS[@]}")" optimizer.lr="$grid" seed="$TUNE_SEEDS"
    sweep "$ROOT/$task/$precision/eval" task="$task" trainer.precision="$precision" \
      optimizer="$(join "${STUDY_ARMS[@]}" adam adax)" optimizer.lr="${grid%%,*}" seed="$EVAL_SEEDS"
  done
done
"$PY" - "$ROOT" "$STUDY_WIDEN_ROUNDS" <<'EOF'
import json, statistics, sys
from pathlib import Path

root, widen_rounds, epochs = Path(sys.argv[1]), int(sys.argv[2]), 100
try:
    import torch
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
except Exception:
    device = "?"


def packs(sweep: Path) -> dict[str, tuple[int, float, int]]:
    """The sweep's packs (one per optimizer class): members, median ms per step, steps per epoch."""
    by_class: dict[str, list[dict]] = {}
    for f in sweep.glob("*/run.json"):
        record = json.loads(f.read_text())
        by_class.setdefault(record["config"]["optimizer"]["_target_"].rsplit(".", 1)[-1], []).append(record)
    out = {}
    for cls, records in sorted(by_class.items()):
        done = [r for r in records if r["progress"]["step"]]
        ms = statistics.median(1000 * r["timing"]["train_seconds"] / r["progress"]["step"] for r in done)
        out[cls] = (len(records), ms, done[0]["progress"]["step"])
    return out


print(f"device: {device}; one epoch per pack, training time only (ms per pack step)")
print(f"| task | precision | tuning pack | evaluation packs | study at {epochs} epochs | per widening round |")
print("|---|---|---|---|---:|---:|")
for run in sorted(p for p in root.glob("*/*") if (p / "tune").is_dir() and (p / "eval").is_dir()):
    tune, evaluation = packs(run / "tune"), packs(run / "eval")
    (members, ms, steps), = tune.values()
    minutes = lambda ms, steps: epochs * steps * ms / 60_000  # noqa: E731
    study = minutes(ms, steps) + sum(minutes(m, s) for _, m, s in evaluation.values())
    adam = evaluation.get("Adam", (0, ms, steps))
    print(f"| {run.parent.name} | {run.name} | {members} members: {ms:.2f} ms | "
          + ", ".join(f"{n} {cls}: {m:.2f} ms" for cls, (n, m, _) in evaluation.items())
          + f" | {study:.1f} min | {minutes(adam[1], adam[2]):.1f} min (up to {widen_rounds}) |")
EOF
