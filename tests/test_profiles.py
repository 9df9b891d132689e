"""Performance profiles with stratified-bootstrap bands, and rliable's score distributions:
points and bands derived by hand on tiny frames, the CSV layout, the report text and the
figures' shaded bands."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import write_run  # noqa: E402

from adaxbench.report import build_report, performance_profile  # noqa: E402
from adaxbench.report import figures as F  # noqa: E402
from adaxbench.report.aggregate import performance_profile_band, profile_times, score_profile_band  # noqa: E402

INF = math.inf


def _times(strata: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Per-seed times-to-target in the layout of ``best_run_times``."""
    rows = [{"task": t, "optimizer": o, "run": i, "time": v} for (t, o), vs in strata.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_equal_seeds_give_a_zero_width_band():
    # Every seed of a stratum has the same time, so every resample has the point's medians.
    # Ratios a: t1 2/1 = 2, t2 4/4 = 1;  b: t1 1, t2 1.  ρ_a = 0.5 on [1, 2), 1 from 2 on; ρ_b = 1.
    strata = {("t1", "a"): [2, 2, 2], ("t2", "a"): [4, 4], ("t1", "b"): [1, 1], ("t2", "b"): [4, 4, 4]}
    taus = np.array([1.0, 1.5, 2.0, 3.0])
    p = performance_profile_band(_times(strata), ["t1", "t2"], ["a", "b"], taus, n_boot=200)
    assert p.rho["a"].tolist() == [0.5, 0.5, 1.0, 1.0] and p.rho["b"].tolist() == [1.0] * 4
    assert p.lo.equals(p.rho) and p.hi.equals(p.rho) and p.thin == []


# Two tasks, two seeds per task x optimizer.  A resample of two seeds {x, y} has median x, (x+y)/2
# or y with probabilities 1/4, 1/2, 1/4.
#   a on t1 [1, 3] -> 1, 2, 3;   a on t2 [2, ∞] -> 2 (1/4), ∞ (3/4);
#   b on t1 [2, 2] -> 2;         b on t2 [3, 5] -> 3, 4, 5.
# Point (medians a: 2, ∞; b: 2, 4): ratios a 1, ∞; b 1, 1, so ρ_a = 0.5 and ρ_b = 1 for τ ≥ 1.
# Bootstrap, τ = 1: a's t1 ratio ≤ 1 unless its median is 3 (p 3/4); a is fastest on t2 only with
# median 2 (p 1/4); so ρ_a(1) = 0, 0.5, 1 with p 3/16, 10/16, 3/16 -> band [0, 1].
# τ = 1.5: a's t1 ratio is at most 3/2, so ρ_a = 0.5 (p 3/4) or 1 (p 1/4) -> band [0.5, 1].
# b: on t1 its ratio is 2 when a's median is 1 (p 1/4), else 1; on t2 it is b/2 ∈ {1.5, 2, 2.5}
# when a's median is 2 (p 1/4), else 1.  ρ_b(1) = 0 with p 1/16, 1 with p 9/16 -> band [0, 1];
# ρ_b(2) misses t2 only at b = 5 with a = 2 (p 1/16) -> band [0.5, 1]; ρ_b(2.5) = 1 always.
# Every probability lies well beyond 2.5% of either tail, so 2000 resamples give these exactly.
STRATA = {("t1", "a"): [1, 3], ("t2", "a"): [2, INF], ("t1", "b"): [2, 2], ("t2", "b"): [3, 5]}
TAUS = np.array([1.0, 1.5, 2.0, 2.5])


def test_band_by_hand_on_two_tasks():
    p = performance_profile_band(_times(STRATA), ["t1", "t2"], ["a", "b"], TAUS)
    assert p.rho["a"].tolist() == [0.5] * 4 and p.rho["b"].tolist() == [1.0] * 4
    assert p.lo["a"].tolist() == [0.0, 0.5, 0.5, 0.5] and p.hi["a"].tolist() == [1.0] * 4
    assert p.lo["b"].tolist() == [0.0, 0.0, 0.5, 1.0] and p.hi["b"].tolist() == [1.0] * 4
    assert ((p.lo <= p.rho) & (p.rho <= p.hi)).all().all()


def test_band_within_the_range_of_every_possible_resample():
    # Enumerate all 2^2 ordered resamples of each of the four strata (256 combinations), take the
    # medians and the profile of each (performance_profile, checked by hand in test_report.py):
    # no bootstrap band may leave [min, max] of these.
    keys = list(STRATA)
    draws = [[np.median(c) for c in itertools.product(STRATA[k], repeat=len(STRATA[k]))] for k in keys]
    rhos = []
    for meds in itertools.product(*draws):
        times = pd.DataFrame(index=["t1", "t2"], columns=["a", "b"], dtype=float)
        for (task, opt), m in zip(keys, meds):
            times.loc[task, opt] = m
        rhos.append(performance_profile(times, TAUS).to_numpy())
    lo_all, hi_all = np.min(rhos, axis=0), np.max(rhos, axis=0)
    for seed in (0, 1, 2):
        p = performance_profile_band(_times(STRATA), ["t1", "t2"], ["a", "b"], TAUS, n_boot=500, seed=seed)
        assert (lo_all <= p.lo.to_numpy()).all() and (p.hi.to_numpy() <= hi_all).all()
        assert (p.lo.to_numpy() <= p.rho.to_numpy()).all() and (p.rho.to_numpy() <= p.hi.to_numpy()).all()


def test_band_resamples_whole_seed_sets_so_the_median_stays_robust():
    # a on t1: nine seeds at 1 and one at 9; b at 2.  A resample of all ten seeds has a median above
    # 2 only with at least five 9s: P(Bin(10, 0.1) ≥ 5) = 0.0016 < 2.5%, so ρ_a(1) = 1 in the band's
    # whole range, [1, 1].  (Resampling a single seed would give the 9 with p 0.1 and a band [0.5, 1].)
    strata = {("t1", "a"): [1.0] * 9 + [9.0], ("t1", "b"): [2, 2], ("t2", "a"): [1, 1], ("t2", "b"): [1, 1]}
    p = performance_profile_band(_times(strata), ["t1", "t2"], ["a", "b"], np.array([1.0]))
    assert (p.rho.at[1.0, "a"], p.lo.at[1.0, "a"], p.hi.at[1.0, "a"]) == (1.0, 1.0, 1.0)


def test_one_seed_leaves_no_band_and_says_where():
    # b has one seed on t2: its spread is unknown, and every optimizer's ratio on t2 depends on it.
    # c was not run on t2: ∞ there in every resample, a fact rather than a sample, so no reason.
    strata = {("t1", "a"): [1, 2], ("t2", "a"): [2, 3], ("t1", "b"): [2, 2], ("t2", "b"): [4],
              ("t1", "c"): [1, 1]}
    p = performance_profile_band(_times(strata), ["t1", "t2"], ["a", "b", "c"], TAUS, n_boot=100)
    assert p.thin == [("t2", "b")]
    assert p.lo.isna().all().all() and p.hi.isna().all().all()
    # The point still stands: medians a 1.5, 2.5; b 2, 4; c 1, ∞ -> ratios a 1.5, 1; b 2, 1.6; c 1, ∞.
    assert p.rho["a"].tolist() == [0.5, 1.0, 1.0, 1.0]
    assert p.rho["b"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert p.rho["c"].tolist() == [0.5, 0.5, 0.5, 0.5]
    ok = performance_profile_band(_times({k: v for k, v in strata.items() if k != ("t2", "b")}),
                                  ["t1", "t2"], ["a", "b", "c"], TAUS, n_boot=100)
    assert ok.thin == [] and ok.lo.notna().all().all()  # b not run on t2: bands everywhere


def _norm(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = [{"task": t, "optimizer": o, "run": i, "score": s} for (t, o), ss in scores.items() for i, s in enumerate(ss)]
    return pd.DataFrame(rows)


def test_score_profile_by_hand():
    # a: t1 [0, 1], t2 [0.5, 0.5, 0.5].  Fraction ≥ τ per task, then the mean over tasks:
    #   τ = 0: 1;  τ = 0.5: (1/2 + 1) / 2 = 3/4;  τ = 0.6 and 1: (1/2 + 0) / 2 = 1/4.
    # (Pooling the 5 runs would give 1/5 at τ = 1: tasks weigh equally, not runs.)
    # Band: t2's resamples are all 0.5; t1's give 0, 1/2, 1 with p 1/4, 1/2, 1/4, so
    #   τ = 0.5: 1/2, 3/4, 1 -> [1/2, 1];  τ = 0.6, 1: 0, 1/4, 1/2 -> [0, 1/2];  τ = 0: [1, 1].
    # b: one seed on t2 -> no band for b (and only for b: a's resamples do not involve it).
    norm = _norm({("t1", "a"): [0.0, 1.0], ("t2", "a"): [0.5, 0.5, 0.5], ("t1", "b"): [0.5, 0.5], ("t2", "b"): [1.0]})
    taus = np.array([0.0, 0.5, 0.6, 1.0])
    p = score_profile_band(norm, taus)
    assert p.rho["a"].tolist() == [1.0, 0.75, 0.25, 0.25]
    assert p.lo["a"].tolist() == [1.0, 0.5, 0.0, 0.0] and p.hi["a"].tolist() == [1.0, 1.0, 0.5, 0.5]
    assert p.rho["b"].tolist() == [1.0, 1.0, 0.5, 0.5]  # t1: 1, 1, 0, 0; t2: 1, 1, 1, 1
    assert p.lo["b"].isna().all() and p.hi["b"].isna().all() and p.thin == [("t2", "b")]


def test_score_profile_starts_at_one_and_never_rises():
    rng = np.random.default_rng(5)
    norm = _norm({(t, o): list(rng.uniform(size=n)) for t, n in (("t1", 3), ("t2", 5), ("t3", 2)) for o in "ab"})
    taus = np.unique(np.concatenate([np.linspace(0, 1, 101), norm["score"]]))
    p = score_profile_band(norm, taus, n_boot=300)
    for frame in (p.rho, p.lo, p.hi):
        assert (frame.iloc[0] == 1.0).all()  # every normalised score is ≥ 0
        assert (np.diff(frame.to_numpy(), axis=0) <= 0).all()
    assert ((p.lo <= p.rho) & (p.rho <= p.hi)).all().all()


def _acc_hit(epoch: int | None) -> dict[str, list[float]]:
    """A 3-epoch accuracy curve that first reaches 0.8 at ``epoch`` (None: never)."""
    v = [0.1] + [0.9 if epoch is not None and e >= epoch else 0.5 for e in (1, 2, 3)]
    return {"test/accuracy": v}


def test_report_writes_bands_to_csv_and_says_what_they_are(tmp_path):
    # Per-seed epochs to target 0.8: t1 adam 1, 3 and adax 2, 2; t2 adam 2, 2 and adax 1, never.
    # Medians t1 2, 2; t2 2, ∞, so ρ(1) = 1 for adam and 0.5 for adax.
    hits = {("t1", "adam"): [1, 3], ("t1", "adax"): [2, 2], ("t2", "adam"): [2, 2], ("t2", "adax"): [1, None]}
    for (task, opt), es in hits.items():
        for s, e in enumerate(es):
            write_run(tmp_path / "r" / f"{task}-{opt}-{s}", task=task, optimizer=opt, seed=s, target=0.8,
                      evals=_acc_hit(e))
    rep = build_report([tmp_path / "r"], out=tmp_path / "o", baseline="adam", figures=False)
    csv = pd.read_csv(tmp_path / "o" / "performance_profiles.csv", index_col="tau")
    # Old layout kept: a column per optimizer holds ρ; then the bands.
    assert list(csv.columns) == ["adam", "adax", "adam_lo", "adax_lo", "adam_hi", "adax_hi"]
    assert csv.loc[1.0, ["adam", "adax"]].tolist() == [1.0, 0.5]
    # The curve from the per-seed times is the one from aggregate's median_to_target (the old route).
    old = performance_profile(profile_times(rep.aggregate, ["t1", "t2"]), csv.index.to_numpy())
    pd.testing.assert_frame_equal(csv[["adam", "adax"]], old, check_names=False)
    # τ = 1: adam's t1 median exceeds 2 with p 1/4, and adax's t2 median is 1 with p 1/4.
    assert csv.loc[1.0, ["adam_lo", "adam_hi", "adax_lo", "adax_hi"]].tolist() == [0.0, 1.0, 0.0, 1.0]
    s = pd.read_csv(tmp_path / "o" / "score_profiles.csv", index_col="tau")
    assert {"adam", "adam_lo", "adam_hi", "adax", "adax_lo", "adax_hi"} == set(s.columns)
    md = (tmp_path / "o" / "report.md").read_text()
    assert md.count("Shaded: the pointwise 95% band of a stratified bootstrap") == 2 and "No band" not in md
    assert tmp_path / "o" / "score_profiles.csv" in rep.files

    # A third optimizer with a single seed on t2 removes every time band (every ratio on t2 depends
    # on its time) but only its own score band, and the report says why.
    write_run(tmp_path / "r" / "t2-sgd-0", task="t2", optimizer="sgd", seed=0, target=0.8, evals=_acc_hit(3))
    write_run(tmp_path / "r" / "t1-sgd-0", task="t1", optimizer="sgd", seed=0, target=0.8, evals=_acc_hit(3))
    write_run(tmp_path / "r" / "t1-sgd-1", task="t1", optimizer="sgd", seed=1, target=0.8, evals=_acc_hit(3))
    build_report([tmp_path / "r"], out=tmp_path / "o2", baseline="adam", figures=False)
    csv = pd.read_csv(tmp_path / "o2" / "performance_profiles.csv", index_col="tau")
    assert csv.filter(like="_lo").isna().all().all() and csv.filter(like="_hi").isna().all().all()
    s = pd.read_csv(tmp_path / "o2" / "score_profiles.csv", index_col="tau")
    assert s["sgd_lo"].isna().all() and s["adam_lo"].notna().all()
    md = (tmp_path / "o2" / "report.md").read_text()
    assert "No bands: fewer than 2 seeds on t2 / sgd, whose spread" in md
    assert "No band for sgd: fewer than 2 seeds on t2 / sgd, whose spread" in md


def test_figures_shade_each_band_in_its_curves_colour():
    taus = np.array([1.0, 2.0, 4.0])
    rho = pd.DataFrame({"adam": [0.5, 1.0, 1.0], "adax": [1.0, 1.0, 1.0], "sgd": [0.0, 0.5, 0.5]}, index=taus)
    lo, hi = rho - 0.25, (rho + 0.25).clip(upper=1.0)
    lo["sgd"] = hi["sgd"] = np.nan  # no band for sgd: no shading, but its line
    colors = F.optimizer_colors(list(rho.columns))
    for fig, n in (F.profile_figure(rho, colors, "epoch", lo, hi), F.score_profile_figure(rho, colors, lo, hi)):
        (ax,) = fig.axes
        bands = [c for c in ax.collections if (c.get_gid() or "").startswith("band-")]
        assert n == 3 and len(bands) == 2
        assert [to_rgb(b.get_facecolor()[0]) for b in bands] == [to_rgb(colors["adam"]), to_rgb(colors["adax"])]
        assert all(isinstance(b, PolyCollection) for b in bands)
        lines = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("series-")]
        assert [to_rgb(ln.get_color()) for ln in lines] == [to_rgb(colors[k]) for k in rho.columns]
        # The band's outline follows the steps: its vertices span the band's lows and highs.
        ys = bands[0].get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(0.25) and ys.max() == pytest.approx(1.0)
    fig, _ = F.profile_figure(rho, colors, "epoch")  # without bands, as before
    assert not fig.axes[0].collections
