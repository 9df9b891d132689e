"""Write adaxbench/report/references/deepobs_curves.csv: DeepOBS's per-epoch test curves of its tuned settings.

For every setting of adaxbench/report/references/deepobs.yaml (DeepOBS's tuned lr per task and optimizer), all
10 seeds' result files are read from a clone of fsschneider/DeepOBS_Baselines at tag v1.1 with `git show`, and
their `test_accuracies` and `test_losses` (101 values: before training and after each of the 100 epochs) are
written one row per (setting, seed, metric), the epochs as columns e0..e100, to 8 significant digits.

    python scripts/deepobs_curves.py /path/to/DeepOBS_Baselines.git
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import yaml

TAG = "v1.1"
REFS = Path(__file__).resolve().parents[1] / "adaxbench" / "report" / "references"
HEADER = """\
# DeepOBS's per-epoch test curves of its tuned settings: every file of every setting that
# adaxbench/report/references/deepobs.yaml averages (10 seeds, 42..51, per setting).
# Source: github.com/fsschneider/DeepOBS_Baselines, tag {tag} (commit {commit}), the archive that
# DeepOBS's deepobs/scripts/deepobs_get_baselines.sh downloads; read with `git show {tag}:<dir><file>` by
# scripts/deepobs_curves.py. A row is one seed's curve of one metric: column e<k> is index k of the file's
# `test_accuracies` (metric test/accuracy) or `test_losses` (test/loss), k = 0 before training, k = 1..100 after
# epoch k, to 8 significant digits. The file of each (task, optimizer, momentum, seed) is the one deepobs.yaml
# names for that setting's `dir` (random_seed__<seed>__<date>.json).
# DeepOBS-TF conditions: all training images (no validation split), batch 128, constant lr. cifar10_3c3d's
# losses include DeepOBS's L2 term; quadratic_deep logs no accuracy.
# optimizer: adaxbench's name (DeepOBS's Momentum is sgd with momentum 0.99, its SGD sgd with momentum 0).
"""


def show(repo: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, "show", f"{TAG}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def main(repo: str) -> None:
    commit = subprocess.run(["git", "--git-dir", repo, "rev-list", "-n1", TAG], check=True,
                            capture_output=True, text=True).stdout.strip()
    doc = yaml.safe_load((REFS / "deepobs.yaml").read_text())
    settings = {}
    for r in doc["results"]:  # one entry per (task, optimizer, momentum); accuracy and loss share the files
        key = (r["task"], r["optimizer"], (r.get("match") or {}).get("optimizer.momentum", ""))
        settings.setdefault(key, (r["dir"], list(r["seeds"]), r["lr"]))
    out = io.StringIO()
    out.write(HEADER.format(tag=TAG, commit=commit))
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["task", "optimizer", "momentum", "lr", "seed", "metric", *(f"e{k}" for k in range(101))])
    for (task, opt, momentum), (d, files, lr) in settings.items():
        for f in files:
            run = json.loads(show(repo, d + f))
            for metric, key in (("test/accuracy", "test_accuracies"), ("test/loss", "test_losses")):
                if task == "quadratic_deep" and metric == "test/accuracy":
                    continue
                values = run[key]
                assert abs(run["learning_rate"] / lr - 1) < 1e-9, (d + f, run["learning_rate"])
                assert len(values) == 101, (d + f, key, len(values))
                w.writerow([task, opt, momentum, f"{lr:.10g}", run["random_seed"], metric,
                            *(f"{v:.8g}" for v in values)])
    (REFS / "deepobs_curves.csv").write_text(out.getvalue())


if __name__ == "__main__":
    main(sys.argv[1])
