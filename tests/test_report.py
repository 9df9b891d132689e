"""`adaxbench report`: table numbers against hand-derived values, failures, figures, CLI errors."""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import OPTIMIZERS, write_run  # noqa: E402

from adaxbench.report import build_report, performance_profile  # noqa: E402
from adaxbench.report.cli import main  # noqa: E402

NAN = float("nan")


def _acc(values):
    """Accuracy curve plus a matching (irrelevant) loss curve."""
    return {"test/accuracy": values, "test/loss": [1 - v for v in values]}


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """One task, target 0.8, 1.5 s per epoch.  Expected numbers are derived in the tests."""
    root = tmp_path_factory.mktemp("hand")
    kw = dict(task="toy", target=0.8, seconds_per_epoch=1.5)
    adam = [[0.1, 0.5, 0.70, 0.80], [0.1, 0.6, 0.82, 0.81], [0.1, 0.4, 0.60, 0.79]]
    adax = [[0.1, 0.85, 0.9, 0.90], [0.1, 0.80, 0.91, 0.91], [0.1, 0.9, 0.89, 0.89]]
    for s, v in enumerate(adam):
        write_run(root / "sweep" / f"adam{s}", optimizer="adam", seed=s, evals=_acc(v), **kw)
    for s, v in enumerate(adax):
        write_run(root / "sweep" / f"adax{s}", optimizer="adax", seed=s, evals=_acc(v), **kw)
    for s, v in enumerate([[0.1, 0.5, 0.6, 0.7], [0.1, 0.5, 0.6, 0.9]]):
        write_run(root / "sweep" / f"sgd{s}", optimizer="sgd", seed=s, evals=_acc(v), **kw)
    # Reached the target at epoch 1, then diverged: a diverged seed, but a hit for time-to-target.
    write_run(root / "sweep" / "adam3", optimizer="adam", seed=3, status="diverged", error="loss is nan at step 25",
              evals=_acc([0.1, 0.85, NAN, NAN]), **kw)
    write_run(root / "sweep" / "sgd2", optimizer="sgd", seed=2, status="failed", error="RuntimeError: out of memory",
              evals=_acc([0.1, 0.2, 0.3, 0.4]), **kw)
    rep = build_report([root / "sweep"], out=root / "out", baseline="adam", figures=False)
    return rep, rep.aggregate.set_index("optimizer"), (root / "out" / "report.md").read_text()


def test_means_stds_and_counts(hand):
    _, agg, _ = hand
    # adam finals 0.80, 0.81, 0.79 -> mean 0.80, std sqrt((0 + 1e-4 + 1e-4) / 2) = 0.01
    assert agg.at["adam", "final_mean"] == pytest.approx(0.80)
    assert agg.at["adam", "final_std"] == pytest.approx(0.01)
    # adam bests 0.80, 0.82, 0.79 -> mean 0.803333, std sqrt(4.6667e-4 / 2) = 0.0152753
    assert agg.at["adam", "best_mean"] == pytest.approx(2.41 / 3)
    assert agg.at["adam", "best_std"] == pytest.approx(0.0152753, abs=1e-6)
    assert agg.at["adax", "final_mean"] == pytest.approx(0.90)
    assert agg.at["adax", "best_mean"] == pytest.approx(2.71 / 3)
    assert (agg.at["adam", "seeds"], agg.at["adam", "diverged"], agg.at["adam", "failed"]) == (3, 1, 0)
    assert (agg.at["sgd", "seeds"], agg.at["sgd", "diverged"], agg.at["sgd", "failed"]) == (2, 0, 1)


def test_time_to_target(hand):
    _, agg, _ = hand
    # adam: seeds hit 0.8 at epochs 3, 2, never, and the diverged seed at epoch 1 -> 3 of 4.
    assert (agg.at["adam", "reached"], agg.at["adam", "finished"]) == (3, 4)
    assert agg.at["adam", "epochs_to_target"] == pytest.approx(2.0)
    assert agg.at["adam", "seconds_to_target"] == pytest.approx(3.0)  # 1.5 s per epoch
    assert agg.at["adam", "median_to_target"] == pytest.approx(2.5)  # median of 3, 2, ∞, 1
    # adax: 0.85, 0.80 (>= target counts), 0.9 all at epoch 1.
    assert agg.at["adax", "epochs_to_target"] == pytest.approx(1.0)
    assert agg.at["adax", "seconds_to_target"] == pytest.approx(1.5)
    # sgd: only the seed ending at 0.9 reaches it, at epoch 3; the failed seed is not counted.
    assert (agg.at["sgd", "reached"], agg.at["sgd", "finished"]) == (1, 2)
    assert agg.at["sgd", "median_to_target"] == math.inf


def test_delta_paired_where_seeds_are_shared_by_hand(hand):
    _, agg, md = hand
    assert agg.at["adam", "is_baseline"]
    # adax (0.90, 0.91, 0.89) − adam (0.80, 0.81, 0.79) on the same seeds 0, 1, 2: every pair differs
    # by 0.10, so the difference is exact (no spread to test against) and better.
    assert agg.at["adax", "test"] == "exact" and agg.at["adax", "pairs"] == 3
    assert agg.at["adax", "delta"] == pytest.approx(0.10)
    assert math.isnan(agg.at["adax", "ci_lo"]) and agg.at["adax", "verdict"] == "better"
    # sgd ran seeds 0, 1 (and a failed 2), each with its partner in adam's 0, 1, 2 (the diverged 3 is
    # not completed): paired over 2 pairs, d = 0.7 − 0.80, 0.9 − 0.81 = −0.10, +0.09: mean −0.005,
    # s_d = 0.19/√2, se = 0.095, t(0.975, 1) = 12.7062047 -> ± 1.2070894.
    assert agg.at["sgd", "test"] == "paired t" and agg.at["sgd", "pairs"] == 2
    assert agg.at["sgd", "delta"] == pytest.approx(-0.005)
    assert agg.at["sgd", "ci_lo"] == pytest.approx(-0.005 - 1.2070894, abs=1e-6)
    assert agg.at["sgd", "ci_hi"] == pytest.approx(-0.005 + 1.2070894, abs=1e-6)
    assert not agg.at["sgd", "significant"] and agg.at["sgd", "verdict"] == "inconclusive"  # 2 pairs: no verdict
    row = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "0.8 ± 0.01" in row["adam"] and "baseline" in row["adam"]
    # adam's seed 3 diverged: the baseline alone, so adax may still be better, with the count named.
    assert "+0.1 (exact)" in row["adax"] and "| better (exact) (1 of 4 seeds diverged) |" in row["adax"]
    assert "paired t, 2 pairs" in row["sgd"] and "inconclusive: fewer than 3 seeds; 1 of 4 seeds diverged" in row["sgd"]
    assert "*" not in row["sgd"] and "| 3/4 |" in row["adam"]
    assert "no difference" not in md.lower()


def test_delta_welch_where_seeds_differ_by_hand(tmp_path):
    # adax on seeds 10, 11, 12 against adam on 0, 1, 2: no partners, Welch.  adax − adam: Δ = 0.10;
    # both s² = 1e-4, n = 3: se = sqrt(2e-4 / 3) = 0.0081650, df = 4, t(0.975, 4) = 2.7764451 -> ± 0.0226698;
    # t = 12.2474487; for 4 df P(T ≤ t) = 1/2 + (3/4) a (1 − a²/3) with a = t/√(4 + t²), so two-sided
    # p = 2.5521675e-4: better, alone in its family (Holm changes nothing).
    for s, v in enumerate([0.80, 0.81, 0.79]):
        write_run(tmp_path / f"adam{s}", task="toy", optimizer="adam", seed=s, evals=_acc([0.1, 0.5, 0.6, v]))
    for s, v in enumerate([0.90, 0.91, 0.89]):
        write_run(tmp_path / f"adax{s}", task="toy", optimizer="adax", seed=10 + s, evals=_acc([0.1, 0.5, 0.6, v]))
    rep = build_report([tmp_path], out=tmp_path / "o", figures=False)
    a = rep.aggregate.set_index("optimizer").loc["adax"]
    assert a["test"] == "Welch t" and a["pairs"] == 0
    assert (a["ci_lo"], a["ci_hi"]) == (pytest.approx(0.0773302, abs=1e-6), pytest.approx(0.1226698, abs=1e-6))
    assert a["p_value"] == pytest.approx(2.5521675e-4, rel=1e-6) and a["p_holm"] == a["p_value"]
    assert a["significant"] and a["verdict"] == "better"
    md = (tmp_path / "o" / "report.md").read_text()
    assert "+0.1 [+0.07733, +0.1227] *" in md and "| Welch t |" in md


def test_performance_profile_by_hand():
    times = pd.DataFrame({"x": [1.0, 4.0, math.inf, math.inf], "y": [2.0, 2.0, 3.0, math.inf]},
                         index=["A", "B", "C", "D"])  # nobody solved D
    rho = performance_profile(times, np.array([1.0, 1.5, 2.0, 100.0]))
    # ratios x: 1, 2, ∞, ∞;  y: 2, 1, 1, ∞
    assert rho["x"].tolist() == pytest.approx([0.25, 0.25, 0.5, 0.5])
    assert rho["y"].tolist() == pytest.approx([0.5, 0.5, 0.75, 0.75])


def test_lower_is_better_metric_and_time_axis(tmp_path):
    for s, v in enumerate([[2.0, 1.0, 0.5, 0.4], [2.0, 0.45, 0.3, 0.2]]):
        write_run(tmp_path / "r" / str(s), task="quad", seed=s, seconds_per_epoch=2.0,
                  evals={"train/loss": v})
    rep = build_report([tmp_path / "r"], out=tmp_path / "o", metric="train/loss", target=0.5, x="time",
                       figures=False)
    a = rep.aggregate.iloc[0]
    assert a["final_mean"] == pytest.approx(0.3) and a["best_mean"] == pytest.approx(0.3)
    assert a["epochs_to_target"] == pytest.approx(1.5)  # epochs 2 and 1 (<= target counts)
    assert a["median_to_target"] == pytest.approx(3.0)  # seconds: median of 4 and 2
    # --x step: 10 steps per epoch, so the median of 20 and 10 steps; --select best runs too.
    rep = build_report([tmp_path / "r"], out=tmp_path / "o1", metric="train/loss", target=0.5, x="step",
                       select="best", figures=False)
    assert rep.aggregate.iloc[0]["median_to_target"] == pytest.approx(15.0)
    assert rep.aggregate.iloc[0]["sel_mean"] == pytest.approx(0.3)  # best train/loss 0.4, 0.2
    # Synthetic task without test/accuracy: the default metric falls back to what it logged.
    rep = build_report([tmp_path / "r"], out=tmp_path / "o2", target="quad=0.35", figures=False)
    assert rep.aggregate.iloc[0]["metric"] == "train/loss"
    assert rep.aggregate.iloc[0]["reached"] == 1


def test_grouping_labels_and_bookkeeping(tmp_path):
    for s in range(2):
        for lr in (1e-3, 1e-2):
            d = write_run(tmp_path / f"adam{lr}-{s}", optimizer="adam", opt={"lr": lr}, seed=s)
            info = json.loads((d / "run.json").read_text())
            info["config"]["trainer"]["device"] = f"cuda:{s}"  # bookkeeping: must not split groups
            info["config"]["data"]["root"] = f"/data{s}"
            (d / "run.json").write_text(json.dumps(info))
        write_run(tmp_path / f"adax{s}", optimizer="adax", seed=s)
    rep = build_report([tmp_path], out=tmp_path / "o", figures=False)
    assert sorted(rep.aggregate["label"]) == ["adam lr=0.001", "adam lr=0.01", "adax"]
    assert rep.aggregate["seeds"].tolist() == [2, 2, 2]
    assert set(rep.summary["config.optimizer.lr"]) == {1e-3, 1e-2, 2e-3}


def test_failures_are_listed_not_dropped(tmp_path):
    ok = write_run(tmp_path / "sweep" / "ok")
    bad = {
        "div": write_run(tmp_path / "sweep" / "div", status="diverged", error="loss is nan"),
        "fail": write_run(tmp_path / "sweep" / "fail", status="failed", error="ValueError: bad lr"),
        "run": write_run(tmp_path / "sweep" / "run", status="running"),
        "intr": write_run(tmp_path / "sweep" / "intr", status="interrupted"),
        "pq": write_run(tmp_path / "sweep" / "pq"),
        "nometrics": write_run(tmp_path / "sweep" / "nometrics", metrics=False),
        "json": tmp_path / "sweep" / "json",
    }
    (bad["pq"] / "metrics.parquet").write_bytes(b"PAR1 this is not parquet")
    bad["json"].mkdir()
    (bad["json"] / "run.json").write_text('{"status": "completed", "config": ')
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "o"), "--no-figures"]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    section = md.split("## Runs not included")[1]
    for name, d in bad.items():
        assert f"| {d} |" in section or f"{name} |" in section, name
    assert "loss is nan" in section and "ValueError: bad lr" in section
    assert "run.json unreadable" in section and "metrics.parquet unreadable" in section
    assert "metrics.parquet missing" in section and "still running" in section
    assert str(ok) not in section
    agg = pd.read_csv(tmp_path / "o" / "aggregate.csv")
    # One setting: ok is the only usable seed; fail, intr, pq, nometrics are failed; div diverged.
    assert agg[["seeds", "diverged", "failed", "running"]].values.tolist() == [[1, 1, 4, 1]]
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert len(summary) == 8  # every run dir has a row, broken ones included
    html = (tmp_path / "o" / "report.html").read_text()
    assert "run.json unreadable" in html


def test_no_usable_run_is_one_line_exit_2(tmp_path, capsys):
    write_run(tmp_path / "a", status="failed", error="boom")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "run.json").write_text("not json")
    cases = [[str(tmp_path)], [str(tmp_path / "missing")], [str(tmp_path), "--x", "wallclock"],
             [str(tmp_path), "--metric", "accuracy"], [str(tmp_path), "--format", "pdf"], []]
    for argv in cases:
        assert main(argv + ["--out", str(tmp_path / "o")]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("adaxbench report: error:"), (argv, err)
        assert "Traceback" not in err


def _series(svg: Path) -> int:
    root = ET.parse(svg).getroot()  # parseable XML
    return sum(1 for el in root.iter() if (el.get("id") or "").startswith("series-"))


def test_figures_are_valid_png_svg_with_expected_series(tmp_path):
    import matplotlib.image as mpimg

    batch = {"loss": np.linspace(2, 1, 6), "beta2_hat": np.linspace(0.5, 0.9, 6), "eff_lr_mean": np.full(6, 1e-3),
             "eff_lr_median": np.full(6, 1e-4)}
    for task in ("t1", "t2"):
        for s in range(2):
            for lr in (1e-3, 1e-2):
                write_run(tmp_path / task / f"adam{lr}-{s}", task=task, optimizer="adam", opt={"lr": lr}, seed=s,
                          target=0.5, batch=batch)
            write_run(tmp_path / task / f"adax{s}", task=task, optimizer="adax", seed=s, target=0.5, batch=batch)
            write_run(tmp_path / task / f"sgd{s}", task=task, optimizer="sgd", seed=s, target=0.5)
    rep = build_report([tmp_path], out=tmp_path / "o")
    figs = tmp_path / "o" / "figures"
    expected = {
        "t1_curves": 4 * 4,  # 4 settings × (accuracy, loss, minibatch loss vs step, vs time)
        "t1_adaptivity": 3 * 2,  # sgd logged no β̂₂/eff. lr: 3 settings × 2 panels
        "t1_lr_sensitivity": 1,  # only adam varied lr
        "beta2_schedules": 2,  # adam β2=0.999 and adax β2=1e-4 (1 − β̂₂); none for sgd
        "performance_profiles": 3,
    }
    for stem, n in expected.items():
        png = (figs / f"{stem}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", stem
        img = mpimg.imread(figs / f"{stem}.png")
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert _series(figs / f"{stem}.svg") == n == rep.series[stem], stem
    md = (tmp_path / "o" / "report.md").read_text()
    assert "](figures/t1_curves.png)" in md and "](figures/performance_profiles.png)" in md
    html = (tmp_path / "o" / "report.html").read_text()
    assert "src='figures/" not in html and html.count("data:image/png;base64,") == len(rep.series)


def test_html_and_markdown_escape_config_strings(tmp_path):
    evil = "<script>alert('x')</script>|"
    for s in range(2):
        write_run(tmp_path / f"a{s}", optimizer="adam", opt={"note": evil}, seed=s)
        write_run(tmp_path / f"b{s}", optimizer="adam", opt={"note": "plain"}, seed=s)
    build_report([tmp_path], out=tmp_path / "o", figures=False)
    html = (tmp_path / "o" / "report.html").read_text()
    md = (tmp_path / "o" / "report.md").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" not in md and "\\|" in md


# --- figures: inspected as matplotlib Figure objects ---------------------------------------------

from adaxbench.report import figures as F  # noqa: E402
from adaxbench.report import plot as P  # noqa: E402
from adaxbench.report.analysis import analyse  # noqa: E402
from adaxbench.report.references import load_references, references_for  # noqa: E402

DIAG = {"loss": np.linspace(2, 1, 6), "beta2_hat": np.array([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999]),
        "eff_lr_median": np.full(6, 1e-4)}


def _figure_inputs(root: Path):
    """The analysis a report of ``root`` draws its figures from, and the figures' colours."""
    an = analyse([root])
    return an, F.optimizer_colors(an.optimizers)


def _legend_labels(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _inside_and_apart(fig) -> None:
    """Every legend lies inside the figure; no two panel titles overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    r = fig.canvas.get_renderer()
    box = fig.bbox
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for leg in legends:
        b = leg.get_window_extent(r)
        assert box.x0 - 1 <= b.x0 and b.x1 <= box.x1 + 1 and box.y0 - 1 <= b.y0, "legend outside the figure"
    titles = [ax.title.get_window_extent(r) for ax in fig.axes if ax.get_title()]
    for i, a in enumerate(titles):
        for b in titles[i + 1:]:
            assert not a.overlaps(b), "panel titles overlap"


def test_curves_figure_reads_at_900px_with_published_line(tmp_path):
    for s in range(2):
        for lr in (1e-3, 1e-2):
            write_run(tmp_path / f"adam{lr}-{s}", task="cifar10_resnet20", optimizer="adam", opt={"lr": lr}, seed=s,
                      batch=DIAG, target=0.5)
        write_run(tmp_path / f"sgd{s}", task="cifar10_resnet20", optimizer="sgd", seed=s)  # momentum 0.9: SGDM
    # A failed smoke run with another eval_limit: its key must not reach the labels of the others.
    d = write_run(tmp_path / "smoke", task="cifar10_resnet20", optimizer="adam", status="failed", error="x")
    info = json.loads((d / "run.json").read_text())
    info["config"]["trainer"]["eval_limit"] = 100
    (d / "run.json").write_text(json.dumps(info))
    an, colors = _figure_inputs(tmp_path)
    fig, n = F.curves_figure(an, "cifar10_resnet20", colors)
    w, h = fig.get_size_inches() * P.RC["savefig.dpi"]
    assert w == pytest.approx(900) and h < 800  # was 2208 x 432: text shrank to ~6 px on GitHub
    assert [ax.get_title() for ax in fig.axes[:4]] == ["test accuracy", "test loss", "minibatch loss", "minibatch loss"]
    assert n == 3 * 4  # 3 settings x 4 panels
    labels = _legend_labels(fig)
    assert "adam lr=0.001 (n=2)" in labels and "sgd (n=2)" in labels
    assert not any("eval_limit" in lab for lab in labels)
    assert "AdaX paper adam 0.9096 (published)" in labels and "AdaX paper SGDM 0.923 (published)" in labels
    acc = fig.axes[0]
    ref_lines = [ln for ln in acc.get_lines() if (ln.get_gid() or "").startswith("reference-")]
    assert sorted(ln.get_ydata()[0] for ln in ref_lines) == [0.9096, 0.9230]
    assert not any((ln.get_gid() or "").startswith("reference-") for ln in fig.axes[1].get_lines())  # loss panel
    _inside_and_apart(fig)


def test_curves_plot_the_mean_and_std_over_the_usable_seeds(tmp_path):
    """The curve panels draw the mean ± one std over the usable seeds, derived by hand here: the
    analysis' curve table and the figure's lines and bands hold the same numbers."""
    acc = {0: [0.1, 0.5, 0.6, 0.7], 1: [0.2, 0.4, 0.6, 0.9], 2: [0.3, 0.6, 0.6, 0.8]}
    for s in range(3):  # minibatch loss 1, 2, 3 at every step: mean 2, std 1 however it is smoothed
        write_run(tmp_path / f"a{s}", optimizer="adam", seed=s, evals=_acc(acc[s]), steps_per_epoch=34, log_every=1,
                  batch={"loss": np.full(102, 1.0 + s)})
    write_run(tmp_path / "failed", optimizer="adam", seed=3, status="failed", error="x", evals=_acc([9.0] * 4))
    an, colors = _figure_inputs(tmp_path)
    mean, std = [0.2, 0.5, 0.6, 0.8], [0.1, 0.1, 0.0, 0.1]
    (curve,) = an.curves("fmnist_mlp").evals[0].curves
    assert curve.seeds == 3 and list(curve.points["x"]) == [0, 1, 2, 3]
    assert list(curve.points["mean"]) == pytest.approx(mean) and list(curve.points["std"]) == pytest.approx(std, abs=1e-12)
    fig, n = F.curves_figure(an, "fmnist_mlp", colors)
    acc_ax, _, by_step, by_time = fig.axes[:4]
    (line,) = [ln for ln in acc_ax.get_lines() if (ln.get_gid() or "").startswith("series-")]
    assert line.get_label() == "adam (n=3)"
    assert list(line.get_xdata()) == [0, 1, 2, 3] and list(line.get_ydata()) == pytest.approx(mean)
    (band,) = acc_ax.collections
    v = band.get_paths()[0].vertices
    for x, m, sd in zip(range(4), mean, std):
        ys = v[v[:, 0] == x, 1]
        assert (ys.min(), ys.max()) == (pytest.approx(m - sd, abs=1e-12), pytest.approx(m + sd, abs=1e-12))
    assert by_step.get_title() == "minibatch loss (EMA over 2 logs)"  # 102 logs per seed // 50
    for ax, xs in ((by_step, np.arange(1, 103)), (by_time, np.arange(1, 103) / 34)):
        (ln,) = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("series-")]
        assert np.asarray(ln.get_xdata()) == pytest.approx(xs) and set(np.round(ln.get_ydata(), 12)) == {2.0}
        ys = ax.collections[0].get_paths()[0].vertices[:, 1]
        assert (ys.min(), ys.max()) == (pytest.approx(1.0), pytest.approx(3.0))


def test_minibatch_panels_say_why_they_are_empty(tmp_path):
    for s in range(2):  # 3 epochs x 10 steps, log_every 500: no minibatch row at all
        write_run(tmp_path / f"a{s}", optimizer="adam", seed=s, log_every=500, batch={})
    an, colors = _figure_inputs(tmp_path)
    fig, n = F.curves_figure(an, "fmnist_mlp", colors)
    assert n == 2 and len(fig.axes) == 4
    notes = [t.get_text() for ax in fig.axes[2:] for t in ax.texts]
    assert notes == ["no minibatch loss:\ntrainer.log_every = 500 exceeds\nthe runs' 30 steps"] * 2


def test_adaptivity_figure_separates_adam_from_adax_and_lists_only_drawn_lines(tmp_path):
    for s in range(2):
        write_run(tmp_path / f"adam{s}", optimizer="adam", seed=s, batch={"loss": DIAG["loss"], "beta2_hat": DIAG["beta2_hat"]})
        write_run(tmp_path / f"adax{s}", optimizer="adax", seed=s, batch=DIAG)
        write_run(tmp_path / f"sgd{s}", optimizer="sgd", seed=s)  # no diagnostics at all
    an, colors = _figure_inputs(tmp_path)
    fig, n = F.adaptivity_figure(an, "fmnist_mlp", colors)
    b2, step = fig.axes
    assert n == 3  # adam and adax on the β̂₂ panel, adax alone on the step-size panel
    assert b2.get_yscale() == "log" and b2.get_ylabel() == "1 − β̂₂,t"
    lines = {ln.get_label(): ln.get_ydata() for ln in b2.get_lines()}
    assert lines["adam (n=2)"] == pytest.approx([1.0, 0.5, 0.1, 0.01, 0.001, 1e-4])  # 1 − logged β̂₂
    assert sorted(_legend_labels(fig)) == ["adam (n=2)", "adax (n=2)"]  # sgd drew nothing
    _inside_and_apart(fig)


def test_lr_figure_never_joins_settings_that_differ_elsewhere(tmp_path):
    for s in range(2):
        for lr in (1e-3, 1e-2, 1e-1):
            for wd in (0.0, 0.1):
                write_run(tmp_path / f"adam{lr}-{wd}-{s}", optimizer="adam", opt={"lr": lr, "weight_decay": wd},
                          seed=s, evals=_acc([0.1, 0.5, 0.6, 0.7 + lr + wd]))
    an, colors = _figure_inputs(tmp_path)
    fig, n = F.lr_figure(an, "fmnist_mlp", colors)
    (ax,) = fig.axes
    assert n == 2 and sorted(_legend_labels(fig)) == ["adam weight_decay=0", "adam weight_decay=0.1"]
    for c in ax.containers:  # one errorbar container per line
        wd = 0.1 if c.get_label().endswith("=0.1") else 0.0
        assert list(c.lines[0].get_xdata()) == [1e-3, 1e-2, 1e-1]
        assert list(c.lines[0].get_ydata()) == pytest.approx([0.7 + lr + wd for lr in (1e-3, 1e-2, 1e-1)])


def test_beta2_figure_one_log_panel_with_legend():
    fig, n = F.beta2_figure([("adam β2=0.999", ("adam", 0.999, 0.8), "adam"),
                             ("adax β2=0.0001", ("adax", 1e-4, 0.8), "adax")],
                            F.optimizer_colors(["adam", "adax"]), t_max=1e3)
    (ax,) = fig.axes
    assert n == 2 and ax.get_xscale() == ax.get_yscale() == "log"
    assert sorted(_legend_labels(fig)) == ["adam β2=0.999", "adax β2=0.0001"]
    # t = 2: Adam 1 − β2/(1+β2) = 1/(1+β2); AdaX 1 − (1 − 1/(2+β2)) = 1/(2+β2); t = 1: 1 for both.
    at = {ln.get_label(): dict(zip(ln.get_xdata(), ln.get_ydata())) for ln in ax.get_lines()}
    assert (at["adam β2=0.999"][1], at["adam β2=0.999"][2]) == (1.0, pytest.approx(1 / 1.999, rel=1e-12))
    assert (at["adax β2=0.0001"][1], at["adax β2=0.0001"][2]) == (1.0, pytest.approx(1 / 2.0001, rel=1e-12))
    ticks = P._LogTicks(labelOnlyBase=True)
    assert [ticks._num_to_string(x, 1, 1e6) for x in (1, 10, 1e6)] == ["10⁰", "10¹", "10⁶"]
    assert [ticks._num_to_string(x, 1e-3, 1) for x in (1e-3, 0.01, 1)] == ["10⁻³", "10⁻²", "10⁰"]
    assert [ticks._num_to_string(x, 0.01, 10) for x in (0.01, 1, 10)] == ["0.01", "1", "10"]
    _inside_and_apart(fig)


# --- published references ----------------------------------------------------------------------

def test_references_cite_their_source_and_match_like_with_like():
    refs = load_references()
    assert all(r.citation and r.url.startswith("https://") for r in refs)
    paper = {r.optimizer: (r.value, r.value_hi) for r in refs if r.source == "AdaX paper"}
    assert paper == {"adam": (0.9096, None), "amsgrad": (0.9098, None), "adamw": (0.9212, None),
                     "sgd": (0.9230, None), "adax": (0.9160, None), "adaxw": (0.9232, 0.9251)}
    deepobs = [r for r in refs if r.source == "DeepOBS"]
    assert {r.task for r in deepobs} == {"fmnist_2c2d", "cifar10_3c3d", "quadratic_deep"}
    for r in deepobs:  # every value comes from named result files of the tuned lr
        assert r.files and all(f.startswith(f"{r.task}/") and "/random_seed__" in f
                               and f.endswith(".json") and f"lr__{r.lr:.10e}/" in f for f in r.files), r
        # DeepOBS re-ran each tuned setting with seeds 42..51; every entry averages all ten.
        assert sorted(int(f.split("random_seed__")[1].split("__")[0]) for f in r.files) == list(range(42, 52)), r
    by = {(r.task, r.metric, r.note or r.optimizer): r for r in deepobs}
    # cifar10_3c3d Adam: the mean of the ten seeds' final test accuracies (DeepOBS_Baselines v1.1, seeds 42..51).
    adam = by[("cifar10_3c3d", "test/accuracy", "adam")]
    assert adam.value == pytest.approx(
        (0.8503605769230769 + 0.8487580128205128 + 0.8508613782051282 + 0.8513621794871795 + 0.8432491987179487
         + 0.8462540064102564 + 0.8488581730769231 + 0.8489583333333334 + 0.8403445512820513
         + 0.8464543269230769) / 10)
    assert adam.detail() == " (lr 0.000398, 10 seeds)"
    # quadratic_deep SGD: test_losses[-1] of seeds 42..51.
    assert by[("quadratic_deep", "test/loss", "SGD")].value == pytest.approx(
        (87.27961948939732 + 87.52840859549386 + 87.2349112374442 + 87.52428436279297 + 87.51817212785993
         + 87.15270342145648 + 87.16471099853516 + 87.48712267194476 + 87.59065682547433
         + 87.49415479387555) / 10)
    sgdm = {"optimizer.name": "sgd", "optimizer.momentum": 0.9, "optimizer.lr": 0.1}
    assert [r.value for r in references_for(refs, "cifar10_resnet20", "test/accuracy", sgdm)] == [0.9230]
    assert references_for(refs, "fmnist_2c2d", "test/accuracy", sgdm) == []  # DeepOBS has momentum 0.99 or 0
    momentum = {**sgdm, "optimizer.momentum": 0.99}
    assert [r.note for r in references_for(refs, "fmnist_2c2d", "test/accuracy", momentum)] == ["Momentum"]
    assert references_for(refs, "fmnist_2c2d", "test/loss", {"optimizer.name": "adax"}) == []


def test_report_shows_published_column_and_sources(tmp_path):
    for s in range(2):
        write_run(tmp_path / f"adam{s}", task="cifar10_resnet20", optimizer="adam", seed=s)
        write_run(tmp_path / f"adax{s}", task="cifar10_resnet20", optimizer="adax", seed=s)
        write_run(tmp_path / f"sgd{s}", task="cifar10_resnet20", optimizer="sgd", opt={"momentum": 0.5}, seed=s)
    build_report([tmp_path], out=tmp_path / "o", figures=False)
    md = (tmp_path / "o" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| optimizer"))
    assert "| published test/accuracy |" in header
    row = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 0.9096 AdaX paper |" in row["adam"] and "| 0.916 AdaX paper |" in row["adax"]
    assert "| — |" in row["sgd"]  # momentum 0.5 is not the paper's SGDM
    assert "[AdaX paper](https://arxiv.org/abs/2004.09740)" in md and "Table 2" in md


def test_iqm_figure_title_inside_the_figure():
    """The IQM figure's title was cut off at the right edge with names as long as sched_adafactor."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = ["sched_adafactor", "sched_adax", "adax", "sched_adam", "adam"]
    iqm = pd.DataFrame({"optimizer": names, "iqm": np.linspace(0.5, 0.7, 5), "ci_lo": 0.4, "ci_hi": 0.8})
    fig, n = F.iqm_figure(iqm, F.optimizer_colors(names))
    assert n == 5
    FigureCanvasAgg(fig).draw()
    b, box = fig.axes[0].title.get_window_extent(fig.canvas.get_renderer()), fig.bbox
    assert box.x0 <= b.x0 and b.x1 <= box.x1 and b.y1 <= box.y1, "title outside the figure"
    _inside_and_apart(fig)


# --- reports that say what was run (issue 18 §6) ------------------------------------------------

def _reduced_fmnist_2c2d(root: Path) -> Path:
    """3 epochs on 4,096 images of a task whose own budget (and target, and DeepOBS's numbers) is 100
    epochs; adam's runs record the built optimizer's param groups (defaults included)."""
    kw = dict(task="fmnist_2c2d", target=0.91, task_extra={"epochs": 100},
              trainer_extra={"train_limit": 4096, "eval_limit": 1000})
    for s in range(3):
        d = write_run(root / f"adam{s}", optimizer="adam", seed=s, evals=_acc([0.1, 0.6, 0.7, 0.80 + 0.01 * s]), **kw)
        info = json.loads((d / "run.json").read_text())
        info["optimizer_hparams"] = [{"params": [0, 1], "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                                      "weight_decay": 0.0, "amsgrad": False, "maximize": False}]
        (d / "run.json").write_text(json.dumps(info))
        write_run(root / f"sgd{s}", optimizer="sgd", seed=s, evals=_acc([0.1, 0.5, 0.6, 0.75 + 0.01 * s]), **kw)
    return root


def test_report_states_budget_hyperparameters_and_labels_other_budgets(tmp_path):
    rep = build_report([_reduced_fmnist_2c2d(tmp_path / "r")], out=tmp_path / "o", formats=["md"])
    md = (tmp_path / "o" / "report.md").read_text()
    assert ("Budget: 3 epochs, 30 optimizer steps, batch 128, the first 4,096 training examples (trainer.train_limit), "
            "evaluated on 1,000 examples per evaluation split (trainer.eval_limit), lr schedule constant "
            "(warmup_steps=0) (the task's own budget is 100 epochs on the whole training split).") in md
    assert ("target 0.91 (from task config), set for the task's own budget of 100 epochs; ours is 3 epochs on "
            "4,096 training examples, so it is not drawn on the curves") in md
    # Shared hyperparameters once, the rest per row; adam's from its recorded param groups (maximize is
    # a torch default no config names).
    assert "Hyperparameters of every row: weight_decay=0." in md
    row = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| amsgrad=False, betas=(0.9,0.999), eps=1e-08, lr=0.001, maximize=False |" in row["adam"]
    assert "| dampening=0, lr=0.1, momentum=0.9, nesterov=False |" in row["sgd"]
    assert "0.9234 DeepOBS (lr 0.000251, 10 seeds), 100 epochs; ours 3 epochs on 4,096 training examples" in row["adam"]
    svg = (tmp_path / "o" / "figures" / "fmnist_2c2d_curves.svg").read_text()
    assert "target 0.91" not in svg  # the target is for 100 epochs; the curves span 3
    assert "(published, 100 epochs; ours 3 epochs on 4,096 training examples)" in svg
    assert rep.aggregate["steps"].tolist() == [30.0, 30.0]


def test_one_point_series_draw_a_marker_and_empty_panels_say_why(tmp_path):
    for s in range(2):  # accuracy evaluated once (a NaN before it), test loss never finite
        write_run(tmp_path / f"a{s}", optimizer="adam", seed=s, epochs=1,
                  evals={"test/accuracy": [NAN, 0.8 + 0.01 * s], "test/loss": [NAN, NAN]})
    an, colors = _figure_inputs(tmp_path)
    fig, n = F.curves_figure(an, "fmnist_mlp", colors)
    (line,) = [ln for ln in fig.axes[0].get_lines() if (ln.get_gid() or "").startswith("series-")]
    assert line.get_marker() == "o"
    assert [t.get_text() for t in fig.axes[1].texts] == ["no finite test loss\nin any completed run"]


def _two_tasks(root: Path, margin_b=None) -> Path:
    """Task A: adax ~0.1 above adam on every seed (better); task B: within 2e-4 (equivalent at 0.005)."""
    arms = {"A": ([0.80, 0.81, 0.79], [0.90, 0.905, 0.893]), "B": ([0.80, 0.81, 0.79], [0.8001, 0.8099, 0.7902])}
    for task, (adam, adax) in arms.items():
        extra = {"equivalence_margin": margin_b} if task == "B" and margin_b is not None else None
        for s in range(3):
            write_run(root / f"{task}adam{s}", task=task, optimizer="adam", seed=s, evals=_acc([0.1, 0.5, 0.6, adam[s]]),
                      task_extra=extra)
            write_run(root / f"{task}adax{s}", task=task, optimizer="adax", seed=s, evals=_acc([0.1, 0.5, 0.6, adax[s]]),
                      task_extra=extra)
    return root


def test_cross_task_caption_counts_verdicts_and_no_empty_profile(tmp_path):
    rep = build_report([_two_tasks(tmp_path / "r")], out=tmp_path / "o", formats=["md"], figures=False)
    v = rep.aggregate.set_index(["task", "optimizer"])["verdict"]
    assert (v[("A", "adax")], v[("B", "adax")]) == ("better", "equivalent")
    md = (tmp_path / "o" / "report.md").read_text()
    assert "1 better, 0 worse, 1 equivalent, 0 inconclusive (of 2 comparisons)" in md.split("## Task A")[0]
    assert "No performance profile: no optimizer reached the target of any task" in md
    assert "equivalent within ±0.005" in md and "no difference" not in md.lower()


def test_report_flows_one_way_from_its_analysis(tmp_path, monkeypatch):
    """The analysis holds what the text and the figures show: drawing the figures changes nothing in
    it, and the text with figures differs from the text without them only by the figures' images."""
    from adaxbench.report.render import report_blocks

    an = analyse([_two_tasks(tmp_path / "r")])
    assert an.across.verdicts == {"better": 1, "worse": 0, "equivalent": 1, "inconclusive": 0}
    assert an.across.reached is False  # no target: no performance profile, drawn or described
    agg, text = an.agg.copy(), report_blocks(an, {})
    saved = []
    monkeypatch.setattr(F, "save", lambda fig, out_dir, stem: saved.append(stem))  # built, not rendered: fast
    drawn = F.draw_figures(an, tmp_path / "figures")
    pd.testing.assert_frame_equal(an.agg, agg)
    assert sorted(drawn) == sorted(saved) == ["A_curves", "B_curves", "beta2_schedules", "iqm", "score_profiles"]
    blocks = report_blocks(an, drawn)
    assert sorted(b[1] for b in blocks if b[0] == "img") == sorted(f"figures/{stem}.png" for stem in drawn)
    strip = lambda bs: [b if b[0] != "table" else ("table", b[1].to_csv()) for b in bs if b[0] != "img"]  # noqa: E731
    assert strip(blocks)[2:] == strip(text)[2:]  # after the title and its time stamp


def test_family_and_margins(tmp_path):
    root = _two_tasks(tmp_path / "r")
    table = build_report([root], out=tmp_path / "o1", figures=False).aggregate.set_index(["task", "optimizer"])
    task = build_report([root], out=tmp_path / "o2", figures=False, family="task").aggregate.set_index(["task", "optimizer"])
    # Holm over the two comparisons: the smaller p (task A's) doubles; alone in its task it stays.
    pa, pb = table.at[("A", "adax"), "p_value"], table.at[("B", "adax"), "p_value"]
    assert pa < pb and table.at[("A", "adax"), "p_holm"] == pytest.approx(2 * pa)
    assert task.at[("A", "adax"), "p_holm"] == pytest.approx(pa)
    csv = pd.read_csv(tmp_path / "o1" / "aggregate.csv")
    assert {"p_value", "p_holm", "p_tost", "p_tost_holm", "test", "pairs", "verdict", "margin", "seeds_needed",
            "schedule_tv"} <= set(csv.columns)
    # A margin too tight for 3 seeds: inconclusive, with the seeds it would need.
    agg = build_report([root], out=tmp_path / "o3", figures=False, margin="test/accuracy=0.0001").aggregate
    b = agg.set_index(["task", "optimizer"]).loc[("B", "adax")]
    assert b["verdict"] == "inconclusive" and b["margin"] == 0.0001 and b["seeds_needed"] > 3
    # The task's own key, and a task-named --margin over it.
    agg = build_report([_two_tasks(tmp_path / "r2", margin_b=0.0001)], out=tmp_path / "o4", figures=False).aggregate
    b = agg.set_index(["task", "optimizer"]).loc[("B", "adax")]
    assert (b["margin"], b["margin_source"], b["verdict"]) == (0.0001, "task config", "inconclusive")
    agg = build_report([tmp_path / "r2"], out=tmp_path / "o5", figures=False, margin="B=0.01").aggregate
    b = agg.set_index(["task", "optimizer"]).loc[("B", "adax")]
    assert (b["margin"], b["margin_source"], b["verdict"]) == (0.01, "--margin", "equivalent")


def test_bad_margin_and_family_are_one_line_exit_2(tmp_path, capsys):
    root = _two_tasks(tmp_path / "r")
    cases = {"--margin test/foo=0.1": "no task is compared on it", "--margin test/accuracy=-0.01": "not a positive number",
             "--margin test/accuracy=abc": "not a positive number", "--margin =0.1": "expected METRIC=VALUE",
             "--margin accuracy=0.1": "no task is compared on it", "--family everything": "invalid choice"}
    for argv, why in cases.items():
        assert main([str(root), "--out", str(tmp_path / "o"), "--no-figures", *argv.split()]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("adaxbench report: error:") and why in err, (argv, err)
    bad = _two_tasks(tmp_path / "bad", margin_b=-1)
    assert main([str(bad), "--out", str(tmp_path / "o"), "--no-figures"]) == 2
    assert "task B: equivalence_margin -1 for test/accuracy is not a positive number" in capsys.readouterr().err


def _diverging_arms(root: Path, adam_bad=(), adax_bad=(), gap=0.0) -> Path:
    """adam and adax on 5 shared seeds, adax ``gap`` above adam on every seed (±1e-4 noise); the
    seeds in ``*_bad`` diverged (status diverged, NaN from epoch 2)."""
    for s in range(5):
        base = 0.80 + 0.01 * s
        for name, value, bad in (("adam", base, adam_bad), ("adax", base + gap + 1e-4 * (-1) ** s, adax_bad)):
            curve = [0.1, 0.5, NAN, NAN] if s in bad else [0.1, 0.5, 0.6, value]
            write_run(root / f"{name}{s}", optimizer=name, seed=s, evals=_acc(curve),
                      status="diverged" if s in bad else "completed")
    return root


@pytest.mark.parametrize("adam_bad, adax_bad, gap, expected", [
    ((), (4,), 0.0, "inconclusive: 1 of 5 seeds diverged"),  # equivalent on the 4 left: not any more
    ((1,), (), 0.05, "better (1 of 5 seeds diverged)"),      # the baseline alone diverged: still better
    ((), (1, 2), 0.05, "inconclusive: 2 of 5 seeds diverged"),  # the better arm diverged itself
    ((), (1,), -0.05, "worse (1 of 5 seeds diverged)"),
    ((3,), (3,), 0.0, "inconclusive: 1 of 5 seeds diverged"),  # the same seed on both sides
])
def test_diverged_seeds_decide_what_a_verdict_may_say(tmp_path, adam_bad, adax_bad, gap, expected):
    rep = build_report([_diverging_arms(tmp_path / "r", adam_bad, adax_bad, gap)], out=tmp_path / "o",
                       formats=["md"], figures=False)
    row = rep.aggregate.set_index("optimizer").loc["adax"]
    md = (tmp_path / "o" / "report.md").read_text()
    assert expected in md, md.split("## Task")[1][:3000]


def test_losses_have_no_default_margin_and_a_far_delta_plans_detection(tmp_path):
    # adax's loss 0.1 below adam's ± 0.05 (pair differences sd ≈ 0.05·√2): Δ ≈ −0.1, no margin by default.
    for s in range(3):
        noise = (-0.05, 0.0, 0.05)[s]
        write_run(tmp_path / "r" / f"adam{s}", task="L", optimizer="adam", seed=s, task_extra={"metric": "test/loss"},
                  evals={"test/loss": [2.0, 1.5, 1.2, 1.0 + noise]})
        write_run(tmp_path / "r" / f"adax{s}", task="L", optimizer="adax", seed=s, task_extra={"metric": "test/loss"},
                  evals={"test/loss": [2.0, 1.5, 1.2, 0.9 - noise]})
    rep = build_report([tmp_path / "r"], out=tmp_path / "o", formats=["md"], figures=False)
    row = rep.aggregate.set_index("optimizer").loc["adax"]
    md = (tmp_path / "o" / "report.md").read_text()
    assert math.isnan(row["margin"]) and row["verdict"] == "inconclusive"
    assert "inconclusive (no margin: set --margin or the task's equivalence_margin)" in md
    # With m = 0.01 < |Δ|: the pairs a difference test would need at Δ = −0.1, d = (−0.1, −0.2, 0),
    # sd 0.1 (effect 1): 10 pairs at α = 0.05 (family of one).
    rep = build_report([tmp_path / "r"], out=tmp_path / "o2", formats=["md"], figures=False, margin="L=0.01")
    row = rep.aggregate.set_index("optimizer").loc["adax"]
    assert row["verdict"] == "inconclusive" and row["seeds_needed"] == 10
    assert "inconclusive: ~10 pairs to detect Δ = -0.1" in (tmp_path / "o2" / "report.md").read_text()


def test_scheduled_beta2_rows_show_the_beta2_they_run_with(tmp_path):
    sched = {"name": "sched_adam", "_target_": "adaxbench.optim.ScheduledBeta2", "schedule": "adam", "lr": 1e-3,
             "beta1": 0.9, "beta2": None, "decay_rate": 0.8, "eps": 1e-8}
    for name, schedule in (("sched_adam", "adam"), ("sched_adax", "adax"), ("sched_adafactor", "adafactor")):
        for s in range(3):
            write_run(tmp_path / "r" / f"{name}{s}", optimizer=name, seed=s, evals=_acc([0.1, 0.5, 0.6, 0.8 + 0.01 * s]),
                      opt={**sched, "name": name, "schedule": schedule})
    build_report([tmp_path / "r"], out=tmp_path / "o", formats=["md"], figures=False, baseline="sched_adam")
    md = (tmp_path / "o" / "report.md").read_text()
    assert "beta2=None" not in md
    assert "beta2=0.999" in md and "beta2=0.0001" in md


def test_an_arm_whose_every_seed_diverged_is_worse_than_a_baseline_without_divergence(tmp_path):
    for s in range(3):
        write_run(tmp_path / "r" / f"adam{s}", optimizer="adam", seed=s, evals=_acc([0.1, 0.5, 0.6, 0.8]))
        write_run(tmp_path / "r" / f"adax{s}", optimizer="adax", seed=s, evals=_acc([0.1, 0.5, NAN, NAN]),
                  status="diverged")
    rep = build_report([tmp_path / "r"], out=tmp_path / "o", formats=["md"], figures=False)
    row = rep.aggregate.set_index("optimizer").loc["adax"]
    assert row["verdict"] == "worse" and row["diverged_seeds"] == 3 and math.isnan(row["delta"])
    assert "worse (3 of 3 seeds diverged)" in (tmp_path / "o" / "report.md").read_text()


def test_beta2_parts_only_where_a_beta2_optimizer_is_compared(tmp_path):
    # sgd against sgd-like runs of another name: no optimizer with a known β̂₂ schedule, so neither the
    # weighting-distance column nor the β̂₂-schedule section appears; with adam and adax both appear.
    for s, v in enumerate([0.80, 0.81, 0.79]):
        write_run(tmp_path / "plain" / f"sgd{s}", task="toy", optimizer="sgd", seed=s, evals=_acc([0.1, 0.5, 0.6, v]))
        write_run(tmp_path / "plain" / f"sgd2{s}", task="toy", optimizer="sgd", seed=s,
                  opt={**OPTIMIZERS["sgd"], "name": "sgd_fast", "lr": 0.3}, evals=_acc([0.1, 0.5, 0.6, v + 0.01]))
        write_run(tmp_path / "ada" / f"adam{s}", task="toy", optimizer="adam", seed=s, evals=_acc([0.1, 0.5, 0.6, v]))
        write_run(tmp_path / "ada" / f"adax{s}", task="toy", optimizer="adax", seed=s, evals=_acc([0.1, 0.5, 0.6, v]))
    build_report([tmp_path / "plain"], out=tmp_path / "o1", figures=False)
    md = (tmp_path / "o1" / "report.md").read_text()
    assert "weighting distance" not in md and "β̂₂ schedules" not in md
    build_report([tmp_path / "ada"], out=tmp_path / "o2", figures=False)
    md = (tmp_path / "o2" / "report.md").read_text()
    assert "weighting distance" in md and "β̂₂ schedules" in md
