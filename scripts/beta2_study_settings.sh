# shellcheck shell=bash
# The β̂₂ study's pre-registered settings (results/beta2_ablation_v2/PROTOCOL.md), in one place: sourced by
# scripts/beta2_ablation_v2.sh (the CPU study) and scripts/beta2_ablation_gpu.sh (full budgets on a GPU).
STUDY_ARMS=(sched_adam sched_adax sched_adafactor sched_adax_nobc)
STUDY_TUNE_SEEDS=1000,1001        # disjoint from the evaluation seeds
STUDY_EVAL_SEEDS="range(0,10)"    # shared by every arm
STUDY_WIDEN_ROUNDS=3
# β2 sensitivity: each family at two more settings, "ARM KEY LABEL VALUE..." (a run is named ARM_LABEL_VALUE).
STUDY_SENSITIVITY=("sched_adam beta2 b2 0.99 0.9999" "sched_adax beta2 b2 1e-3 1e-5" "sched_adafactor decay_rate c 0.5 1.0")

join() { local IFS=,; echo "$*"; }  # join A B C: A,B,C (a sweep's values)
quarter_decades() {  # quarter_decades LO HI: 10^(k/4) for k = LO..HI, 3 significant digits, comma-separated
  "$(command -v python || command -v python3)" -c \
    "import sys; lo, hi = map(int, sys.argv[1:]); print(','.join(f'{10 ** (k / 4):.3g}' for k in range(lo, hi + 1)))" "$1" "$2"
}
study_grid() {  # study_grid TASK: the task's pre-registered quarter-decade lr grid
  case $1 in
    fmnist_mlp) quarter_decades -14 -9 ;;                  # 3.16e-4 .. 5.62e-3
    fmnist_2c2d|cifar10_3c3d) quarter_decades -15 -10 ;;   # 1.78e-4 .. 3.16e-3, around DeepOBS's Adam (2.5e-4, 3.98e-4)
    quadratic_deep) quarter_decades -10 -2 ;;              # 3.16e-3 .. 3.16e-1
    reddi_online|reddi_stochastic) quarter_decades -8 8 ;; # 1e-2 .. 1e2
    *) return 1 ;;
  esac
}
