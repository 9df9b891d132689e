#!/usr/bin/env bash
# Rerun the best setting per task x optimizer with more seeds (written by `adaxbench best`).
set -euo pipefail
adaxbench run -m optimizer=adam optimizer.lr=1.0 experiment=beta2_ablation_cpu task=reddi_stochastic seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_stochastic_adam
adaxbench run -m optimizer=adax optimizer.lr=1.0 experiment=beta2_ablation_cpu task=reddi_stochastic seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_stochastic_adax
adaxbench run -m optimizer=sched_adafactor optimizer.lr=1.0 experiment=beta2_ablation_cpu task=reddi_stochastic seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_stochastic_sched_adafactor
adaxbench run -m optimizer=sched_adam optimizer.lr=1.0 experiment=beta2_ablation_cpu task=reddi_stochastic seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_stochastic_sched_adam
adaxbench run -m optimizer=sched_adax optimizer.lr=1.0 experiment=beta2_ablation_cpu task=reddi_stochastic seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/reddi_stochastic_sched_adax
