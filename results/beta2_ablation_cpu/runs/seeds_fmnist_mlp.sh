#!/usr/bin/env bash
# Rerun the best setting per task x optimizer with more seeds (written by `adaxbench best`).
set -euo pipefail
adaxbench run -m optimizer=adam optimizer.lr=0.00316 experiment=beta2_ablation_cpu task=fmnist_mlp trainer.train_limit=10000 trainer.epochs=3 trainer.eval_limit=5000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_mlp_adam
adaxbench run -m optimizer=adax optimizer.lr=0.00316 experiment=beta2_ablation_cpu task=fmnist_mlp trainer.train_limit=10000 trainer.epochs=3 trainer.eval_limit=5000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_mlp_adax
adaxbench run -m optimizer=sched_adafactor optimizer.lr=0.00316 experiment=beta2_ablation_cpu task=fmnist_mlp trainer.train_limit=10000 trainer.epochs=3 trainer.eval_limit=5000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_mlp_sched_adafactor
adaxbench run -m optimizer=sched_adam optimizer.lr=0.01 experiment=beta2_ablation_cpu task=fmnist_mlp trainer.train_limit=10000 trainer.epochs=3 trainer.eval_limit=5000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_mlp_sched_adam
adaxbench run -m optimizer=sched_adax optimizer.lr=0.00316 experiment=beta2_ablation_cpu task=fmnist_mlp trainer.train_limit=10000 trainer.epochs=3 trainer.eval_limit=5000 seed=0,1,2,3,4 hydra.sweep.dir=runs/beta2_ablation_cpu/seeds/fmnist_mlp_sched_adax
