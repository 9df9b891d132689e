#!/usr/bin/env bash
# Rerun the best setting per task x optimizer with more seeds (written by `adaxbench best`).
set -euo pipefail
adaxbench run -m optimizer=adam optimizer.lr=0.316 experiment=beta2_ablation_cpu task=reddi_online seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_online_adam
adaxbench run -m optimizer=adax optimizer.lr=3.16 experiment=beta2_ablation_cpu task=reddi_online seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_online_adax
adaxbench run -m optimizer=sched_adafactor optimizer.lr=0.316 experiment=beta2_ablation_cpu task=reddi_online seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_online_sched_adafactor
adaxbench run -m optimizer=sched_adam optimizer.lr=0.316 experiment=beta2_ablation_cpu task=reddi_online seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_online_sched_adam
adaxbench run -m optimizer=sched_adax optimizer.lr=3.16 experiment=beta2_ablation_cpu task=reddi_online seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_online_sched_adax
