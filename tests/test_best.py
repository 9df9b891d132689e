"""`adaxbench best`: the winning setting per task x optimizer, scored by hand-known values."""

from __future__ import annotations

import json
import subprocess

import numpy as np
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
