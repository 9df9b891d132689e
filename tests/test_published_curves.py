"""DeepOBS's per-epoch curves (references/deepobs_curves.csv) and the report's inside/outside line."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import write_run  # noqa: E402

from adaxbench.report import build_report  # noqa: E402
from adaxbench.report.load import load_runs  # noqa: E402
from adaxbench.report.published_curves import load_curves, spread_line  # noqa: E402
from adaxbench.report.references import load_references  # noqa: E402

DEEPOBS_ADAM_LR = 2.5118864315e-04  # fmnist_2c2d's tuned Adam


def curve(curves, task, optimizer, seed, metric, momentum=float("nan")):
    c = curves[(curves["task"] == task) & (curves["optimizer"] == optimizer) & (curves["seed"] == seed)
               & (curves["metric"] == metric)]
    c = c[c["momentum"].isna()] if math.isnan(momentum) else c[c["momentum"] == momentum]
    return c.set_index("epoch")["value"]


@pytest.mark.parametrize("task,optimizer,momentum,seed,metric,epoch,value", [
    # Copied by hand from the result files (DeepOBS_Baselines v1.1, `git show v1.1:<dir><file>`):
    # quadratic_deep/GradientDescentOptimizer/num_epochs__100__batch_size__128__lr__1.5848931925e-02/
    #   random_seed__47__2019-02-15-16-57-33.json: test_losses[0], [10], [100]
    ("quadratic_deep", "sgd", 0.0, 47, "test/loss", 0, 353.44676426478793),
    ("quadratic_deep", "sgd", 0.0, 47, "test/loss", 10, 92.73545946393695),
    ("quadratic_deep", "sgd", 0.0, 47, "test/loss", 100, 87.15270342145648),
    # cifar10_3c3d/MomentumOptimizer/num_epochs__100__batch_size__128__momentum__9.9e-01__use_nesterov__False__
    #   lr__3.9810717055e-04/random_seed__50__2019-02-15-17-10-15.json: test_accuracies[10], [100], test_losses[10]
    ("cifar10_3c3d", "sgd", 0.99, 50, "test/accuracy", 10, 0.7354767628205128),
    ("cifar10_3c3d", "sgd", 0.99, 50, "test/accuracy", 100, 0.8347355769230769),
    ("cifar10_3c3d", "sgd", 0.99, 50, "test/loss", 10, 1.5632769602995653),
    # fmnist_2c2d/AdamOptimizer/...lr__2.5118864315e-04/random_seed__42__2019-02-13-15-01-30.json
    ("fmnist_2c2d", "adam", float("nan"), 42, "test/accuracy", 1, 0.8618790064102564),
    ("fmnist_2c2d", "adam", float("nan"), 42, "test/loss", 2, 0.33685172349214554),
])
def test_curves_equal_the_source_files(task, optimizer, momentum, seed, metric, epoch, value):
    got = curve(load_curves(), task, optimizer, seed, metric, momentum)
    assert got[epoch] == pytest.approx(value, rel=1e-7)  # stored to 8 significant digits


def test_every_tuned_setting_has_10_seeds_of_101_epochs_ending_at_the_last_epoch_references():
    curves = load_curves()
    refs = load_references()
    deepobs = [r for r in refs if r.source == "DeepOBS"]
    assert len(deepobs) == 12  # fmnist_2c2d accuracy and loss, cifar10_3c3d accuracy, quadratic_deep loss; 3 optimizers
    for r in deepobs:
        momentum = r.match.get("optimizer.momentum", float("nan"))
        sel = curves[(curves["task"] == r.task) & (curves["optimizer"] == r.optimizer) & (curves["metric"] == r.metric)]
        sel = sel[sel["momentum"].isna()] if math.isnan(momentum) else sel[sel["momentum"] == momentum]
        assert sorted(sel["seed"].unique()) == list(range(42, 52)), r
        assert (sel.groupby("seed")["epoch"].agg(lambda e: sorted(e) == list(range(101)))).all()
        assert sel["lr"].unique() == pytest.approx([r.lr], rel=1e-9)
        # deepobs.yaml's value is the mean over the same 10 files of the value after the last epoch
        assert sel[sel["epoch"] == 100]["value"].mean() == pytest.approx(r.value, rel=1e-7)


def hand_curves() -> pd.DataFrame:
    """10 seeds whose range at epochs 0..3 is [0.10, 0.12], [0.85, 0.87], [0.87, 0.89], [0.88, 0.90]."""
    lo, hi = [0.10, 0.85, 0.87, 0.88], [0.12, 0.87, 0.89, 0.90]
    rows = [{"task": "fmnist_2c2d", "optimizer": "adam", "momentum": float("nan"), "lr": DEEPOBS_ADAM_LR, "seed": s,
             "metric": "test/accuracy", "epoch": e, "value": lo[e] + (hi[e] - lo[e]) * s / 9}
            for s in range(10) for e in range(4)]
    return pd.DataFrame(rows)


def _runs(root: Path, lr: float, valid_size: int, means=(0.11, 0.86, 0.895, 0.89)) -> Path:
    for seed, shift in ((0, -0.002), (1, 0.002)):  # two seeds whose mean is `means`
        write_run(root / f"s{seed}", task="fmnist_2c2d", optimizer="adam", seed=seed, opt={"lr": lr},
                  task_extra={"valid_size": valid_size}, evals={"test/accuracy": [m + shift for m in means]})
    return root


def test_spread_line_on_a_hand_built_run_set(tmp_path):
    rs = load_runs([_runs(tmp_path / "tf", DEEPOBS_ADAM_LR, 0)])
    line = spread_line(rs, "fmnist_2c2d", "test/accuracy", list(rs.settings), curves=hand_curves())
    assert line == ("Per epoch against DeepOBS_Baselines v1.1 (test/accuracy): adam lr 0.000251: 3 of 4 epochs inside "
                    "DeepOBS's 10-seed range (mean of our 2 seeds); outside: epoch 2 0.895 above [0.87, 0.89].")
    # Under our own split (10,000 held out) the line says the conditions are not DeepOBS-TF's.
    rs = load_runs([_runs(tmp_path / "pt", DEEPOBS_ADAM_LR, 10000, means=(0.11, 0.86, 0.88, 0.89))])
    line = spread_line(rs, "fmnist_2c2d", "test/accuracy", list(rs.settings), curves=hand_curves())
    assert line.startswith("Per epoch against DeepOBS_Baselines v1.1 (test/accuracy): adam lr 0.000251: 4 of 4 epochs "
                           "inside DeepOBS's 10-seed range (mean of our 2 seeds) — not DeepOBS-TF's conditions")
    # On an edge up to float32 rounding (1e-6 relative) is inside; beyond it, outside.
    edge = (0.10 * (1 - 5e-7), 0.86, 0.89 * (1 + 5e-7), 0.90 * (1 + 3e-6))
    rs = load_runs([_runs(tmp_path / "edge", DEEPOBS_ADAM_LR, 0, means=edge)])
    line = spread_line(rs, "fmnist_2c2d", "test/accuracy", list(rs.settings), curves=hand_curves())
    assert "3 of 4 epochs inside" in line and "outside: epoch 3 0.9 above [0.88, 0.9]." in line
    # Another lr is not DeepOBS's setting: no line.
    rs = load_runs([_runs(tmp_path / "other", 1e-3, 0)])
    assert spread_line(rs, "fmnist_2c2d", "test/accuracy", list(rs.settings), curves=hand_curves()) is None
    assert spread_line(rs, "fmnist_mlp", "test/accuracy", list(rs.settings), curves=hand_curves()) is None


def test_report_says_it_per_task(tmp_path):
    runs = _runs(tmp_path / "runs", DEEPOBS_ADAM_LR, 0, means=(0.1, 0.86, 0.88, 0.895))
    build_report([runs], tmp_path / "out", figures=False, baseline="adam")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Per epoch against DeepOBS_Baselines v1.1 (test/accuracy): adam lr 0.000251: " in md
    assert md.count("Per epoch against DeepOBS_Baselines") == 1
