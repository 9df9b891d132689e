#!/usr/bin/env bash
# How long the full-budget β̂₂ study (scripts/beta2_ablation_gpu.sh) will take on this GPU, measured before it runs:
#   scripts/beta2_gpu_step_time.sh        # fmnist_mlp and fmnist_2c2d, in fp32 and bf16: 1 epoch of each tuning pack
# Each (task, precision) trains one epoch of the task's tuning pack (the 4 arms x 6 lrs x 2 tuning seeds, 48 members)
# and prints the pack's ms per step (timing.train_seconds / progress.step, the median over its members) and the
# study's training time at 100 epochs: a task trains 5 such packs (tuning, one widening round, 3 evaluation packs).
# Evaluations and records add to that (28-48% of a pack's wall on an H200, see docs/benchmarks.md).
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
SEEDS=${STEP_SEEDS:-$STUDY_TUNE_SEEDS}
PACKS=5                 # per task: tuning, a widening round, evaluation (ScheduledBeta2, Adam, AdaX)
EPOCHS=100
join() { local IFS=,; echo "$*"; }

mkdir -p "$ROOT"
for task in $TASKS; do
  for precision in $PRECISIONS; do
    # shellcheck disable=SC2086
    adaxbench run -m experiment=beta2_ablation_gpu task="$task" trainer.epochs=1 trainer.precision="$precision" \
      optimizer="$(join "${STUDY_ARMS[@]}")" optimizer.lr="${GRID:-$(study_grid "$task")}" seed="$SEEDS" \
      hydra.sweep.dir="$ROOT/$task/$precision" $EXTRA >> "$ROOT/runs.log" 2>&1 \
      || { echo "the $task $precision pack failed: see $ROOT/runs.log" >&2; exit 1; }
  done
done
"$PY" - "$ROOT" "$PACKS" "$EPOCHS" <<'EOF'
import json, statistics, sys
from pathlib import Path

root, packs, epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
try:
    import torch
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
except Exception:
    device = "?"
print(f"device: {device}")
print("| task | precision | members | ms per pack step | steps per epoch | study training at 100 epochs |")
print("|---|---|---:|---:|---:|---:|")
for pack in sorted(p for p in root.glob("*/*") if p.is_dir()):
    records = [json.loads(f.read_text()) for f in pack.glob("*/run.json")]
    done = [r for r in records if r["progress"]["step"]]
    if not done:
        print(f"| {pack.parent.name} | {pack.name} | {len(records)} | no steps recorded | | |")
        continue
    ms = statistics.median(1000 * r["timing"]["train_seconds"] / r["progress"]["step"] for r in done)
    steps = done[0]["progress"]["step"]  # one epoch
    minutes = packs * epochs * steps * ms / 60_000
    print(f"| {pack.parent.name} | {pack.name} | {len(records)} | {ms:.2f} | {steps} | {minutes:.1f} min |")
EOF
