"""β̂₂ schedules against exact arithmetic: rationals (fractions) for small t, mpmath for t up to 1e9."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import pytest

from adaxbench.optim import beta2_hat
from adaxbench.optim.beta2 import adax_inv_sqrt_normalizer, beta2_hat_and_gain

mpmath.mp.dps = 60


def exact_hat(schedule: str, t: int, beta2: float | None, c: float = 0.8):
    """β̂₂,t straight from the definitions in the issue, in exact / 60-digit arithmetic."""
    if schedule == "adam":
        b = Fraction(beta2)
        return b * (1 - b ** (t - 1)) / (1 - b**t)
    if schedule == "adax":
        b = Fraction(beta2)
        return 1 - b / ((1 + b) ** t - 1)
    return 1 - mpmath.mpf(t) ** (-mpmath.mpf(c))


def mp_hat_gain(schedule: str, t: int, beta2: float | None, c: float = 0.8):
    """(β̂₂, 1 - β̂₂) for huge t, 60 significant digits (mpmath has an unbounded exponent)."""
    t = mpmath.mpf(t)
    if schedule == "adax":
        b = mpmath.mpf(beta2)
        gain = b / ((1 + b) ** t - 1)
    elif schedule == "adam":
        b = mpmath.mpf(beta2)
        gain = (1 - b) / (1 - b**t)
    else:
        gain = t ** (-mpmath.mpf(c))
    return 1 - gain, gain


@pytest.mark.parametrize("schedule,beta2", [("adam", 0.999), ("adam", 0.5), ("adam", 0.01),
                                            ("adax", 1e-4), ("adax", 0.1), ("adax", 0.9), ("adafactor", None)])
def test_small_t_matches_exact_arithmetic(schedule, beta2):
    for t in list(range(1, 60)) + [100, 333, 1000]:
        if schedule == "adam" and beta2 == 0.01 and t > 100:
            continue  # 1 - β2^t is exactly 1 long before; Fraction powers just get slow
        want = exact_hat(schedule, t, beta2)
        hat, gain = beta2_hat_and_gain(schedule, t, beta2 if beta2 is not None else None, 0.8)
        assert hat == pytest.approx(float(want), rel=1e-14, abs=1e-300), (t, hat)
        # 1 - β̂₂ is computed directly, so it is accurate even when β̂₂ rounds to ~1.
        assert gain == pytest.approx(float(1 - want), rel=1e-13, abs=0), (t, gain)
        assert beta2_hat(schedule, t, beta2) == hat


def test_first_step_is_zero_for_every_schedule():
    # v̂_1 = g² exactly: β̂₂,1 = 0 and 1 - β̂₂,1 = 1.
    for schedule, b in [("adam", 0.999), ("adax", 1e-4), ("adax", 0.7), ("adafactor", None)]:
        assert beta2_hat_and_gain(schedule, 1, b, 0.8) == (0.0, 1.0)


def test_hand_values():
    # adam t=2: β2(1-β2)/(1-β2²) = β2/(1+β2); adax t=2: 1 - β2/(2β2+β2²) = (1+β2)/(2+β2); adafactor: 1 - 2^-0.8.
    assert beta2_hat("adam", 2) == pytest.approx(0.999 / 1.999, rel=1e-15)
    assert beta2_hat("adax", 2) == pytest.approx(1.0001 / 2.0001, rel=1e-15)
    assert beta2_hat("adax", 2, beta2=0.5) == pytest.approx(1.5 / 2.5, rel=1e-15)
    assert beta2_hat("adafactor", 2) == pytest.approx(1 - 2**-0.8, rel=1e-15)
    assert beta2_hat("adafactor", 4, decay_rate=0.5) == pytest.approx(0.5, rel=1e-15)
    assert beta2_hat("adam", 5, beta2=0.0) == 0.0


@pytest.mark.parametrize("schedule,beta2", [("adam", 0.999), ("adam", 0.9), ("adax", 1e-4), ("adax", 0.1),
                                            ("adax", 0.5), ("adax", 0.999), ("adafactor", None)])
def test_huge_t_is_finite_and_exact(schedule, beta2):
    # The naive (1+β2)**t raises OverflowError in Python near t = 7e6 at β2 = 1e-4 and near
    # t = 7.4e3 at β2 = 0.1; float32 overflows much earlier.
    for t in [900, 931, 10**4, 9 * 10**5, 10**6, 7 * 10**6, 10**8, 10**9]:
        want_hat, want_gain = mp_hat_gain(schedule, t, beta2)
        hat, gain = beta2_hat_and_gain(schedule, t, beta2, 0.8)
        assert math.isfinite(hat) and math.isfinite(gain)
        assert hat == pytest.approx(float(want_hat), rel=1e-14, abs=0)
        if want_gain > 1e-300:
            assert gain == pytest.approx(float(want_gain), rel=1e-12, abs=0), (t, gain)
        else:  # below the double range: must underflow to (near) zero, never overflow
            assert 0.0 <= gain < 1e-290
        assert beta2_hat(schedule, float(t), beta2) == hat  # integral floats such as 1e9 are accepted


def test_official_eps_factor():
    # 1/√((1+β2)^t - 1): exact at small t, underflows (not overflows) at huge t.
    for beta2 in (1e-4, 0.1, 0.9):
        for t in (1, 2, 10, 1000, 10**6, 10**9):
            want = 1 / mpmath.sqrt((1 + mpmath.mpf(beta2)) ** t - 1)
            got = adax_inv_sqrt_normalizer(t, beta2)
            if want > 1e-300:
                assert got == pytest.approx(float(want), rel=1e-13, abs=0)
            else:
                assert 0.0 <= got < 1e-290
    assert adax_inv_sqrt_normalizer(1, 1e-4) == pytest.approx(100.0, rel=1e-14)


@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule="sgd", t=1), "schedule"),
    (dict(schedule="adam", t=0), "t must"),
    (dict(schedule="adam", t=2.5), "t must"),
    (dict(schedule="adam", t=True), "t must"),
    (dict(schedule="adam", t=3, beta2=1.0), "beta2"),
    (dict(schedule="adam", t=3, beta2=-0.1), "beta2"),
    (dict(schedule="adax", t=3, beta2=0.0), "beta2"),
    (dict(schedule="adax", t=3, beta2=float("nan")), "beta2"),
    (dict(schedule="adafactor", t=3, beta2=0.9), "beta2"),
    (dict(schedule="adafactor", t=3, decay_rate=-0.5), "decay_rate"),
])
def test_invalid_arguments(kwargs, match):
    schedule, t = kwargs.pop("schedule"), kwargs.pop("t")
    with pytest.raises(ValueError, match=match):
        beta2_hat(schedule, t, **kwargs)
