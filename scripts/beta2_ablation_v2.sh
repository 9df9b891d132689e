#!/usr/bin/env bash
# The β̂₂ ablation v2 (issue 21) on a 2-core CPU, as pre-registered in results/beta2_ablation_v2/PROTOCOL.md.
#   scripts/beta2_ablation_v2.sh tune TASK...    # per arm: quarter-decade lr grid x 2 tuning seeds, widened at edges
#   scripts/beta2_ablation_v2.sh eval TASK...    # per arm: its tuned lr on the evaluation seeds; harness checks
#   scripts/beta2_ablation_v2.sh sens            # β2 sensitivity on fmnist_mlp (needs `eval fmnist_mlp`)
#   scripts/beta2_ablation_v2.sh report          # the records (no checkpoints) as runs.tar.xz, the reports
#   scripts/beta2_ablation_v2.sh sitting N       # the protocol's sitting N (1..4; 4 ends with the reports)
#   scripts/beta2_ablation_v2.sh posthoc         # the checks added after the results (PROTOCOL.md, Deviations)
#   scripts/beta2_ablation_v2.sh import-gpu DIR  # fmnist_mlp's stages run on a GPU instead (PROTOCOL.md, Deviations):
#     DIR is GPU_ROOT of `GPU_TASKS=fmnist_mlp GPU_EPOCHS=20 GPU_SENS=1 scripts/beta2_ablation_gpu.sh`; its records
#     are copied (no checkpoints) into this driver's layout: tune|eval/fmnist_mlp/ARM/..., sens/SETTING/...
# Every sweep goes to its own dir, so running a stage again skips its finished runs and resumes a stopped one.
# (When `adaxbench tune` lands, `tune` is one call of it per task; this driver keeps to `run -m` + `best`.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
source scripts/beta2_study_settings.sh
ROOT=${V2_ROOT:-runs/beta2_ablation_v2}
OUT=${V2_OUT:-results/beta2_ablation_v2}
# For plumbing checks at tiny scale only (the study itself sets none of these):
EXTRA=${V2_EXTRA:-}                      # extra overrides for every run
GRID=${V2_GRID:-}                        # one lr grid for every task
TUNE_SEEDS=${V2_TUNE_SEEDS:-$STUDY_TUNE_SEEDS}
EVAL_SEEDS=${V2_EVAL_SEEDS:-$STUDY_EVAL_SEEDS}
REDDI_SEEDS=${V2_REDDI_SEEDS:-range(0,200)}
WIDEN_ROUNDS=${V2_WIDEN_ROUNDS:-$STUDY_WIDEN_ROUNDS}
ARMS="${STUDY_ARMS[*]}"
# The pre-registered equivalence margins (PROTOCOL.md, "Equivalence margins").
MARGINS="fmnist_mlp=0.005,reddi_online=0.002,reddi_stochastic=0.004,quadratic_deep=0.1"
PICK="python scripts/beta2_ablation_v2_pick.py"

grid() {
  [ -n "$GRID" ] && { echo "$GRID"; return; }
  case $1 in
    fmnist_mlp|quadratic_deep|reddi_online|reddi_stochastic) study_grid "$1" ;;
    *) echo "unknown task $1 (fmnist_mlp, quadratic_deep, reddi_online, reddi_stochastic)" >&2; exit 2 ;;
  esac
}
budget() { [ "$1" = fmnist_mlp ] && echo trainer.epochs=20 || true; }  # the others: the task's own budget
tune_seeds() { [ "$1" = reddi_online ] && echo "${TUNE_SEEDS%%,*}" || echo "$TUNE_SEEDS"; }  # deterministic
eval_seeds() { [ "$2" != "${2#sched_}" ] && [ "$1" = reddi_stochastic ] && echo "$REDDI_SEEDS" || echo "$EVAL_SEEDS"; }

sweep() {  # sweep DIR OVERRIDE...: one sweep into its own dir
  local dir=$1; shift
  # shellcheck disable=SC2086,SC2046
  adaxbench run -m experiment=beta2_ablation_v2 "$@" $EXTRA hydra.sweep.dir="$dir" >> "$ROOT/log/runs.log" 2>&1 \
    || { echo "sweep $dir failed: see $ROOT/log/runs.log" >&2; exit 1; }
}
tuned_lr() { $PICK "$ROOT/tune/$1/$2" | cut -d' ' -f2; }

tune() {
  local task=$1 arm d lr next round
  for arm in $ARMS; do
    d=$ROOT/tune/$task/$arm
    # shellcheck disable=SC2046
    sweep "$d/grid" task="$task" optimizer="$arm" optimizer.lr="$(grid "$task")" seed="$(tune_seeds "$task")" $(budget "$task")
    for ((round = 1; round <= WIDEN_ROUNDS; round++)); do
      read -r _ lr next <<< "$($PICK "$d")"
      [ -z "${next:-}" ] && break
      echo "$task $arm: best lr $lr on the grid's edge, widening to $next" | tee -a "$ROOT/log/widen.txt"
      # shellcheck disable=SC2046
      sweep "$d/widen_$next" task="$task" optimizer="$arm" optimizer.lr="$next" seed="$(tune_seeds "$task")" $(budget "$task")
    done
  done
}

evaluate() {
  local task=$1 arm
  for arm in $ARMS; do
    # shellcheck disable=SC2046
    sweep "$ROOT/eval/$task/$arm" task="$task" optimizer="$arm" optimizer.lr="$(tuned_lr "$task" "$arm")" \
      seed="$(eval_seeds "$task" "$arm")" $(budget "$task")
  done
  # The harness checks, untuned: torch's Adam at sched_adam's lr, the authors' AdaX at sched_adax_nobc's.
  # shellcheck disable=SC2046
  sweep "$ROOT/eval/$task/adam" task="$task" optimizer=adam optimizer.lr="$(tuned_lr "$task" sched_adam)" \
    seed="$EVAL_SEEDS" $(budget "$task")
  # shellcheck disable=SC2046
  sweep "$ROOT/eval/$task/adax" task="$task" optimizer=adax optimizer.lr="$(tuned_lr "$task" sched_adax_nobc)" \
    seed="$EVAL_SEEDS" $(budget "$task")
}

sensitivity() {  # each family at two more β2 (c), at its tuned lr; renamed so the report keeps them apart
  local task=fmnist_mlp setting arm key label values v
  for setting in "${STUDY_SENSITIVITY[@]}"; do
    read -r arm key label values <<< "$setting"
    for v in $values; do
      # shellcheck disable=SC2046
      sweep "$ROOT/sens/${arm}_${label}_$v" task=$task optimizer="$arm" optimizer.name="${arm}_${label}_$v" \
        optimizer."$key"="$v" optimizer.lr="$(tuned_lr $task "$arm")" seed="$EVAL_SEEDS" $(budget $task)
    done
  done
}

present() { local p; for p in "$@"; do [ -d "$p" ] && echo "$p"; done; true; }
margins_for() {  # the pre-registered margins of the tasks named in the paths (report refuses others)
  local m out=()
  for m in ${MARGINS//,/ }; do [[ " $* " == *"${m%%=*}"* ]] && out+=("$m"); done
  local IFS=,; echo "${out[*]}"
}
report() {  # report OUT_SUBDIR PATH... -- REPORT_OPTION...: one report over the paths that exist
  local out=$1 paths=() margins; shift
  while [ "$1" != -- ]; do [ -d "$1" ] && paths+=("$1"); shift; done; shift
  [ ${#paths[@]} -eq 0 ] && return 0
  margins=$(margins_for "${paths[@]}")
  mkdir -p "$OUT/$out"
  adaxbench report "${paths[@]}" --out "$OUT/$out" --format md ${margins:+--margin "$margins"} "$@" > "$OUT/$out/report.log" 2>&1 \
    || { echo "report $out failed:" >&2; tail -3 "$OUT/$out/report.log" >&2; exit 1; }
}
publish() {  # the records as runs.tar.xz (no checkpoints), the reports and tuning-effort curves beside them
  rm -rf "$OUT/runs" && mkdir -p "$OUT/runs"  # a fresh copy: no stale record survives
  # tar reads the list itself: xargs would split it into several archives, and tar xf stops at the first
  # shellcheck disable=SC2046
  (cd "$ROOT" && find $(present tune eval sens validation posthoc) \( -name run.json -o -name metrics.parquet -o -name error.log \) \
    -print0 | tar cf - --null -T -) | tar xf - -C "$OUT/runs"
  cp "$ROOT"/log/wall.txt "$ROOT"/log/widen.txt "$OUT/runs/" 2>/dev/null || true
  local ev=$OUT/runs/eval task
  # The confirmatory family: the evidence tasks x 5 arms against sched_adam, one Holm family.
  report report "$ev/fmnist_mlp" "$ev/reddi_online" "$ev/reddi_stochastic" -- --baseline sched_adam --family table
  report bias_correction "$ev/fmnist_mlp" "$ev/reddi_online" "$ev/reddi_stochastic" -- --baseline sched_adax --no-figures
  report quadratic_deep "$ev/quadratic_deep" -- --baseline sched_adam
  report beta2_sensitivity "$ev/fmnist_mlp/sched_adam" "$OUT/runs/sens" -- --baseline sched_adam
  report reddi_grid "$OUT/runs/tune/reddi_online" "$OUT/runs/tune/reddi_stochastic" -- --baseline sched_adam --no-figures
  report validation "$OUT/runs/validation" -- --baseline adam
  report validation_loss "$OUT/runs/validation/fmnist_2c2d" -- --baseline adam --metric test/loss --no-figures
  if [ -d "$OUT/runs/posthoc" ]; then  # outside every family (PROTOCOL.md, Deviations 5 and 6)
    report posthoc_reddi_online "$OUT/runs/posthoc/reddi_online" -- --baseline sched_adam --no-figures
    report posthoc_reddi_stochastic_lr10 "$OUT/runs/posthoc/reddi_stochastic_lr10" -- --baseline sched_adam --no-figures
    report posthoc_reddi_stochastic_lr3.16 "$OUT/runs/posthoc/reddi_stochastic_adam_lr3.16" "$ev/reddi_stochastic/sched_adax" \
      -- --baseline sched_adam --no-figures
    python scripts/beta2_ablation_v2_extras.py "$OUT/runs" "$OUT/extras.md"
  fi
  mkdir -p "$OUT/effort"
  for task in $(present "$OUT"/runs/tune/*); do  # the tuning effort of each task's grid
    adaxbench best "$task" --effort "$OUT/effort/${task##*/}" > "$OUT/effort/${task##*/}.txt" 2>&1 \
      || { echo "best ${task##*/} failed:" >&2; tail -3 "$OUT/effort/${task##*/}.txt" >&2; exit 1; }
  done
  # About 31 MB of small files as a plain tree, 3.5 MB as one archive: `tar xf runs.tar.xz` restores runs/.
  find "$OUT" -name '*.svg' -delete
  python -c 'import sys, tarfile; tarfile.open(sys.argv[1] + "/runs.tar.xz", "w:xz").add(sys.argv[1] + "/runs", "runs")' \
    "$OUT" && rm -rf "$OUT/runs"
}

posthoc() {  # checks added after the results were read (PROTOCOL.md, Deviations 5 and 6); outside every family
  local arms; arms=$(IFS=,; echo "${STUDY_ARMS[*]}")
  # reddi_online: every arm at the lrs only Adam's grid was widened to (deterministic: the 2 seeds are equal)
  sweep "$ROOT/posthoc/reddi_online" task=reddi_online optimizer="$arms" optimizer.lr=178,316 seed="$TUNE_SEEDS" hydra/launcher=packed
  # reddi_stochastic: Adam's and AdaX's schedules at one common lr, the one a tail-mean tuning score picks for both
  sweep "$ROOT/posthoc/reddi_stochastic_lr10" task=reddi_stochastic optimizer=sched_adam,sched_adax optimizer.lr=10 \
    seed="$REDDI_SEEDS" hydra/launcher=packed hydra.launcher.max_pack=64
  # ... and Adam's schedule at AdaX's tuned lr (3.16), against sched_adax's evaluation runs there
  sweep "$ROOT/posthoc/reddi_stochastic_adam_lr3.16" task=reddi_stochastic optimizer=sched_adam optimizer.lr=3.16 \
    seed="$REDDI_SEEDS" hydra/launcher=packed hydra.launcher.max_pack=64
}

validation() {  # DeepOBS's tuned settings under DeepOBS-TF's conditions, as far as 2 cores allow (PROTOCOL.md)
  local q=quadratic_deep f=fmnist_2c2d
  # shellcheck disable=SC2086
  adaxbench run -m "+setting/deepobs=${q}_sgd,${q}_momentum,${q}_adam" seed="$EVAL_SEEDS" trainer.threads=1 \
    trainer.checkpoint=false trainer.progress=false $EXTRA hydra.sweep.dir="$ROOT/validation/$q" >> "$ROOT/log/runs.log" 2>&1
  # shellcheck disable=SC2086
  adaxbench run -m experiment=deepobs_validation "+setting/deepobs=${f}_sgd,${f}_momentum,${f}_adam" \
    seed="${V2_VALIDATION_SEEDS:-0,1,2}" trainer.epochs="${V2_VALIDATION_EPOCHS:-2}" trainer.threads=1 trainer.progress=false \
    $EXTRA hydra.sweep.dir="$ROOT/validation/$f" >> "$ROOT/log/runs.log" 2>&1
}

import_gpu() {  # import_gpu DIR: the GPU script's fmnist_mlp records into this driver's layout, per optimizer name
  python - "$1" "$ROOT" <<'PY'
import json, shutil, sys
from pathlib import Path
src, root = Path(sys.argv[1]), Path(sys.argv[2])
targets = {"tune": "tune/fmnist_mlp/{name}/gpu_{sweep}", "eval": "eval/fmnist_mlp/{name}", "sens": "sens/{name}"}
copied = 0
for stage, pattern in targets.items():
    for record in sorted((src / stage / "fmnist_mlp").glob("*/*/run.json" if stage == "tune" else "*/run.json")):
        run = record.parent
        name = json.loads(record.read_text())["config"]["optimizer"]["name"]
        dest = root / pattern.format(name=name, sweep=run.parent.name) / run.name
        if not dest.exists():
            shutil.copytree(run, dest, ignore=shutil.ignore_patterns("*.pt"))
            copied += 1
print(f"import-gpu: {copied} run dirs copied from {src} into {root}")
PY
  grep -h . "$1"/log/wall.txt >> "$ROOT/log/wall.txt" 2>/dev/null || true
}

timed() {  # timed NAME COMMAND...: run a stage and record its wall time and the machine
  local start; start=$(date +%s)
  "${@:2}"
  echo "$1: $(( $(date +%s) - start )) s, $(date -u +%Y-%m-%dT%H:%MZ), $(getconf _NPROCESSORS_ONLN) cores, $(uname -m), torch threads 1" \
    | tee -a "$ROOT/log/wall.txt"
}

mkdir -p "$ROOT/log"
stage=${1:-}; shift || true
case $stage in
  tune|eval) [ $# -gt 0 ] || { echo "usage: $0 $stage TASK..." >&2; exit 2; }
             for t in "$@"; do grid "$t" > /dev/null; done
             for t in "$@"; do timed "$stage $t" "$([ "$stage" = eval ] && echo evaluate || echo tune)" "$t"; done ;;
  sens) timed sens sensitivity ;;
  validation) timed validation validation ;;
  posthoc) timed posthoc posthoc ;;
  report) publish ;;
  import-gpu) [ -d "${1:-}/eval/fmnist_mlp" ] || { echo "usage: $0 import-gpu GPU_ROOT (with eval/fmnist_mlp in it)" >&2; exit 2; }
              import_gpu "$1" ;;
  sitting)
    case ${1:-} in
      1) for t in reddi_online reddi_stochastic quadratic_deep; do timed "tune $t" tune $t; timed "eval $t" evaluate $t; done
         timed validation validation ;;
      2) timed "tune fmnist_mlp" tune fmnist_mlp ;;
      3) timed "eval fmnist_mlp" evaluate fmnist_mlp ;;
      4) timed sens sensitivity; publish ;;
      *) echo "usage: $0 sitting 1|2|3|4" >&2; exit 2 ;;
    esac ;;
  *) echo "usage: $0 tune TASK... | eval TASK... | sens | validation | posthoc | report | sitting 1..4 | import-gpu DIR" >&2; exit 2 ;;
esac
