"""Report statistics: Welch's Δ interval and its error rate, the shared best-setting rule,
grid-edge warnings, and the cross-task interquartile mean."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import write_run  # noqa: E402

from adaxbench.report import build_report, score_settings, welch_diff  # noqa: E402
from adaxbench.report.aggregate import _iqm, grid_edge_warnings, iqm_across_tasks  # noqa: E402
from adaxbench.report.best import best_settings  # noqa: E402

SIMS = 4000


def test_welch_interval_by_hand():
    # a = 1..4: mean 2.5, s² = 5/3; b = 2, 4, 6: mean 4, s² = 4.  se² = (5/3)/4 + 4/3 = 1.75,
    # Welch–Satterthwaite df = 1.75² / ((5/12)²/3 + (4/3)²/2) = 3.234719, t(0.975, df) = 3.0557127,
    # so Δ = −1.5 ± 3.0557127 · √1.75 = −1.5 ± 4.0423280.
    d, lo, hi, p, sig = welch_diff([1, 2, 3, 4], [2, 4, 6])
    assert d == pytest.approx(-1.5)
    assert (lo, hi) == (pytest.approx(-5.5423280, abs=1e-6), pytest.approx(2.5423280, abs=1e-6))
    assert 0.05 < p < 1 and not sig
    # One seed on a side: a difference but no interval and no star.
    d, lo, hi, p, sig = welch_diff([1.0], [2.0, 3.0])
    assert d == pytest.approx(-1.5) and math.isnan(lo) and math.isnan(hi) and not sig


def test_no_star_below_three_seeds():
    # The interval excludes 0 by far with two seeds each, but two seeds give no star.
    d, lo, hi, p, sig = welch_diff([10.0, 10.1], [0.0, 0.1])
    assert lo > 0 and p < 0.05 and not sig
    d, lo, hi, p, sig = welch_diff([10.0, 10.1, 10.05], [0.0, 0.1, 0.05])
    assert lo > 0 and sig


def _draw(rng, dist: str, shape):
    if dist == "normal":
        return rng.normal(0.9, 0.01, shape)
    if dist == "lognormal":  # skewed, like losses
        return rng.lognormal(0.0, 1.0, shape)
    # accuracy-like: bounded, skewed towards 1
    return rng.beta(20, 2, shape)


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("dist", ["normal", "lognormal", "beta"])
def test_star_rate_on_identical_distributions_is_at_most_6_percent(n, dist):
    # SIMS comparisons of two optimizers drawn from the same distribution, run through the
    # report's own function at once (it works on stacks of groups).  The percentile bootstrap
    # it replaces starred ~20% / 13% / 7% of them at 3 / 5 / 10 seeds.
    rng = np.random.default_rng(1234 + n)
    a, b = _draw(rng, dist, (SIMS, n)), _draw(rng, dist, (SIMS, n))
    rate = welch_diff(a, b)[4].mean()
    assert rate <= 0.06, rate
    if dist == "normal":  # and it is not trivially conservative: close to the nominal 5%
        assert rate >= 0.03, rate


def test_star_rate_holds_with_unequal_seeds_and_variances():
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, 3.0, (SIMS, 3))  # a noisy optimizer with 3 seeds
    b = rng.normal(0.0, 1.0, (SIMS, 10))  # a stable baseline with 10
    # Welch's df is an approximation: here it runs about a point above nominal, never far.
    assert welch_diff(a, b)[4].mean() <= 0.07


@pytest.mark.parametrize("n,shift,power", [(5, 2.0, 0.7), (10, 1.5, 0.8)])
def test_a_real_shift_is_found(n, shift, power):
    # Optimizers that differ by `shift` seed standard deviations: the star must appear.
    rng = np.random.default_rng(99 + n)
    a, b = rng.normal(shift, 1.0, (SIMS, n)), rng.normal(0.0, 1.0, (SIMS, n))
    found = welch_diff(a, b)[4]
    assert found.mean() >= power, found.mean()
    # and the interval is centred on the truth: it covers the shift ~95% of the time.
    _, lo, hi, _, _ = welch_diff(a, b)
    assert 0.93 <= ((lo <= shift) & (shift <= hi)).mean() <= 0.97


def _runs(rows):
    return pd.DataFrame(rows, columns=["task", "optimizer", "setting", "status", "problem", "sel"])


def test_score_settings_diverged_seed_scores_worst():
    runs = _runs([
        ("t", "adam", "A", "completed", "", 0.95), ("t", "adam", "A", "diverged", "", math.nan),
        ("t", "adam", "B", "completed", "", 0.90), ("t", "adam", "B", "completed", "", 0.92),
        ("t", "adam", "B", "failed", "", 0.10),  # failed: left out
        ("t", "adam", "B", "completed", "metrics.parquet unreadable", 0.10),  # unreadable: left out
        ("t", "sgd", "C", "completed", "", 0.5),
        ("q", "adam", "D", "completed", "", 2.0), ("q", "adam", "E", "completed", "", 1.0),
        ("q", "adam", "E", "diverged", "", 0.1),
    ])
    s = score_settings(runs, {"t": True, "q": False}).set_index("setting")
    assert s.at["A", "score"] == -math.inf and s.at["A", "diverged"] == 1 and s.at["A", "seeds"] == 2
    assert s.at["B", "score"] == pytest.approx(0.91) and s.at["B", "seeds"] == 2
    assert sorted(s.loc[s["is_best"]].index) == ["B", "C", "D"]  # lower is better on q; E diverged once
    assert s.at["E", "score"] == math.inf


def test_grid_edge_warnings():
    def adam(lr, beta1=0.9, epochs=10):
        return {"optimizer.name": "adam", "optimizer.lr": lr, "optimizer.betas": [beta1, 0.999],
                "optimizer.weight_decay": 0.0, "epochs": epochs}
    settings = {"a": adam(1e-3), "b": adam(1e-2), "c": adam(1e-1),
                "d": adam(1.0, beta1=0.5),  # another beta1: not on the lr grid line through the winner
                "e": adam(1e-1, epochs=20)}  # epochs is not a hyperparameter of the grid
    scored = pd.DataFrame({"task": "t", "optimizer": "adam", "setting": list("abcde"),
                           "score": [0.1, 0.5, 0.9, 0.2, 0.3], "is_best": [False, False, True, False, False]})
    (w,) = grid_edge_warnings(scored, settings)
    assert w == "t / adam: best lr 0.1 is the largest tried (0.001 … 0.1, 3 values): widen the grid"
    scored["is_best"] = [True, False, False, False, False]
    assert "best lr 0.001 is the smallest" in grid_edge_warnings(scored, settings)[0]
    scored["is_best"] = [False, True, False, False, False]
    assert grid_edge_warnings(scored, settings) == []


def test_iqm_and_stratified_bootstrap():
    # IQM of 1..8 = mean of the middle half 3, 4, 5, 6 = 4.5 (rliable's trim_mean(0.25)).
    assert _iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)
    norm = pd.DataFrame({"task": ["t1"] * 4 + ["t2"] * 4 + ["t1"] * 2 + ["t2"],
                         "optimizer": ["a"] * 8 + ["b"] * 3, "run": range(11),
                         "score": [0.2, 0.4, 0.6, 0.8, 0.3, 0.3, 0.3, 0.3, 1.0, 1.0, 0.5]})
    iqm = iqm_across_tasks(norm).set_index("optimizer")
    # a: pooled 0.2 0.3 0.3 0.3 0.3 0.4 0.6 0.8 -> middle half 0.3 0.3 0.3 0.4 -> 0.325.
    assert iqm.at["a", "iqm"] == pytest.approx(0.325)
    assert (iqm.at["a", "tasks"], iqm.at["a", "seeds"]) == (2, 8)
    # Seeds are resampled within each task: every resample keeps 4 t2 seeds at 0.3, so the IQM
    # of a resample lies between 0.2-ish and 0.6 and the CI brackets the estimate.
    assert 0.2 <= iqm.at["a", "ci_lo"] <= 0.325 <= iqm.at["a", "ci_hi"] <= 0.6
    # b has one seed on t2: an estimate (3 scores: nothing trimmed, mean 2.5 / 3) but no CI.
    assert iqm.at["b", "iqm"] == pytest.approx(2.5 / 3) and math.isnan(iqm.at["b", "ci_lo"])


def _sweep(root: Path) -> Path:
    """A tuning sweep on one task: adam over 3 lrs, adax over 2; valid/accuracy selects."""
    nan = math.nan
    kw = dict(task="toy", epochs=2)
    plan = {  # (optimizer, lr): [(status, valid finals, test finals)]
        ("adam", 1e-3): [("completed", 0.50, 0.51), ("completed", 0.52, 0.50)],
        ("adam", 1e-2): [("completed", 0.90, 0.89), ("completed", 0.88, 0.87)],
        # Best seed of all, but one seed diverged: it must lose under the shared rule.
        ("adam", 1e-1): [("completed", 0.97, 0.96), ("diverged", nan, nan)],
        ("adax", 1e-3): [("completed", 0.60, 0.60), ("completed", 0.62, 0.61)],
        ("adax", 1e-2): [("completed", 0.80, 0.80), ("completed", 0.82, 0.81)],
    }
    for (opt, lr), seeds in plan.items():
        for s, (status, v, t) in enumerate(seeds):
            d = write_run(root / f"{opt}{lr}-{s}", optimizer=opt, opt={"lr": lr}, seed=s, status=status,
                          evals={"valid/accuracy": [0.1, 0.3, v], "test/accuracy": [0.1, 0.3, t]}, **kw)
            info = json.loads((d / "run.json").read_text())
            info["overrides"].append(f"optimizer.lr={lr}")
            (d / "run.json").write_text(json.dumps(info))
    return root


def test_report_and_best_choose_by_the_same_rule_and_warn_on_grid_edges(tmp_path, capsys):
    sweep = _sweep(tmp_path / "sweep")
    rep = build_report([sweep], out=tmp_path / "o", figures=False)
    agg = rep.aggregate
    won = dict(zip(agg.loc[agg["is_best"], "optimizer"], agg.loc[agg["is_best"], "label"]))
    assert won == {"adam": "adam lr=0.01", "adax": "adax lr=0.01"}
    best = best_settings(sweep).set_index("optimizer")
    assert "optimizer.lr=0.01" in best.at["adam", "overrides"] and "optimizer.lr=0.01" in best.at["adax", "overrides"]
    assert best.at["adam", "metric"] == "valid/accuracy"  # the task's metric is test/accuracy
    assert best.at["adam", "score"] == pytest.approx(0.89)
    edge = "toy / adax: best lr 0.01 is the largest tried (0.001 … 0.01, 2 values): widen the grid"
    assert rep.warnings == [edge] == best.attrs["warnings"]  # adam's 0.01 is inside its grid
    assert edge in (tmp_path / "o" / "report.md").read_text()
    from adaxbench.report.best import main
    assert main([str(sweep)]) == 0
    assert "adaxbench best: warning: " + edge in capsys.readouterr().err


def test_identical_seeds_on_both_sides_get_no_interval_and_no_star():
    """A deterministic problem (reddi_online: the seed changes nothing) gave a zero-width 'interval' and a star
    for a 4e-8 rounding difference between torch's Adam and ScheduledBeta2's Adam schedule."""
    d, lo, hi, p, sig = welch_diff([-0.04843] * 5, [-0.04843 + 4e-8] * 5)
    assert d == pytest.approx(-4e-8, abs=1e-12)
    assert math.isnan(lo) and math.isnan(hi) and math.isnan(p) and not sig
    # One side varies: Welch's interval is proper again.
    d, lo, hi, p, sig = welch_diff([1.0, 1.0, 1.0], [0.0, 0.1, 0.2])
    assert lo < d < hi and sig
    # Stacks of groups: only the degenerate comparison loses its interval.
    _, lo, _, _, sig = welch_diff(np.array([[1.0, 1.0, 1.0], [1.0, 1.1, 1.2]]), np.array([[0.0, 0.0, 0.0], [0.0, 0.1, 0.2]]))
    assert np.isnan(lo[0]) and not sig[0] and sig[1]
