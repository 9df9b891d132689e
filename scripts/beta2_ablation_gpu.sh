#!/usr/bin/env bash
# The β̂₂ ablation v2 at DeepOBS's full budgets (100 epochs) on one GPU, one command (issue 21 §3):
#   scripts/beta2_ablation_gpu.sh                 # fmnist_mlp, fmnist_2c2d (+ cifar10_3c3d where CIFAR-10 is present)
#   GPU_TASKS=fmnist_2c2d scripts/beta2_ablation_gpu.sh
#   GPU_TASKS=fmnist_mlp GPU_EPOCHS=20 GPU_SENS=1 scripts/beta2_ablation_gpu.sh   # the CPU study's fmnist_mlp
#                                                  # stages (PROTOCOL.md: 20 epochs, beta2 sensitivity) on a GPU
# The design is results/beta2_ablation_v2/PROTOCOL.md's at full budgets: per task the four ScheduledBeta2 arms on a
# quarter-decade grid of 6 lrs x 2 tuning seeds (one pack), widened at the edges (one pack per round), then every
# arm at its tuned lr on 10 shared evaluation seeds with the two harness checks (one sweep: a pack per optimizer
# class), then one report. With GPU_SENS=1, fmnist_mlp's beta2 sensitivity follows (6 settings x 10 seeds, one pack).
# A rerun skips finished runs and resumes stopped packs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PY=$(command -v python || command -v python3)   # a GPU machine may have python3 only
source scripts/beta2_study_settings.sh
ROOT=${GPU_ROOT:-runs/beta2_ablation_gpu}
OUT=${GPU_OUT:-results/beta2_ablation_gpu}
DATA=${ADAXBENCH_DATA:-data}
EPOCHS=${GPU_EPOCHS:-}                    # default: each task's own budget (100 epochs)
SENS=${GPU_SENS:-}
PRECISION=${GPU_PRECISION:-}              # default fp32; bf16 where scripts/beta2_gpu_step_time.sh says fp32 won't fit
# For plumbing checks at tiny scale only (the study sets none of these):
EXTRA=${GPU_EXTRA:-}                      # extra overrides for every run
GRID=${GPU_GRID:-}                        # one lr grid for every task
TUNE_SEEDS=${GPU_TUNE_SEEDS:-$STUDY_TUNE_SEEDS}
EVAL_SEEDS=${GPU_EVAL_SEEDS:-$STUDY_EVAL_SEEDS}
WIDEN_ROUNDS=${GPU_WIDEN_ROUNDS:-$STUDY_WIDEN_ROUNDS}
ARMS=("${STUDY_ARMS[@]}")
MARGINS="test/accuracy=0.005"             # the pre-registered margin of the accuracy tasks
PICK="$PY scripts/beta2_ablation_v2_pick.py"
CONF=$(realpath -m "$ROOT")/conf                    # the evaluation arms as config files (arm = optimizer + its tuned lr)

if [ -z "${GPU_TASKS:-}" ]; then
  GPU_TASKS="fmnist_mlp fmnist_2c2d"
  [ -f "$DATA/cifar-10-batches-py/data_batch_1" ] && GPU_TASKS+=" cifar10_3c3d"
fi

grid() {
  [ -n "$GRID" ] && { echo "$GRID"; return; }
  case $1 in
    fmnist_mlp|fmnist_2c2d|cifar10_3c3d) study_grid "$1" ;;
    *) echo "unknown task $1 (fmnist_mlp, fmnist_2c2d, cifar10_3c3d)" >&2; exit 2 ;;
  esac
}
sweep() {  # sweep DIR OVERRIDE...
  local dir=$1; shift
  # shellcheck disable=SC2086
  adaxbench run -m experiment=beta2_ablation_gpu "hydra.searchpath=[file://$CONF]" "$@" ${EPOCHS:+trainer.epochs=$EPOCHS} ${PRECISION:+trainer.precision=$PRECISION} \
    $EXTRA hydra.sweep.dir="$dir" \
    >> "$ROOT/log/runs.log" 2>&1 || { echo "sweep $dir failed: see $ROOT/log/runs.log" >&2; exit 1; }
}
arm_config() {  # arm_config NAME OPTIMIZER LR [KEY: VALUE]...: the evaluation arm +v2arm=NAME
  local name=$1 optimizer=$2 lr=$3 key; shift 3
  mkdir -p "$CONF/v2arm"
  { printf '# @package _global_\n# %s at its tuned lr (written by scripts/beta2_ablation_gpu.sh)\n' "$optimizer"
    printf 'defaults:\n  - override /optimizer: %s\noptimizer:\n  lr: %s\n' "$optimizer" "$lr"
    for key in "$@"; do printf '  %s\n' "$key"; done; } > "$CONF/v2arm/$name.yaml"
}

run_task() {
  local task=$1 tune=$ROOT/tune/$1 arm lr next round widen_arms widen_lrs
  declare -A tuned
  sweep "$tune/grid" task="$task" optimizer="$(join "${ARMS[@]}")" optimizer.lr="$(grid "$task")" seed="$TUNE_SEEDS"
  for ((round = 1; round <= WIDEN_ROUNDS; round++)); do
    widen_arms=() widen_lrs=()
    while read -r arm lr next; do
      [ -n "${next:-}" ] && widen_arms+=("$arm") widen_lrs+=("$next") \
        && echo "$task $arm: best lr $lr on the edge, widening to $next" | tee -a "$ROOT/log/widen.txt"
    done <<< "$($PICK "$tune")"
    [ ${#widen_arms[@]} -eq 0 ] && break
    # One pack: every arm on an edge with every new lr (each a quarter-decade point of the lattice).
    sweep "$tune/widen_$round" task="$task" optimizer="$(join "${widen_arms[@]}")" optimizer.lr="$(join "${widen_lrs[@]}")" seed="$TUNE_SEEDS"
  done
  while read -r arm lr next; do tuned[$arm]=$lr; done <<< "$($PICK "$tune")"
  for arm in "${ARMS[@]}"; do arm_config "${task}_$arm" "$arm" "${tuned[$arm]}"; done
  arm_config "${task}_adam" adam "${tuned[sched_adam]}"        # the harness checks, untuned
  arm_config "${task}_adax" adax "${tuned[sched_adax_nobc]}"
  # The arms choose their optimizer: the preset's optimizer sweep is dropped for this sweep.
  sweep "$ROOT/eval/$task" task="$task" '~hydra.sweeper.params.optimizer' "+v2arm=$(join "${ARMS[@]/#/${task}_}" "${task}_adam" "${task}_adax")" seed="$EVAL_SEEDS"
  [ -n "$SENS" ] && [ "$task" = fmnist_mlp ] && sensitivity "$task" "sched_adam=${tuned[sched_adam]}" \
    "sched_adax=${tuned[sched_adax]}" "sched_adafactor=${tuned[sched_adafactor]}"
  true
}

sensitivity() {  # sensitivity TASK ARM=LR...: each family at two more beta2 (c), at its tuned lr, renamed so the
  # report keeps them apart (PROTOCOL.md, "beta2 sensitivity"); one pack
  local task=$1 pair setting arm key label values v names=(); shift
  declare -A lr
  for pair in "$@"; do lr[${pair%%=*}]=${pair#*=}; done
  for setting in "${STUDY_SENSITIVITY[@]}"; do
    read -r arm key label values <<< "$setting"
    for v in $values; do
      arm_config "sens_${arm}_${label}_$v" "$arm" "${lr[$arm]}" "name: ${arm}_${label}_$v" "$key: $v"
      names+=("sens_${arm}_${label}_$v")
    done
  done
  sweep "$ROOT/sens/$task" task="$task" '~hydra.sweeper.params.optimizer' "+v2arm=$(join "${names[@]}")" seed="$EVAL_SEEDS"
}

mkdir -p "$ROOT/log"
for task in $GPU_TASKS; do grid "$task" > /dev/null; done
for task in $GPU_TASKS; do
  start=$(date +%s); run_task "$task"
  echo "$task${EPOCHS:+ ($EPOCHS epochs)}: $(( $(date +%s) - start )) s, $(date -u +%Y-%m-%dT%H:%MZ), $($PY -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")')" \
    | tee -a "$ROOT/log/wall.txt"
done
rm -rf "$OUT/runs" && mkdir -p "$OUT/runs"  # the records (no checkpoints), then the report
# tar reads the list itself: xargs would split a long one into several archives, and tar xf stops at the first
(cd "$ROOT" && find tune eval $([ -d sens ] && echo sens) \( -name run.json -o -name metrics.parquet -o -name error.log \) -print0 | tar cf - --null -T -) \
  | tar xf - -C "$OUT/runs"
cp "$ROOT/log/wall.txt" "$OUT/runs/" && cp "$ROOT/log/widen.txt" "$OUT/runs/" 2>/dev/null || true
adaxbench report "$OUT/runs/eval" --out "$OUT" --baseline sched_adam --family table --margin "$MARGINS" > "$OUT/report.log" 2>&1
echo "report: $OUT/report.md"
