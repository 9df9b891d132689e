"""`adaxbench best`: the winning setting per task x optimizer, scored by hand-known values."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from adaxbench.report.best import best_settings, main

from report_fixtures import write_run


def _grid(root, task="fmnist_mlp"):
    # adam: lr 1e-3 has valid accuracies (final) 0.80 / 0.84 over two seeds -> mean 0.82;
    #       lr 1e-2 has 0.90 and a diverged seed -> must lose (a diverged seed scores worst).
    #       lr 1e-4 ends at 0.70 / 0.72 but peaked at 0.95 in epoch 1 (wins only with --mode best).
    spec = [("adam", 1e-3, 0, [0.1, 0.5, 0.80], "completed"), ("adam", 1e-3, 1, [0.1, 0.5, 0.84], "completed"),
            ("adam", 1e-2, 0, [0.1, 0.6, 0.90], "completed"), ("adam", 1e-2, 1, [0.1, 0.2, 0.30], "diverged"),
            ("adam", 1e-4, 0, [0.1, 0.95, 0.70], "completed"), ("adam", 1e-4, 1, [0.1, 0.95, 0.72], "completed"),
            ("sgd", 0.1, 0, [0.1, 0.4, 0.60], "completed"), ("sgd", 0.3, 0, [0.1, 0.4, 0.65], "completed")]
    for i, (opt, lr, seed, valid, status) in enumerate(spec):
        d = write_run(root / str(i), task=task, optimizer=opt, opt={"lr": lr}, seed=seed, status=status, epochs=2,
                      evals={"valid/accuracy": valid, "test/accuracy": np.array(valid) - 0.01,
                             "valid/loss": 1 - np.array(valid)})
        info = json.loads((d / "run.json").read_text())
        info["overrides"] = [f"optimizer={opt}", f"optimizer.lr={lr}", f"seed={seed}"]
        (d / "run.json").write_text(json.dumps(info))


def test_best_final_and_best_mode(tmp_path):
    _grid(tmp_path)
    best = best_settings(tmp_path, "valid/accuracy", "final").set_index("optimizer")
    assert best.loc["adam", "score"] == pytest.approx(0.82) and best.loc["adam", "seeds"] == 2
    assert best.loc["adam", "overrides"] == ["optimizer=adam", "optimizer.lr=0.001"]
    assert best.loc["adam", "settings_tried"] == 3
    assert best.loc["sgd", "score"] == pytest.approx(0.65)
    by_best = best_settings(tmp_path, "valid/accuracy", "best").set_index("optimizer")
    assert by_best.loc["adam", "overrides"] == ["optimizer=adam", "optimizer.lr=0.0001"]
    by_loss = best_settings(tmp_path, "valid/loss", "final").set_index("optimizer")  # lower is better
    assert by_loss.loc["adam", "score"] == pytest.approx(0.18)


def test_best_writes_a_ready_to_launch_script(tmp_path, capsys):
    _grid(tmp_path / "sweep")
    script = tmp_path / "rerun.sh"
    assert main([str(tmp_path / "sweep"), "--write", str(script), "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "fmnist_mlp" in out and "optimizer.lr=0.001" in out
    lines = [l for l in script.read_text().splitlines() if l.startswith("adaxbench")]
    assert len(lines) == 2
    assert lines[0].startswith("adaxbench run -m optimizer=adam optimizer.lr=0.001 seed=0,1,2 hydra.sweep.dir=")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # valid shell


def test_best_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such sweep dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2


def _two_lrs(root, low_seeds, high_seeds, low=(0.80, 0.84, 0.82), high=(0.79, 0.82, 0.81)):
    """adam at lr 1e-3 (the winner) and 1e-2 with the given final valid accuracies per seed."""
    for lr, seeds, values in ((1e-3, low_seeds, low), (1e-2, high_seeds, high)):
        for seed, v in zip(seeds, values):
            d = write_run(root / f"{lr}_{seed}", optimizer="adam", opt={"lr": lr}, seed=seed, epochs=1,
                          evals={"valid/accuracy": [0.1, v], "test/accuracy": [0.1, v]})
            info = json.loads((d / "run.json").read_text())
            info["overrides"] = ["optimizer=adam", f"optimizer.lr={lr}", f"seed={seed}"]
            (d / "run.json").write_text(json.dumps(info))


def test_best_weighs_the_margin_against_the_paired_seed_noise(tmp_path, capsys):
    # Same seeds: differences 0.01, 0.02, 0.01 -> margin 0.04/3, sd of the differences sqrt(1/3) 0.01,
    # SE = sd / sqrt(3) = 0.01/3: a margin of 4.0 SE.  The winner's sd across seeds is 0.02.
    _two_lrs(tmp_path, [0, 1, 2], [0, 1, 2])
    row = best_settings(tmp_path).iloc[0]
    assert row["margin"] == pytest.approx(0.04 / 3) and row["paired"]
    assert row["noise"] == pytest.approx(0.01 / 3) and row["seed_sd"] == pytest.approx(0.02)
    assert row["verdict"] == "clear"
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "margin 0.0133 over adam lr=0.01" in out and "SE of the difference 0.00333 (paired" in out
    assert "sd across seeds 0.02" in out and "margin = 4.0 SE" in out and "tied" not in out


def test_best_says_when_unpaired_seeds_leave_the_winner_tied_within_noise(tmp_path, capsys):
    # Disjoint seeds: Welch's SE = sqrt(0.02²/3 + s²/3) with s² = 7/30000 (0.79, 0.82, 0.81)
    # = 0.01453; the margin 0.0133 is 0.92 SE < 2 SE: a tie.
    _two_lrs(tmp_path, [0, 1, 2], [3, 4, 5])
    row = best_settings(tmp_path).iloc[0]
    assert not row["paired"] and row["noise"] == pytest.approx(np.sqrt(0.02**2 / 3 + 7 / 30000 / 3))
    assert row["verdict"] == "tied"
    assert main([str(tmp_path)]) == 0
    assert "(Welch, unpaired seeds)" in (out := capsys.readouterr().out) and "tied within noise (margin < 2 SE)" in out


def test_best_with_one_tuning_seed_says_the_choice_is_noise_limited(tmp_path, capsys):
    _two_lrs(tmp_path, [0], [0])
    assert best_settings(tmp_path).iloc[0]["verdict"] == "noise-limited"
    assert main([str(tmp_path)]) == 0
    assert "one tuning seed: the choice is noise-limited" in capsys.readouterr().out


def test_best_with_a_diverged_runner_up_does_not_weigh_noise(tmp_path, capsys):
    _two_lrs(tmp_path, [0, 1], [0, 1])
    info = json.loads((tmp_path / "0.01_1" / "run.json").read_text())
    info["status"] = "diverged"
    (tmp_path / "0.01_1" / "run.json").write_text(json.dumps(info))
    assert main([str(tmp_path)]) == 0
    assert "a seed diverged, so the margin is not weighed against the noise" in capsys.readouterr().out


def test_best_writes_effort_curves_of_the_grid(tmp_path, capsys):
    # adam's grid scores 0.82, 0.71 and a diverged point, valued at the task's worst finite score,
    # sgd's 0.60: one trial drawn from adam's grid expects (0.82 + 0.71 + 0.60) / 3.
    _grid(tmp_path / "sweep")
    assert main([str(tmp_path / "sweep"), "--effort", str(tmp_path / "effort")]) == 0
    curves = pd.read_csv(tmp_path / "effort" / "effort.csv").set_index(["optimizer", "k"])
    assert curves.loc[("adam", 1), "expected_best"] == pytest.approx((0.82 + 0.71 + 0.60) / 3)
    assert curves.loc[("adam", 1), "p_all_diverged"] == pytest.approx(1 / 3)
    assert curves.loc[("sgd", 2), "expected_best"] == pytest.approx(0.60 / 4 + 0.65 * 3 / 4)
    assert (tmp_path / "effort" / "effort.png").exists() and "effort.csv" in capsys.readouterr().out


def test_best_calls_two_settings_with_equal_seed_scores_tied(tmp_path):
    # Every seed scores the same at both lrs (a problem where the lr does not matter): SE 0, margin 0.
    _two_lrs(tmp_path, [0, 1], [0, 1], low=(0.8, 0.8), high=(0.8, 0.8))
    row = best_settings(tmp_path).iloc[0]
    assert row["margin"] == 0 and row["noise"] == 0 and row["verdict"] == "tied"
