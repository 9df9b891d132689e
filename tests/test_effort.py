"""Tuning-effort curves (Dodge et al. 2019): the closed form against brute force and by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from adaxbench.report.effort import effort_curve, effort_curves, expected_max


def brute_force_max(values, k):
    """The mean of max over all N^k equally likely ordered draws with replacement."""
    return float(np.mean([max(draw) for draw in itertools.product(values, repeat=k)]))


def test_closed_form_matches_enumeration_of_every_draw():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5):
        values = rng.normal(size=n).round(3)
        values[0] = values[-1]  # a tie among the grid's scores
        for k in (1, 2, 3, 4):
            assert expected_max(values, k) == pytest.approx(brute_force_max(values, k), abs=1e-12)


def test_hand_worked_example():
    # Scores 1, 2, 3 and k = 2 draws: P(max = 1) = 1/9, P(max = 2) = 4/9 - 1/9 = 3/9, P(max = 3) = 5/9,
    # so E[max] = (1 + 6 + 15) / 9 = 22/9.  k = 1 is the plain mean; k -> infinity tends to the best score.
    assert expected_max([3.0, 1.0, 2.0], 2) == pytest.approx(22 / 9)
    assert expected_max([3.0, 1.0, 2.0], 1) == pytest.approx(2.0)
    assert expected_max([3.0, 1.0, 2.0], 200) == pytest.approx(3.0)


def test_lower_is_better_takes_the_expected_minimum_and_diverged_points_take_the_floor():
    # Losses 0.5, 0.7 and a diverged grid point valued at the floor 0.9:
    # E[min of 2] = 0.5 (5/9) + 0.7 (3/9) + 0.9 (1/9) = 5.5/9; all diverged with (1/3)^k.
    c = effort_curve(np.array([0.5, 0.7, np.inf]), np.array([False, False, True]), higher_better=False, floor=0.9)
    assert list(c["k"]) == [1, 2, 3]
    assert c["expected_best"].iloc[0] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert c["expected_best"].iloc[1] == pytest.approx(5.5 / 9)
    assert c["p_all_diverged"].tolist() == pytest.approx([1 / 3, 1 / 9, 1 / 27])


def test_curves_per_task_and_optimizer_rise_to_the_grid_best():
    settings = pd.DataFrame({
        "task": ["t"] * 5, "optimizer": ["a", "a", "a", "b", "b"], "metric": ["valid/accuracy"] * 5,
        "score": [0.5, 0.8, -np.inf, 0.7, 0.6], "diverged": [0, 0, 1, 0, 0]})
    curves = effort_curves(settings)
    a = curves[curves["optimizer"] == "a"]
    assert list(a["grid_size"].unique()) == [3] and list(a["k"]) == [1, 2, 3]
    # the diverged point of a takes the task's worst finite score, 0.5
    assert a["expected_best"].iloc[0] == pytest.approx((0.5 + 0.8 + 0.5) / 3)
    assert np.all(np.diff(a["expected_best"]) > 0)
    b = curves[curves["optimizer"] == "b"]
    assert b["expected_best"].tolist() == pytest.approx([0.65, 0.6 / 4 + 0.7 * 3 / 4])
