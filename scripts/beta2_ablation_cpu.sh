#!/usr/bin/env bash
# The β̂₂ ablation on a 2-core CPU, end to end (issue 12; results in results/beta2_ablation_cpu/).
# Per task: tune each optimizer's lr on a log grid (seed 0; experiment=beta2_ablation_cpu), widen the
# grid where `adaxbench best` says the winner sits on its edge (at most 2 rounds), rerun each winner
# with 5 seeds (`best --write`), then report the seed runs.
# (This is how the published results were made. The protocol with >= 2 tuning seeds and evaluation seeds
# disjoint from them is one resumable command: `adaxbench tune`, docs/tuning.md.)
#   scripts/beta2_ablation_cpu.sh [TASK ...]   # tune + best + seeds (default: all six tasks)
#   scripts/beta2_ablation_cpu.sh report       # copy the records (no checkpoints) and write the report
# Two lanes in parallel (one thread each) fit 2 cores:
#   scripts/beta2_ablation_cpu.sh quadratic_deep rosenbrock_2d reddi_online reddi_stochastic &
#   scripts/beta2_ablation_cpu.sh fmnist_mlp fmnist_2c2d; wait; scripts/beta2_ablation_cpu.sh report
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS=1
ROOT=${ABLATION_ROOT:-runs/beta2_ablation_cpu}
OUT=${ABLATION_OUT:-results/beta2_ablation_cpu}
SEEDS=5
# ABLATION_PACKED=1: the synthetic tasks' sweeps run with hydra/launcher=packed (seeds and lr grids as one
# vmapped model; members equal their unpacked runs on CPU). The published results ran without it.
PACKED=${ABLATION_PACKED:-0}
# Reddi's problems have no held-out data: `best` and `report` select on, and report, train/loss, the
# period-average (online) or expected (stochastic) loss at the final x: -0.099 / -0.2 at the optimum
# x = -1, +0.099 / +0.2 at Adam's x = +1. (The average regret R_T/T, also logged, is dominated by the
# path at this T: it favours lrs so small that x barely leaves x0 = 0, where R_T/T ~ 0.099 / 0.2.)
# Reduced budgets of the image tasks (full DeepOBS budget: 60,000 - 10,000 valid images x 100 epochs):
FMNIST_MLP="trainer.train_limit=10000 trainer.epochs=3 trainer.eval_limit=5000"
FMNIST_2C2D="trainer.train_limit=4096 trainer.epochs=2 trainer.eval_limit=1000"

grid() {  # the tuning grid per task (half decades)
  case $1 in
    quadratic_deep) echo 1e-4,3.16e-4,1e-3,3.16e-3,1e-2,3.16e-2,1e-1,3.16e-1,1.0 ;;
    rosenbrock_2d) echo 1e-3,3.16e-3,1e-2,3.16e-2,1e-1,3.16e-1,1.0 ;;
    reddi_online|reddi_stochastic) echo 3.16e-2,1e-1,3.16e-1,1.0 ;;
    fmnist_mlp) echo 1e-4,3.16e-4,1e-3,3.16e-3,1e-2 ;;
    fmnist_2c2d) echo 3.16e-4,1e-3,3.16e-3 ;;
    *) echo "unknown task $1" >&2; exit 2 ;;
  esac
}
extra() {
  case $1 in
    quadratic_deep|rosenbrock_2d|reddi_*) [ "$PACKED" = 1 ] && echo hydra/launcher=packed ;;
    fmnist_mlp) echo "$FMNIST_MLP" ;;
    fmnist_2c2d) echo "$FMNIST_2C2D" ;;
  esac
}

run_task() {
  local task=$1 tune=$ROOT/tune/$1
  # shellcheck disable=SC2046
  adaxbench run -m experiment=beta2_ablation_cpu task="$task" optimizer.lr="$(grid "$task")" $(extra "$task") \
    hydra.sweep.dir="$tune/grid" > "$ROOT/log/tune_$task.log" 2>&1
  for round in 1 2; do  # widen the grid by half a decade where a winner sits on its edge
    adaxbench best "$tune" --seeds $SEEDS > /dev/null 2> "$ROOT/log/best_${task}_$round.err" || true
    local edges
    edges=$(sed -n 's/.*: \(.*\) \/ \([a-z_]*\): best lr \([0-9.e+-]*\) is the \(largest\|smallest\) tried.*/\2 \3 \4/p' \
      "$ROOT/log/best_${task}_$round.err")
    [ -z "$edges" ] && break
    while read -r opt lr side; do
      local new
      new=$(python -c "import sys; v=float(sys.argv[1]); print(f'{v * 10**0.5 if sys.argv[2] == \"largest\" else v / 10**0.5:.3g}')" "$lr" "$side")
      # shellcheck disable=SC2046
      adaxbench run -m experiment=beta2_ablation_cpu task="$task" optimizer="$opt" optimizer.lr="$new" $(extra "$task") \
        hydra.sweep.dir="$tune/widen_${opt}_$new" >> "$ROOT/log/tune_$task.log" 2>&1
    done <<< "$edges"
  done
  adaxbench best "$tune" --seeds $SEEDS --rerun-dir "$ROOT/seeds" --write "$ROOT/seeds_$task.sh" \
    > "$ROOT/log/best_$task.txt" 2>&1
  if [ "$PACKED" = 1 ] && [ -n "$(extra "$task")" ]; then
    sed -i 's|^adaxbench run -m |adaxbench run -m hydra/launcher=packed |' "$ROOT/seeds_$task.sh"
  fi
  bash "$ROOT/seeds_$task.sh" > "$ROOT/log/seeds_$task.log" 2>&1
}

# Equivalence margins of the losses (the report has no default for a loss): the values the task configs'
# equivalence_margin now carry (docs/protocols.md, "Verdicts"), passed explicitly because the published records
# predate that key. quadratic_deep 0.1 (below the 0.07–0.35 between DeepOBS's tuned optimizers); Reddi's
# losses c̄·x in [−c̄, c̄]: 1% of that range (c̄ = 10/101 and 0.2). rosenbrock_2d has none; accuracy keeps 0.005.
MARGINS="quadratic_deep=0.1,reddi_online=0.002,reddi_stochastic=0.004"

publish() {
  rm -rf "$OUT/runs" && mkdir -p "$OUT/runs"  # a fresh copy: no stale record survives
  # The records only: run.json + metrics.parquet (+ error.log where a run failed), no checkpoints.
  (cd "$ROOT" && find tune seeds \( -name run.json -o -name metrics.parquet -o -name error.log \) -print0 \
    | xargs -0 tar cf -) | tar xf - -C "$OUT/runs"
  cp "$ROOT"/seeds_*.sh "$ROOT"/log/best_*.txt "$OUT/runs/" 2>/dev/null || true
  adaxbench report "$OUT/runs/seeds" --out "$OUT" --baseline sched_adam --margin "$MARGINS" > "$OUT/report.log" 2>&1
  # Bias correction / eps apart: the authors' AdaX against the same schedule in the Adam skeleton.
  mkdir -p "$OUT/vs_sched_adax"
  adaxbench report "$OUT/runs/seeds" --out "$OUT/vs_sched_adax" --baseline sched_adax --margin "$MARGINS" --no-figures \
    > "$OUT/vs_sched_adax/report.log" 2>&1 || true
}

mkdir -p "$ROOT/log"
if [ "${1:-}" = report ]; then publish; exit 0; fi
for task in "${@:-quadratic_deep rosenbrock_2d reddi_online reddi_stochastic fmnist_mlp fmnist_2c2d}"; do
  for t in $task; do
    start=$(date +%s); run_task "$t"; echo "$t: $(( $(date +%s) - start )) s" | tee -a "$ROOT/log/wall.txt"
  done
done
