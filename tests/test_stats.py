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


# --- paired tests, Holm, TOST, verdicts (issue 18 §1–3) --------------------------------------------

from statsmodels.stats.weightstats import ttost_paired  # noqa: E402

from adaxbench.report.aggregate import (compare, holm, pair_up, paired_diff, seeds_for_margin, seeds_to_detect,  # noqa: E402
                                        verdict)
from adaxbench.report.render import verdict_text  # noqa: E402


def test_paired_interval_by_hand():
    # d = a − b = 0.5, 0, 1, 1: mean 0.625, s_d² = 0.6875/3, se = s_d/2 = 0.2393568,
    # t(0.975, 3) = 3.1824463 -> ± 0.7617401.
    d, lo, hi, p = paired_diff([1, 2, 3, 4], [0.5, 2, 2, 3])
    assert d == pytest.approx(0.625)
    assert (lo, hi) == (pytest.approx(0.625 - 0.7617401, abs=1e-6), pytest.approx(0.625 + 0.7617401, abs=1e-6))
    # t = 2.6111648; for 3 df P(T ≤ t) = 1/2 + (1/π)[(t/√3)/(1 + t²/3) + atan(t/√3)].
    t = 0.625 / 0.2393568
    cdf = 0.5 + ((t / math.sqrt(3)) / (1 + t * t / 3) + math.atan(t / math.sqrt(3))) / math.pi
    assert p == pytest.approx(2 * (1 - cdf), rel=1e-5)
    # Every pair differs by the same amount: exact, no interval.
    assert math.isnan(paired_diff([1.0, 2.0, 3.0], [0.9, 1.9, 2.9])[1])


def test_pairing_needs_every_seed_of_one_arm_in_the_other():
    assert pair_up([2, 0, 1], [0, 1, 2, 3]) == ([1, 2, 0], [0, 1, 2])  # in seed order
    assert pair_up([0, 1, 2], [1, 2, 3]) is None  # 0 and 3 have no partner
    assert pair_up([0, 0, 1], [0, 1]) is None  # a repeated seed: which is the partner?
    assert pair_up([0, None], [0, 1]) is None
    # compare() says which test it used and over how many pairs.
    c = compare(np.array([0.9, 0.8, 0.7]), np.array([0.85, 0.8, 0.72, 0.5]), [0, 1, 2], [0, 1, 2, 3], 0.1)
    assert (c["test"], c["pairs"]) == ("paired t", 3)
    assert c["delta"] == pytest.approx((0.05 + 0.0 - 0.02) / 3)
    c = compare(np.array([0.9, 0.8, 0.7]), np.array([0.85, 0.8, 0.72]), [5, 6, 7], [0, 1, 2], 0.1)
    assert (c["test"], c["pairs"]) == ("Welch t", 0)


def _sign_flip_p(d: np.ndarray) -> np.ndarray:
    """Exact two-sided sign-flip permutation p of mean(d) (last axis), for a stack of samples."""
    n = d.shape[-1]
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # every sign pattern
    flipped = np.abs(d @ signs.T) / n  # (..., 2^n)
    return (flipped >= np.abs(d.mean(-1, keepdims=True)) - 1e-12).mean(-1)


def test_paired_t_agrees_with_a_sign_flip_permutation_test():
    # The permutation test assumes only that the pair differences are symmetric under the null;
    # on normal differences the paired t's decisions must match it.
    rng = np.random.default_rng(3)
    shift = np.repeat([0.0, 0.5, 1.0, 1.5], 250)[:, None]
    d = rng.normal(shift, 1.0, (1000, 8))
    p_t = paired_diff(d, np.zeros_like(d))[3]
    p_perm = _sign_flip_p(d)
    assert np.median(np.abs(p_t - p_perm)) < 0.02
    assert ((p_t < 0.05) == (p_perm < 0.05)).mean() >= 0.95


def test_holm_by_hand():
    # Sorted p 0.01, 0.02, 0.03, 0.04 of 4: 4·0.01, 3·0.02, 2·0.03, 1·0.04, made monotone -> .04 .06 .06 .06.
    np.testing.assert_allclose(holm([0.03, 0.01, np.nan, 0.04, 0.02]), [0.06, 0.04, np.nan, 0.06, 0.06])


def _tables(rng, n: int, sims: int, effect: float, cells: int = 20):
    """Simulated report tables: a baseline and ``cells`` arms on the same n seeds.  The seed moves every
    arm alike (sd 0.05: init and data order), each run adds its own noise (sd 0.002), each arm is
    ``effect`` above the baseline.  Returns the paired p-values (sims, cells) and the Welch ones."""
    seed_effect = rng.normal(0, 0.05, (sims, 1, n))
    base = seed_effect[:, 0] + rng.normal(0, 0.002, (sims, n))
    arms = seed_effect + effect + rng.normal(0, 0.002, (sims, cells, n))
    return paired_diff(arms, base[:, None])[3], welch_diff(arms, base[:, None])[3]


def _holm_rejects(p: np.ndarray) -> np.ndarray:
    """Holm at 5% on each row (a table) at once.  statsmodels' multipletests, which the report calls,
    runs gc.collect() per call (50 ms here), so thousands of tables go through this vectorised
    step-down instead, checked against the report's holm() on the first tables."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    adj = np.maximum.accumulate(np.take_along_axis(p, order, -1) * (m - np.arange(m)), axis=-1).clip(max=1)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, -1)
    for row, mine in zip(p[:5], out[:5]):
        np.testing.assert_allclose(holm(row), mine)
    return out < 0.05


# The power the report's stars have on such tables, at a real effect of +0.01 (0.2 seed sd, 3.5 sd of a
# pair's difference) in every cell: measured by test_family_wise_error_and_power (SIMS tables, seed 5).
POWER_AT_0_01 = {3: 0.11, 5: 0.97, 10: 1.0}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_family_wise_error_and_power(n):
    rng = np.random.default_rng(5 + n)
    sims = 2000
    p_paired, _ = _tables(rng, n, sims, effect=0.0)
    fwer = _holm_rejects(p_paired).any(axis=1).mean()
    assert fwer <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / sims), fwer  # nominal ± 2 simulation standard errors
    assert (p_paired < 0.05).any(axis=1).mean() > 0.4  # unadjusted, 20 cells star by chance: what Holm fixes
    p_paired, p_welch = _tables(rng, n, sims, effect=0.01)
    power = _holm_rejects(p_paired).mean()
    assert power == pytest.approx(POWER_AT_0_01[n], abs=0.05)
    # Welch on the same paired data sees the seed effect as noise: it finds next to nothing.
    assert _holm_rejects(p_welch).mean() < 0.05


def test_issue_example_paired_finds_what_welch_missed():
    # 5 shared seeds, seed effect sd 0.05, run noise sd 0.002, a real +0.02 in each of 20 cells:
    # Welch starred 0 of 20; paired + Holm stars nearly all of them.
    rng = np.random.default_rng(18)
    p_paired, p_welch = _tables(rng, 5, 200, effect=0.02)
    assert _holm_rejects(p_welch).mean() < 0.02
    assert _holm_rejects(p_paired).mean() > 0.95


def test_tost_by_hand_and_at_the_margin():
    # d = 0.5, 0, 1, 1 (mean 0.625, se 0.2393568, 3 df) within ±2: the larger one-sided p is that of
    # H0: Δ ≥ 2, t = (0.625 − 2)/se = −5.7444498, p = P(T3 ≤ t).
    x, y = np.array([1, 2, 3, 4.0]), np.array([0.5, 2, 2, 3])
    t = (0.625 - 2) / 0.2393568
    cdf = 0.5 + ((t / math.sqrt(3)) / (1 + t * t / 3) + math.atan(t / math.sqrt(3))) / math.pi
    assert compare(x, y, [0, 1, 2, 3], [0, 1, 2, 3], 2.0)["p_tost"] == pytest.approx(cdf, rel=1e-5)
    # At a true difference on the margin, equivalence is claimed at most 5% of the time.
    rng = np.random.default_rng(11)
    d = rng.normal(0.005, 0.004, (4000, 5))
    rate = np.mean([ttost_paired(row, np.zeros(5), -0.005, 0.005)[0] < 0.05 for row in d])
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 4000), rate


def test_seeds_for_margin_by_hand_and_by_simulation():
    # sd 1, margin 1, paired: (t_.95 + t_.9)/√n at n = 10: (1.8331 + 1.3830)/3.1623 = 1.017 > 1;
    # n = 11: (1.8125 + 1.3722)/3.3166 = 0.960 ≤ 1 -> 11 pairs.
    assert seeds_for_margin(1.0, 1.0, paired=True) == 11
    assert seeds_for_margin(1.0, 1.0, paired=True, family=20) > 11  # Holm's strictest threshold α/20
    assert seeds_for_margin(0.0, 1.0, paired=True) is None and seeds_for_margin(1.0, None, paired=True) is None
    # And 11 pairs do give TOST about 80% power at a true Δ of 0.
    rng = np.random.default_rng(2)
    d = rng.normal(0.0, 1.0, (1000, 11))
    power = np.mean([ttost_paired(row, np.zeros(11), -1.0, 1.0)[0] < 0.05 for row in d])
    assert 0.74 <= power <= 0.88, power


def _cell(**kw):
    row = {"test": "paired t", "delta": 0.0, "margin": 0.005, "n": 5, "pairs": 5, "p_holm": 0.5,
           "p_tost_holm": 0.5, "seeds_needed": 40.0, "verdict": ""}
    row.update(kw)
    row["verdict"] = verdict(row, higher_better=True)
    return row


def test_verdict_words():
    assert _cell(delta=0.02, p_holm=0.01)["verdict"] == "better"
    assert _cell(delta=-0.02, p_holm=0.01)["verdict"] == "worse"
    assert verdict(_cell(delta=-0.02, p_holm=0.01), higher_better=False) == "better"  # a loss went down
    eq = _cell(p_tost_holm=0.01)
    assert eq["verdict"] == "equivalent" and verdict_text(eq) == "equivalent within ±0.005"
    inc = _cell()
    assert verdict_text(inc) == "inconclusive: ~40 pairs for ±0.005"
    assert verdict_text(_cell(n=2, pairs=2, p_holm=0.001)) == "inconclusive: fewer than 3 seeds"
    assert _cell(test="exact", delta=1e-8)["verdict"] == "equivalent"
    assert verdict_text(_cell(test="exact", delta=0.1)) == "better (exact)"
    words = {_cell(**kw)["verdict"] for kw in ({}, {"delta": 1, "p_holm": 0.01}, {"p_tost_holm": 0.01},
                                             {"delta": -1, "p_holm": 0})}
    assert words == {"better", "worse", "equivalent", "inconclusive"}


def test_equivalence_comes_first_for_tested_and_exact_cells():
    # An interval inside ±m whose difference is also significant: equivalent, not better.
    both = _cell(delta=0.001, p_holm=0.01, p_tost_holm=0.01)
    assert both["verdict"] == "equivalent" and verdict_text(both) == "equivalent within ±0.005"
    # Exact cells follow the same rule: |Δ| ≤ m equivalent, else Δ ≠ 0 decides the direction.
    assert _cell(test="exact", delta=0.004)["verdict"] == "equivalent"
    assert _cell(test="exact", delta=-0.006)["verdict"] == "worse"
    # Δ = 0 exactly with no margin: nothing to call it equivalent within, and no direction.
    zero = _cell(test="exact", delta=0.0, margin=math.nan)
    assert zero["verdict"] == "inconclusive"
    assert verdict_text(zero) == "inconclusive (no margin: set --margin or the task's equivalence_margin)"
    assert _cell(test="exact", delta=0.3, margin=math.nan)["verdict"] == "better"
    nomargin = _cell(margin=math.nan, p_tost_holm=math.nan, seeds_needed=math.nan)
    assert verdict_text(nomargin) == "inconclusive (no margin: set --margin or the task's equivalence_margin)"


def test_diverged_seeds_rule_out_equivalence_and_allow_only_the_direction_they_strengthen():
    kw = {"diverged_seeds": 1, "compared_seeds": 5}
    eq = _cell(p_tost_holm=0.01, diverged_side="arm", **kw)
    assert eq["verdict"] == "inconclusive" and verdict_text(eq) == "inconclusive: 1 of 5 seeds diverged"
    # Better only when the baseline alone diverged, worse only when the compared arm alone did.
    better = _cell(delta=0.02, p_holm=0.01, diverged_side="baseline", **kw)
    assert better["verdict"] == "better" and verdict_text(better) == "better (1 of 5 seeds diverged)"
    assert _cell(delta=0.02, p_holm=0.01, diverged_side="arm", **kw)["verdict"] == "inconclusive"
    assert _cell(delta=-0.02, p_holm=0.01, diverged_side="arm", **kw)["verdict"] == "worse"
    assert _cell(delta=-0.02, p_holm=0.01, diverged_side="baseline", **kw)["verdict"] == "inconclusive"
    assert _cell(delta=-0.02, p_holm=0.01, diverged_side="both", **kw)["verdict"] == "inconclusive"


def test_seeds_to_detect_by_hand_and_in_the_verdict():
    # Δ = sd (effect size 1), α = 0.05 two-sided, 80% power.  Paired, n = 9: (t_.975,8 + t_.8,8)/3 =
    # (2.306 + 0.889)/3 = 1.065 > 1; n = 10: (2.262 + 0.883)/3.162 = 0.995 ≤ 1 -> 10 pairs (G*Power: 10).
    assert seeds_to_detect(1.0, 1.0, paired=True) == 10 and seeds_to_detect(1.0, -1.0, paired=True) == 10
    # Two arms, sd = √(s_a² + s_b²) = √2: df 2(n − 1); n = 16: (2.042 + 0.854)·√(2/16) = 1.024 > 1;
    # n = 17: (2.037 + 0.853)·√(2/17) = 0.991 ≤ 1 -> 17 a side (G*Power: 17).
    assert seeds_to_detect(math.sqrt(2), 1.0, paired=False) == 17
    assert seeds_to_detect(1.0, 1.0, paired=True, family=5) > 10  # Holm's strictest threshold α/5
    assert seeds_to_detect(0.0, 1.0, paired=True) is None and seeds_to_detect(1.0, 0.0, paired=True) is None
    far = _cell(delta=-0.112, margin=0.004, seeds_needed=14.0)
    assert verdict_text(far) == "inconclusive: ~14 pairs to detect Δ = -0.112"
