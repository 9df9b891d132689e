"""The run-directory contract (adaxbench.rundir) and its readers: records of earlier versions
load, settings are told apart by every key that changes training, readers never crash, files
follow the umask, and `best --write` writes only plain overrides."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adaxbench import rundir
from adaxbench.report import build_report
from adaxbench.report.best import main as best_main
from adaxbench.report.best import override_problem, select_best
from adaxbench.report.cli import main as report_main
from adaxbench.report.load import load_runs
from adaxbench.rundir import RunRecord, Status, read_record, result_line, setting_key

from report_fixtures import write_run

LEGACY = Path(__file__).parent / "data" / "legacy_run"  # written by the code before rundir.py existed


def test_rundir_imports_no_torch():
    code = "import sys, adaxbench.rundir, adaxbench.report.load, adaxbench.report.best; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_nothing_under_train_imports_report():
    for path in (Path(rundir.__file__).parent / "train").glob("*.py"):
        text = path.read_text()
        assert "..report" not in text and "adaxbench.report" not in text, path


def test_legacy_run_dir_loads_and_is_summed_up():
    rec, problem = read_record(LEGACY)
    assert problem == "" and rec.status is Status.COMPLETED and rec.status == "completed"
    raw = json.loads((LEGACY / "run.json").read_text())
    assert rec.to_json() == raw  # a record round-trips unchanged
    # "completed in 3 s": wall_seconds 2.78; test/loss 337.0788 to 4 significant digits.
    assert result_line(rec, "DIR") == "completed in 3 s: test/loss 337.1 -> DIR"
    table, problem = rundir.read_metrics(LEGACY / "metrics.parquet", dictionary=False)
    assert problem == "" and table.schema == rundir.METRICS_SCHEMA
    # 2 epochs x 7 steps, logged every 3 steps: steps 3, 6, 9, 12 with loss, lr, grad_norm, beta2_hat
    # (16 rows) + train/test loss at epochs 0, 1, 2 (6 rows).
    assert table.num_rows == 22


def test_legacy_run_dir_in_report_and_best(tmp_path, capsys):
    rep = build_report([LEGACY], out=tmp_path / "rep", figures=False, formats=["md"])
    assert len(rep.aggregate) == 1 and rep.aggregate.iloc[0]["seeds"] == 1
    assert best_main([str(LEGACY.parent), "--write", str(tmp_path / "rerun.sh"), "--seeds", "2"]) == 0
    script = (tmp_path / "rerun.sh").read_text()
    assert "adaxbench run -m task=quadratic_deep trainer.epochs=2 seed=0,1 hydra.sweep.dir=" in script


def test_main_metrics_and_result_line():
    final = {"train/loss": 0.3, "test/loss": 0.3712, "test/accuracy": 0.86871, "valid/accuracy": 0.9}
    rec = RunRecord(status=Status.COMPLETED, config={"task": {"name": "t"}, "optimizer": {"name": "adam"}},
                    timing={"wall_seconds": 41.4}, final=final)
    assert result_line(rec, "runs/x") == "completed in 41 s: test/accuracy 0.8687, test/loss 0.3712 -> runs/x"
    assert rundir.main_metrics(final, {"metric": "valid/accuracy"}) == ["valid/accuracy"]
    assert rundir.main_metrics({"train/loss": 1.0, "train/avg_regret": 2.0}) == ["train/loss"]


def _variants(root: Path) -> None:
    """One task, one optimizer: a base setting with three seeds (one differing only in bookkeeping
    keys) and four settings that differ from it in one key each."""
    write_run(root / "base0", seed=0)
    write_run(root / "base1", seed=1, evals={"test/accuracy": [0.1, 0.5, 0.7, 0.8], "test/loss": [2, 1, 0.6, 0.5]})
    write_run(root / "base2", seed=2, trainer_extra={"log_every": 7, "device": "cuda", "progress": False,
                                                     "checkpoint": False, "keep_checkpoint": True})
    write_run(root / "augment", task_extra={"augment": True})
    write_run(root / "l2", task_extra={"l2_reg": 0.002})
    write_run(root / "cosine", lr_schedule={"name": "cosine", "warmup_steps": 0, "min_factor": 0.0})
    write_run(root / "eps", opt={"eps": 1e-6})


def test_setting_key_tells_apart_every_key_but_bookkeeping(tmp_path):
    _variants(tmp_path)
    keys = {d.name: setting_key(read_record(d)[0].config) for d in tmp_path.iterdir()}
    assert keys["base0"] == keys["base1"] == keys["base2"]
    assert len({keys[k] for k in ("base0", "augment", "l2", "cosine", "eps")}) == 5
    # The task's protocol defaults and explicit equal values are one setting.
    cfg = read_record(tmp_path / "base0")[0].config
    implicit = {**cfg, "lr_schedule": None, "trainer": {**cfg["trainer"], "epochs": None}}
    assert setting_key(implicit) == setting_key(cfg)
    # Overrides: reruns and relaunch checks keep what defines the setting (a preset too).
    assert rundir.setting_overrides(["experiment=beta2_ablation", "seed=1", "trainer.device=cpu", "optimizer.lr=0.1",
                                     "hydra.launcher.n_jobs=2", "hydra/launcher=joblib", "+trainer.progress=false"]) \
        == ["experiment=beta2_ablation", "optimizer.lr=0.1"]


def test_report_and_best_tell_settings_apart(tmp_path):
    _variants(tmp_path)
    rep = build_report([tmp_path], out=tmp_path / "rep", figures=False, formats=["md"])
    agg = rep.aggregate
    assert sorted(agg["seeds"]) == [1, 1, 1, 1, 3]
    base = agg[agg["seeds"] == 3].iloc[0]
    assert base["final_mean"] == pytest.approx((0.9 + 0.8 + 0.9) / 3)
    best, excluded = select_best(load_runs([tmp_path]), "test/accuracy")
    assert best.iloc[0]["settings_tried"] == 5 and excluded.empty


def _corrupt(run_dir: Path, change) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    change(info)
    (run_dir / "run.json").write_text(json.dumps(info))


BAD_RECORDS = {
    "status_number": lambda i: i.update(status=5),
    "status_unknown": lambda i: i.update(status="finished"),
    "config_list": lambda i: i.update(config=[1]),
    "optimizer_string": lambda i: i["config"].update(optimizer="adam"),
    "task_name_number": lambda i: i["config"]["task"].update(name=3),
    "seed_string": lambda i: i["config"].update(seed="abc"),
    "progress_epoch_string": lambda i: i["progress"].update(epoch="x"),
    "final_string": lambda i: i["final"].update({"test/accuracy": "high"}),
    "overrides_string": lambda i: i.update(overrides="optimizer=adam"),
    "overrides_numbers": lambda i: i.update(overrides=[1, 2]),
    "error_object": lambda i: i.update(error={"a": 1}),
    "timing_list": lambda i: i.update(timing=[]),
}


def test_readers_list_every_run_they_cannot_use(tmp_path, capsys):
    write_run(tmp_path / "good", seed=0, evals={"valid/accuracy": [0.1, 0.5, 0.7, 0.8],
                                                 "test/accuracy": [0.1, 0.5, 0.7, 0.8]})
    for name, change in BAD_RECORDS.items():
        _corrupt(write_run(tmp_path / name, seed=1), change)
    (tmp_path / "top_list").mkdir()
    (tmp_path / "top_list" / "run.json").write_text("[1, 2]")
    other = write_run(tmp_path / "other_schema", seed=2)
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), other / "metrics.parquet")
    text = write_run(tmp_path / "value_strings", seed=3)
    t = pq.read_table(text / "metrics.parquet")
    pq.write_table(t.set_column(5, "value", pa.array(["v"] * t.num_rows)), text / "metrics.parquet")
    nan = write_run(tmp_path / "all_nan", seed=4, evals={"valid/accuracy": [np.nan] * 4,
                                                         "test/accuracy": [np.nan] * 4})
    bad = {d.name for d in tmp_path.iterdir()} - {"good"}

    rep = build_report([tmp_path], out=tmp_path / "rep", figures=False, formats=["md"], metric="test/accuracy")
    assert rep.aggregate.iloc[0]["final_mean"] == pytest.approx(0.8)  # the NaN seed did not make it NaN
    md = (tmp_path / "rep" / "report.md").read_text()
    listed = md[md.index("Runs not included"):]
    for name in bad - {"rep"}:
        assert name in listed, name
    assert "run.json field config.seed: expected an integer, got str 'abc'" in listed
    assert "metrics.parquet unreadable" in listed and "no finite test/accuracy value logged" in listed
    assert str(nan.name) in listed

    assert best_main([str(tmp_path), "--metric", "valid/accuracy"]) == 0
    out = capsys.readouterr().out
    assert "valid/accuracy (final) = 0.8" in out
    not_included = out[out.index("Runs not included"):]
    for name in bad - {"rep"}:
        assert f"{name}:" in not_included, name


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        rundir.write_json(tmp_path / "a.json", {"x": 1})
        rundir.MetricsLog().save(tmp_path / "m.parquet")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "m.parquet").stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*.tmp"))


def test_metrics_saved_in_pieces_equal_the_rows_written_at_once(tmp_path):
    """Each save converts only the rows added since the last one; a truncate (a resume from an
    earlier checkpoint) below what was saved must drop those rows from the file too."""
    log = rundir.MetricsLog()
    rows = [(s, s / 7, 0.1 * s, "batch", {"loss": 10.0 - s, "lr": 0.01}) for s in range(1, 30)]
    for k, row in enumerate(rows[:20]):
        log.add(*row)
        if k % 6 == 0:
            log.save(tmp_path / "m.parquet")
    log.truncate(2 * 12)  # back to step 12: 2 metrics per step
    for row in rows[12:]:
        log.add(*row)
    log.save(tmp_path / "m.parquet")
    got = pq.read_table(tmp_path / "m.parquet")
    assert got.schema.equals(rundir.METRICS_SCHEMA)
    expected = [(s, metric, value) for s, _, _, _, values in rows for metric, value in values.items()]
    assert list(zip(got["step"].to_pylist(), got["metric"].to_pylist(), got["value"].to_pylist())) == expected
    assert got["time"].to_pylist()[-1] == pytest.approx(2.9) and got.num_rows == 2 * 29


@pytest.mark.parametrize("override, why", [
    ("--experimental-rerun=x.pkl", "not a key=value"), ("-m", "not a key=value"), ("~seed", "only key=value"),
    ("++foo=1", "not a key of the run's config"), ("optimizer.lr=1,2", "single values"),
    ("optimizer.lr=${oc.env:HOME}", "interpolations"), ("+foo=1", "not a key of the run's config"),
    ("optimizer.nope=1", "not a key of the run's config"), ("optimizer.lr=1\nrm", "not a key=value"),
])
def test_rerun_overrides_refused(override, why):
    config = read_record(LEGACY)[0].config
    assert why in override_problem(override, config)


@pytest.mark.parametrize("override", ["optimizer=adam", "optimizer.lr=0.01", "task.noise_level=0.5",
                                      "setting/deepobs=adam", "+trainer.epochs=2", "experiment=lr_tuning"])
def test_rerun_overrides_accepted(override):
    assert override_problem(override, read_record(LEGACY)[0].config) is None


def test_list_overrides_need_allow_targets():  # a dict/list literal can carry a _target_ (tests/test_security.py)
    config = read_record(LEGACY)[0].config
    assert "dict or list" in override_problem("optimizer.betas=[0.9,0.99]", config)
    assert override_problem("optimizer.betas=[0.9,0.99]", config, allow_targets=True) is None


def _sweep_with_overrides(root: Path, overrides: list[str]) -> Path:
    d = write_run(root / "0", evals={"valid/accuracy": [0.1, 0.5, 0.7, 0.8], "test/accuracy": [0.1, 0.5, 0.7, 0.8]})
    _corrupt(d, lambda i: i.update(overrides=overrides))
    return d


def test_best_write_refuses_a_crafted_override(tmp_path, capsys):
    """The reproduced attack: a run.json override that Hydra would take as --experimental-rerun."""
    run = _sweep_with_overrides(tmp_path / "sweep", ["optimizer=adam", "--experimental-rerun=/tmp/evil.pkl"])
    script = tmp_path / "rerun.sh"
    assert best_main([str(tmp_path / "sweep"), "--write", str(script)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(run / "run.json") in err and "--experimental-rerun" in err
    assert not script.exists()


def test_best_write_quotes_values(tmp_path):
    _sweep_with_overrides(tmp_path / "sweep", ["optimizer=adam", "optimizer.name='$(touch pwned) x'"])
    script = tmp_path / "rerun.sh"
    assert best_main([str(tmp_path / "sweep"), "--write", str(script), "--seeds", "1"]) == 0
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "adaxbench").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    (fake / "adaxbench").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "ARGS_OUT": str(tmp_path / "args")}
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True)
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:3] == ["run", "-m", "optimizer=adam"] and args[3] == "optimizer.name='$(touch pwned) x'"
    assert not (tmp_path / "pwned").exists()


def test_output_paths_of_the_wrong_kind(tmp_path, capsys):
    _sweep_with_overrides(tmp_path / "sweep", ["optimizer=adam"])
    (tmp_path / "dir").mkdir()
    for target, says in ((tmp_path / "dir", "is a directory"), (tmp_path / "missing" / "r.sh", "does not exist")):
        assert best_main([str(tmp_path / "sweep"), "--write", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and says in err
    (tmp_path / "file").write_text("keep me")
    assert report_main([str(tmp_path / "sweep"), "--out", str(tmp_path / "file"), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is a file" in err and (tmp_path / "file").read_text() == "keep me"


def test_sweep_summary_reads_through_the_contract(tmp_path):
    from adaxbench.train.sweep import job_statuses, summary_line

    write_run(tmp_path / "0")
    write_run(tmp_path / "1", status="diverged")
    shutil.copytree(LEGACY, tmp_path / "2")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "run.json").write_text('{"status": 7}')
    statuses = job_statuses(tmp_path)
    assert [statuses[tmp_path / n] for n in "0123"] == ["completed", "diverged", "completed", "unreadable"]
    from collections import Counter
    assert summary_line(Counter(statuses.values())) == "2 completed, 1 diverged, 1 failed (1 unreadable counted as failed)"


def test_non_finite_final_metrics_are_strict_json_and_read_back_as_floats(tmp_path):
    # A run that diverged at its evaluation keeps that loss (inf, nan) in final.
    rec = RunRecord(status=Status.DIVERGED, config={"task": {"name": "t"}, "optimizer": {"name": "adam"}},
                    final={"test/loss": float("inf"), "train/loss": float("nan"), "test/accuracy": 0.1})
    rec.write(tmp_path)
    text = (tmp_path / "run.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["final"] == {"test/loss": "inf", "train/loss": "nan", "test/accuracy": 0.1}
    back, problem = read_record(tmp_path)
    assert problem == "" and back.final["test/loss"] == float("inf") and math.isnan(back.final["train/loss"])
    (tmp_path / "run.json").write_text(text.replace('"nan"', '"none"'))
    assert read_record(tmp_path) == (None, "run.json field final.train/loss: expected a number, null or one of inf, "
                                           "-inf, nan, got str 'none'")
