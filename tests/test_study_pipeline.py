"""The one-command GPU study (scripts/beta2_ablation_gpu.sh) end to end on CPU at tiny scale, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARMS = {"sched_adam", "sched_adax", "sched_adafactor", "sched_adax_nobc"}


@pytest.mark.slow
def test_gpu_study_pipeline_at_tiny_scale(tmp_path):
    # A few hundred training examples, 1 epoch, a 2-point grid (its winners sit on an edge, so the grid widens
    # once), 1 tuning seed and 2 evaluation seeds.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPU_ROOT": str(tmp_path / "runs"), "GPU_OUT": str(tmp_path / "out"),
           "GPU_TASKS": "fmnist_mlp", "GPU_GRID": "1e-3,3.16e-3", "GPU_TUNE_SEEDS": "1000", "GPU_EVAL_SEEDS": "0,1",
           "GPU_WIDEN_ROUNDS": "1", "GPU_EPOCHS": "1", "GPU_SENS": "1", "GPU_PRECISION": "bf16",
           "GPU_EXTRA": "trainer.train_limit=300 trainer.eval_limit=200 trainer.device=cpu trainer.threads=1"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "beta2_ablation_gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "runs" / "log" / "runs.log").read_text()

    def records(sub: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((tmp_path / "runs" / sub).rglob("run.json"))]

    tune = records("tune/fmnist_mlp")
    assert {r["config"]["optimizer"]["name"] for r in tune} == ARMS
    assert len(tune) > 8  # 4 arms x 2 lrs, then one widening pack
    assert (tmp_path / "runs" / "tune" / "fmnist_mlp" / "widen_1").is_dir()
    # Every tuning run trained in a pack, on the tiny budget.
    assert all(r["status"] == "completed" and r["env"].get("packed", {}).get("members", 1) > 1 and r["progress"]["step"] == 300 // 128
               for r in tune)
    assert all(r["config"]["trainer"]["precision"] == "bf16" for r in records(""))  # GPU_PRECISION reaches every run
    ev = records("eval/fmnist_mlp")
    by_arm = {}
    for r in ev:
        by_arm.setdefault(r["config"]["optimizer"]["name"], []).append(r)
    assert set(by_arm) == ARMS | {"adam", "adax"}
    assert all(sorted(r["config"]["seed"] for r in rs) == [0, 1] for rs in by_arm.values())
    # Each arm at its tuned lr; the harness checks at their ScheduledBeta2 twin's.
    lr = {arm: {r["config"]["optimizer"]["lr"] for r in rs} for arm, rs in by_arm.items()}
    assert all(len(v) == 1 for v in lr.values())
    assert lr["adam"] == lr["sched_adam"] and lr["adax"] == lr["sched_adax_nobc"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "sched_adax_nobc" in report and "Δ final vs sched_adam" in report
    assert (tmp_path / "out" / "runs" / "eval" / "fmnist_mlp").is_dir()
    assert not list((tmp_path / "out" / "runs").rglob("checkpoint.pt"))
    # The beta2 sensitivity (GPU_SENS): each family at two more beta2 (c), at that family's tuned lr, one pack.
    sens = records("sens/fmnist_mlp")
    want = {"sched_adam_b2_0.99": ("beta2", 0.99, "sched_adam"), "sched_adam_b2_0.9999": ("beta2", 0.9999, "sched_adam"),
            "sched_adax_b2_1e-3": ("beta2", 1e-3, "sched_adax"), "sched_adax_b2_1e-5": ("beta2", 1e-5, "sched_adax"),
            "sched_adafactor_c_0.5": ("decay_rate", 0.5, "sched_adafactor"),
            "sched_adafactor_c_1.0": ("decay_rate", 1.0, "sched_adafactor")}
    assert sorted(r["config"]["optimizer"]["name"] for r in sens) == sorted(list(want) * 2)
    for r in sens:
        key, value, family = want[r["config"]["optimizer"]["name"]]
        assert r["config"]["optimizer"][key] == value and {r["config"]["optimizer"]["lr"]} == lr[family]
        assert r["env"]["packed"]["members"] == 12 and r["progress"]["step"] == 300 // 128

    # import-gpu: the records in the CPU driver's layout, one directory per arm and per sensitivity setting.
    v2 = tmp_path / "v2"
    done = subprocess.run(["bash", str(REPO / "scripts" / "beta2_ablation_v2.sh"), "import-gpu", str(tmp_path / "runs")],
                          env={**env, "V2_ROOT": str(v2)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (v2 / "eval" / "fmnist_mlp").iterdir()) == sorted(ARMS | {"adam", "adax"})
    assert sorted(p.name for p in (v2 / "sens").iterdir()) == sorted(want)
    assert len(list(v2.rglob("run.json"))) == len(tune) + len(ev) + len(sens)
    assert all(json.loads(p.read_text())["config"]["optimizer"]["name"] == p.parent.parent.name
               for p in (v2 / "eval" / "fmnist_mlp").rglob("run.json"))
    assert not list(v2.rglob("*.pt"))

    # report: the CPU driver's reports over what it holds (here fmnist_mlp only), the tuning-effort curves, and
    # the records as one archive that unpacks into runs/.
    out = tmp_path / "v2_out"
    done = subprocess.run(["bash", str(REPO / "scripts" / "beta2_ablation_v2.sh"), "report"],
                          env={**env, "V2_ROOT": str(v2), "V2_OUT": str(out)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sched_adax_nobc" in (out / "report" / "report.md").read_text()
    assert (out / "beta2_sensitivity" / "aggregate.csv").is_file() and (out / "effort" / "fmnist_mlp" / "effort.csv").is_file()
    assert not (out / "runs").exists() and not list(out.rglob("*.svg"))
    with tarfile.open(out / "runs.tar.xz") as archive:
        names = archive.getnames()
    assert sum(n.endswith("run.json") for n in names) == len(tune) + len(ev) + len(sens)
    assert all(n.startswith("runs") for n in names) and not any(n.endswith(".pt") for n in names)



def test_gpu_step_time_script_at_tiny_scale(tmp_path):
    """scripts/beta2_gpu_step_time.sh trains one epoch of the study's packs per precision (the tuning pack, the
    evaluation sweep's pack per optimizer class) and adds up their training time at 100 epochs."""
    import statistics

    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEP_ROOT": str(tmp_path / "st"), "STEP_TASKS": "fmnist_mlp",
           "STEP_PRECISIONS": "bf16", "STEP_GRID": "1e-3,3.16e-3", "STEP_SEEDS": "1000", "STEP_EVAL_SEEDS": "0,1",
           "STEP_EXTRA": "trainer.train_limit=256 trainer.eval_limit=100 trainer.device=cpu trainer.threads=1"}
    out = subprocess.run(["bash", "scripts/beta2_gpu_step_time.sh"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr + (tmp_path / "st" / "runs.log").read_text()
    assert "device: cpu" in out.stdout
    rows = {r[1].strip(): r for r in (line.split("|")[1:-1] for line in out.stdout.splitlines()
                                      if line.startswith("| fmnist_mlp"))}
    assert sorted(rows) == ["bf16"]  # one row per task and precision
    for precision, (_, _, tuning, evaluation, study, widening) in rows.items():
        runs = tmp_path / "st" / "fmnist_mlp" / precision

        def ms_per_step(records):
            return statistics.median(1000 * r["timing"]["train_seconds"] / r["progress"]["step"] for r in records)

        tune = [json.loads(f.read_text()) for f in (runs / "tune").glob("*/run.json")]
        ev = [json.loads(f.read_text()) for f in (runs / "eval").glob("*/run.json")]
        assert len(tune) == 8 and len(ev) == 12  # 4 arms x 2 lrs x 1 seed; 6 optimizers x 2 seeds
        assert {r["config"]["trainer"]["precision"] for r in tune + ev} == {precision}
        assert all(r["progress"]["step"] == 2 for r in tune + ev)  # 256 examples in batches of 128, one epoch
        assert tuning.strip() == f"8 members: {ms_per_step(tune):.2f} ms"
        classes = {"ScheduledBeta2": [r for r in ev if r["config"]["optimizer"]["name"].startswith("sched_")],
                   "Adam": [r for r in ev if r["config"]["optimizer"]["name"] == "adam"],
                   "AdaX": [r for r in ev if r["config"]["optimizer"]["name"] == "adax"]}
        assert sorted(evaluation.strip().split(", ")) == sorted(
            f"{len(rs)} {cls}: {ms_per_step(rs):.2f} ms" for cls, rs in classes.items())
        # Each pack's 100 epochs of 2 steps, added up.
        minutes = sum(100 * 2 * ms_per_step(rs) / 60_000 for rs in [tune, *classes.values()])
        assert float(study.split()[0]) == pytest.approx(minutes, abs=0.06)
        assert float(widening.split()[0]) == pytest.approx(100 * 2 * ms_per_step(classes["Adam"]) / 60_000, abs=0.06)
