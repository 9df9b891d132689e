#!/usr/bin/env bash
# Rerun the best setting per task x optimizer with more seeds (written by `adaxbench best`).
set -euo pipefail
adaxbench run -m optimizer=adam optimizer.lr=0.001 experiment=beta2_ablation_cpu task=fmnist_2c2d trainer.train_limit=4096 trainer.epochs=2 trainer.eval_limit=1000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_2c2d_adam
adaxbench run -m optimizer=adax optimizer.lr=0.00316 experiment=beta2_ablation_cpu task=fmnist_2c2d trainer.train_limit=4096 trainer.epochs=2 trainer.eval_limit=1000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_2c2d_adax
adaxbench run -m optimizer=sched_adafactor optimizer.lr=0.001 experiment=beta2_ablation_cpu task=fmnist_2c2d trainer.train_limit=4096 trainer.epochs=2 trainer.eval_limit=1000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_2c2d_sched_adafactor
adaxbench run -m optimizer=sched_adam optimizer.lr=0.001 experiment=beta2_ablation_cpu task=fmnist_2c2d trainer.train_limit=4096 trainer.epochs=2 trainer.eval_limit=1000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_2c2d_sched_adam
adaxbench run -m optimizer=sched_adax optimizer.lr=0.001 experiment=beta2_ablation_cpu task=fmnist_2c2d trainer.train_limit=4096 trainer.epochs=2 trainer.eval_limit=1000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_2c2d_sched_adax
