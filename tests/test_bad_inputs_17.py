"""Issue 17 §5: crafted bad input, each ending in one line and exit 2 with nothing left behind
(``run``, the Python API), or listed under "Runs not included" without a crash or a hang
(``report``, ``best``).  Each test fails if its hole reopens."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from adaxbench.cli import main

from conftest import adaxbench
from test_validation import TINY, assert_one_line_error, cli


# ------------------------------------------------------------------------------------ run

RUN_CATALOGUE = [
    ([*TINY, "seed=9300000000000"], "seed must be an integer in [0, "),
    ([*TINY, "+lr_schedule._target_=os.getcwd"], "lr_schedule._target_='os.getcwd' does not take the step"),
    (["task=custom", "task._target_=builtins.dict"], "task._target_='builtins.dict' is not a task class: it lacks "
                                                     "batches, loss, evaluate"),
    ([*TINY, "optimizer=adafactor", "trainer.optimizer_impl=fused"],
     "trainer.optimizer_impl=fused is not supported by Adafactor"),
    ([*TINY, "optimizer.lr=1e\u22123"], "'\u2212' (U+2212 MINUS SIGN) in optimizer.lr=1e\u22123 is not part of"),
    ([*TINY, "optimizer.eps=[1e-8]"], "optimizer.eps must be a number >= 0, got [1e-08]"),
]


@pytest.mark.parametrize("args, expected", RUN_CATALOGUE, ids=[" ".join(a) for a, _ in RUN_CATALOGUE])
def test_run_bad_input(args, expected, tmp_path, capsys):
    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep", *args)
    assert_one_line_error(code, err, expected)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_empty_run_dir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "run", "hydra.run.dir=", *TINY)
    assert_one_line_error(code, err, "hydra.run.dir is empty")
    code, _, err = cli(capsys, "run", "hydra.run.dir=''", *TINY)
    assert_one_line_error(code, err, "hydra.run.dir is empty")
    assert list(tmp_path.iterdir()) == []


def test_run_dir_under_proc(capsys):
    code, _, err = cli(capsys, "run", "hydra.run.dir=/proc/adaxbench_run", *TINY)
    assert_one_line_error(code, err, "hydra.run.dir=/proc/adaxbench_run cannot be created")
    code, _, err = cli(capsys, "run", "-m", "hydra.sweep.dir=/proc/adaxbench_sweep", "seed=0,1", *TINY)
    assert_one_line_error(code, err, "hydra.sweep.dir=/proc/adaxbench_sweep cannot be created")


def test_largest_seed_trains(tmp_path, capsys):
    """The largest seed the check lets through trains (its data-order generator seed fits)."""
    from adaxbench.train.validate import MAX_SEED

    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/run", *TINY, "trainer.epochs=1", f"seed={MAX_SEED}")
    assert code == 0, err
    code, _, err = cli(capsys, "run", f"hydra.run.dir={tmp_path}/run2", *TINY, f"seed={MAX_SEED + 1}")
    assert_one_line_error(code, err, f"seed must be an integer in [0, {MAX_SEED}]")


@pytest.mark.parametrize("env, expected", [
    ({"ADAXBENCH_SLURM_TIME_MIN": "abc"}, "hydra.launcher.timeout_min must be an integer >= 1, got 'abc' (ADAXBENCH_SLURM_TIME_MIN)"),
    ({"ADAXBENCH_SLURM_CPUS": "0"}, "hydra.launcher.cpus_per_task must be an integer >= 1, got 0 (ADAXBENCH_SLURM_CPUS)"),
])
def test_slurm_environment(env, expected, tmp_path, capsys, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, _, err = cli(capsys, "run", "-m", "hydra/launcher=slurm_gpu", f"hydra.sweep.dir={tmp_path}/sweep",
                       "seed=0,1", *TINY)
    assert_one_line_error(code, err, expected)
    assert not (tmp_path / "sweep").exists()


def test_slurm_launcher_off_a_cluster(tmp_path, capsys, monkeypatch):
    """A SLURM launcher where sbatch/srun are not on PATH: one line before the sweep dir exists
    (submitit itself would fail after it, with a traceback)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    code, _, err = cli(capsys, "run", "-m", "hydra/launcher=slurm_gpu", f"hydra.sweep.dir={tmp_path}/sweep",
                       "seed=0,1", *TINY)
    assert_one_line_error(code, err, "this launcher submits to SLURM, but sbatch/srun are not on PATH")
    assert not (tmp_path / "sweep").exists()


def test_joblib_zero_jobs(tmp_path, capsys):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    code, _, err = cli(capsys, "run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0",
                       f"hydra.sweep.dir={tmp_path}/sweep", "seed=0,1", *TINY)
    assert_one_line_error(code, err, "hydra.launcher.n_jobs must be a non-zero integer (-1: all cores), got 0")
    assert not (tmp_path / "sweep").exists()


def test_garbage_pt_dataset_before_the_run_dir(tmp_path, capsys):
    data = tmp_path / "data.pt"
    data.write_bytes(b"this is not a torch.save file\n" * 10)
    code, _, err = cli(capsys, "run", "task=custom_image", f"task.dataset={data}", "task.model=mlp",
                       f"hydra.run.dir={tmp_path}/run", "trainer.progress=false")
    assert_one_line_error(code, err, f"task.dataset={data} is not a readable torch.save file")
    assert not (tmp_path / "run").exists()


def test_sweep_dir_that_is_a_file_is_refused_before_composing_jobs(tmp_path, capsys, monkeypatch):
    """500 jobs pointed at a file: the sweep dir is checked first, not after composing every job."""
    from adaxbench.train import preflight

    (tmp_path / "file").write_text("x")
    composed = []
    real = preflight._check_job
    monkeypatch.setattr(preflight, "_check_job", lambda cfg: composed.append(1) or real(cfg))
    seeds = ",".join(map(str, range(500)))
    t0 = time.perf_counter()
    code, _, err = cli(capsys, "run", "-m", f"hydra.sweep.dir={tmp_path}/file", f"seed={seeds}", *TINY)
    assert_one_line_error(code, err, f"hydra.sweep.dir={tmp_path}/file is a file")
    assert composed == [] and time.perf_counter() - t0 < 20


# ------------------------------------------------------------------------- user config files

@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    return tmp_path / "conf"


def _run_with(config_dir, tmp_path, capsys, option):
    return cli(capsys, "run", "--config-dir", str(config_dir), f"optimizer={option}",
               f"hydra.run.dir={tmp_path}/run", *TINY)


def test_optimizer_yaml_that_is_a_list(config_dir, tmp_path, capsys):
    (config_dir / "optimizer" / "listy.yaml").write_text("- name: listy\n- lr: 0.1\n")
    code, _, err = _run_with(config_dir, tmp_path, capsys, "listy")
    assert_one_line_error(code, err, "optimizer/listy.yaml is a list; a config file must be a mapping")
    assert not (tmp_path / "run").exists()


def test_non_utf8_yaml_names_the_file(config_dir, tmp_path, capsys):
    path = config_dir / "optimizer" / "latin.yaml"
    path.write_bytes("name: caf\u00e9\n_target_: torch.optim.SGD\nlr: 0.1\n".encode("latin-1"))
    code, _, err = _run_with(config_dir, tmp_path, capsys, "latin")
    assert_one_line_error(code, err, f"{path} is not UTF-8 text")
    assert not (tmp_path / "run").exists()


def test_self_including_yaml(config_dir, tmp_path, capsys):
    (config_dir / "optimizer" / "loop.yaml").write_text("defaults:\n  - loop\nname: loop\n")
    code, _, err = _run_with(config_dir, tmp_path, capsys, "loop")
    assert_one_line_error(code, err, "includes itself")
    assert not (tmp_path / "run").exists()


def test_yaml_alias_bomb_is_bounded(config_dir, tmp_path):
    lines = ["_target_: torch.optim.SGD", "name: bomb", "lr: 0.1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = config_dir / "optimizer" / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    # In a subprocess: an expansion without end inside Hydra can only be killed.
    proc = adaxbench("run", "--config-dir", str(config_dir), "optimizer=bomb", f"hydra.run.dir={tmp_path}/run",
                     *TINY, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"adaxbench: error: {path} expands to more than" in proc.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ Python API

QUICK = ["task=quadratic_deep", "task.train_size=256", "trainer.epochs=1", "trainer.progress=false"]


@pytest.mark.parametrize("kwargs, expected", [
    ({"lr": "fast"}, "optimizer.lr must be a number > 0, got 'fast'"),
    ({"lr": float("nan")}, "optimizer.lr must be a finite number > 0, got nan"),
    ({"lrr": 0.1}, "optimizer.lrr is not a hyperparameter of torch.optim.Adam (did you mean optimizer.lr?)"),
    ({"betas": (0.9,)}, "optimizer.betas must be a list of two numbers in [0, 1), got [0.9]"),
], ids=["lr-str", "lr-nan", "unknown", "betas"])
def test_api_config_error_leaves_the_run_dir_usable(kwargs, expected, tmp_path):
    import adaxbench

    with pytest.raises(adaxbench.ConfigError) as e:
        adaxbench.run("adam", QUICK, run_dir=tmp_path / "run", **kwargs)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
    assert adaxbench.run("adam", QUICK, run_dir=tmp_path / "run", lr=0.01).status == "completed"


@pytest.mark.parametrize("call, expected", [
    (lambda a, d: a.run(dict, QUICK, run_dir=d), "optimizer must be a config name (e.g. 'adax') or a "
                                                 "torch.optim.Optimizer subclass, got <class 'dict'>"),
    (lambda a, d: a.run(123, QUICK, run_dir=d), "optimizer must be a config name"),
    (lambda a, d: a.run("adam", "seed=1", run_dir=d), "overrides must be a list of strings such as ['seed=1', "),
    (lambda a, d: a.run("adam", ["trainer.progress=false"], task=int, run_dir=d), "task._target_='builtins.int' is not a task class"),
    (lambda a, d: a.run("adam", QUICK, task=5, run_dir=d), "task must be a task config name"),
    (lambda a, d: a.run("adam", QUICK, run_dir=d, config_dir=d.parent / "nope"), "config_dir "),
    (lambda a, d: a.run("adam", [*QUICK, f"hydra.run.dir={d}"]), "hydra.run.dir is not an override of adaxbench.run"),
], ids=["class-dict", "int", "str-overrides", "task-int", "task-5", "config-dir", "hydra-run-dir"])
def test_api_misuse(call, expected, tmp_path):
    import adaxbench

    with pytest.raises(adaxbench.ConfigError) as e:
        call(adaxbench, tmp_path / "run")
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_api_run_dir_that_is_a_file(tmp_path):
    import adaxbench

    (tmp_path / "file").write_text("x")
    with pytest.raises(adaxbench.ConfigError, match="run_dir=.*file is a file, not a directory"):
        adaxbench.run("adam", QUICK, run_dir=tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


def test_api_name_is_recorded_literally(tmp_path, monkeypatch):
    import adaxbench
    from torch.optim import SGD

    monkeypatch.setenv("ADAXBENCH_TEST_SECRET", "leaked")
    for i, opt in enumerate(("sgd", SGD)):
        out = adaxbench.run(opt, QUICK, lr=0.01, name="my${oc.env:ADAXBENCH_TEST_SECRET}", run_dir=tmp_path / str(i))
        assert json.loads((out.run_dir / "run.json").read_text())["config"]["optimizer"]["name"] == \
            "my${oc.env:ADAXBENCH_TEST_SECRET}"


def test_api_report_formats_as_a_string(tmp_path):
    import adaxbench

    adaxbench.run("adam", QUICK, lr=0.01, run_dir=tmp_path / "runs" / "a")
    rep = adaxbench.report(tmp_path / "runs", out=tmp_path / "rep", formats="md", figures=False)
    assert (tmp_path / "rep" / "report.md").exists() and not (tmp_path / "rep" / "report.html").exists()
    assert rep.out == tmp_path / "rep"


# ----------------------------------------------------------------------------- report, best

from adaxbench.report.best import main as best_main  # noqa: E402
from adaxbench.report.cli import main as report_main  # noqa: E402

from report_fixtures import write_run  # noqa: E402

EVALS = {"valid/accuracy": [0.1, 0.5, 0.8], "test/accuracy": [0.1, 0.5, 0.8], "test/loss": [2.0, 1.0, 0.5]}


def _sweep(root: Path) -> Path:
    for i, (opt, lr) in enumerate((("adam", 1e-3), ("adam", 1e-2), ("sgd", 0.1))):
        write_run(root / f"good{i}", task="t", optimizer=opt, opt={"lr": lr}, epochs=2, evals=EVALS)
    return root


def _crafted(root: Path) -> dict[str, str]:
    """Run dirs no reader may choke on, and the reason each must be listed with."""
    reasons = {}
    fifo = root / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "run.json")
    reasons["fifo"] = "run.json is not a regular file"
    good = json.loads((root / "good0" / "run.json").read_text())
    huge = root / "huge_int"
    huge.mkdir()
    (huge / "run.json").write_text(json.dumps(good).replace('"seed": 0', '"seed": ' + "1" + "0" * 400))
    reasons["huge_int"] = "an integer of 401 digits"
    deep = root / "deep"
    deep.mkdir()
    (deep / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    reasons["deep"] = "nested too deeply"
    fifo_metrics = write_run(root / "fifo_metrics", task="t", optimizer="adam", seed=7, epochs=2, evals=EVALS,
                             metrics=False)
    os.mkfifo(fifo_metrics / "metrics.parquet")
    reasons["fifo_metrics"] = "metrics.parquet is not a regular file"
    write_run(root / "inf", task="t", optimizer="adam", opt={"lr": 1e-3}, seed=5, epochs=2,
              evals={**EVALS, "test/accuracy": [0.1, 0.5, float("inf")], "valid/accuracy": [0.1, 0.5, float("inf")]})
    reasons["inf"] = "final test/accuracy is inf"
    write_run(root / "long_error", task="t", optimizer="adam", seed=6, status="failed", error="x" * 1_000_000,
              epochs=2, evals=EVALS)
    reasons["long_error"] = "x" * 300 + "…"
    return reasons


def _names(root: Path) -> None:
    """Runs whose names are crafted: long, TeX, colliding slugs, markdown, formulas, escapes."""
    names = [("T" * 300, "adam"), ("a b", "adam"), ("a/b", "adam"), ("t", "$\\frac{1}{$"), ("t", "[x](http://evil.example/)"),
             ("t", "![i](http://evil.example/i.png)"), ("t", "=HYPERLINK(\"http://evil.example\")"), ("t", "\x1b[2J\x1b]0;pwn\x07")]
    for i, (task, opt) in enumerate(names):
        accuracy = [0.1, 0.4, 0.6] if task == "a b" else [0.1, 0.3, 0.9] if task == "a/b" else [0.1, 0.5, 0.7]
        write_run(root / f"named{i}", task=task, optimizer="adam", opt={"name": opt, "lr": 1e-3 * (i + 1)}, epochs=2,
                  evals={**EVALS, "test/accuracy": accuracy, "valid/accuracy": accuracy})


def test_report_lists_every_crafted_run_dir_and_escapes_names(tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    reasons = _crafted(root)
    _names(root)
    # In a subprocess: a reader blocked on a FIFO in a thread cannot be interrupted, only killed.
    proc = adaxbench("report", str(root), "--out", str(tmp_path / "rep"), "--format", "md,html", timeout=240)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    excluded = md[md.index("## Runs not included"):]
    for name, reason in reasons.items():
        line = next(l for l in excluded.splitlines() if l.startswith(f"| {name} ") or f"/{name} |" in l)
        assert reason in line, line
    assert "x" * 301 not in md and (tmp_path / "rep" / "report.md").stat().st_size < 200_000
    # names stay text: no live link or image, no formula, no escape sequence
    assert "](http://evil" not in md.replace("\\](http://evil", "")
    assert "\x1b" not in md and "x1b" in md
    summary = (tmp_path / "rep" / "summary.csv").read_text()
    assert "\n=" not in summary and ",=" not in summary and "'=HYPERLINK" in summary
    # one figure per task name, no two tasks under one file
    curves = sorted(p.name for p in (tmp_path / "rep" / "figures").glob("*_curves.png"))
    assert len(curves) == len(set(curves)) == 4 and all(len(c) < 100 for c in curves)
    ab = [c for c in curves if c.startswith("a_b")]
    assert len(ab) == 2


def test_best_lists_crafted_runs_and_prints_names_safely(tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    reasons = {**_crafted(root), "inf": "no finite valid/accuracy (final) logged"}
    _names(root)
    proc = adaxbench("best", str(root), "--metric", "valid/accuracy", timeout=120)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err
    assert "\x1b" not in out + err and "\\x1b[2J" in out
    for name, reason in reasons.items():
        assert any(l.startswith(f"  {root.resolve() / name}: ") and reason in l for l in out.splitlines()), name


@pytest.mark.parametrize("args, expected", [
    (["--target", "nan"], "bad --target 'nan': expected a finite number"),
    (["--target", "t=inf"], "bad --target 't=inf'"),
    (["--format", ""], "bad --format ''"),
    (["--format", ","], "bad --format ''"),
])
def test_report_bad_flags(args, expected, tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    code = report_main([str(root), "--out", str(tmp_path / "rep"), "--no-figures", *args])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "rep").exists()


def test_best_huge_seed_count_is_refused_at_once(tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    proc = adaxbench("best", str(root), "--seeds", "99999999999", "--write", str(tmp_path / "rerun.sh"), timeout=60)
    code, err = proc.returncode, proc.stderr
    assert code == 2 and "--seeds must be in [1, 10000], got 99999999999" in err
    assert not (tmp_path / "rerun.sh").exists()


def test_best_metric_a_task_lacks_is_not_swapped(tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    code = best_main([str(root), "--metric", "valid/loss"])
    out, err = capsys.readouterr()
    assert code == 2 and "no run with a finite selection score (no run logs valid/loss)" in err, out + err
    write_run(root / "other", task="u", optimizer="adam", epochs=2,
              evals={"valid/loss": [2.0, 1.0, 0.5], "test/loss": [2.0, 1.0, 0.5]})
    code = best_main([str(root), "--metric", "valid/loss"])
    out, err = capsys.readouterr()
    assert code == 0 and "valid/accuracy" not in out and "test/" not in out.split("Runs not included")[0]
    assert "no finite valid/loss (final) logged" in out  # task t's runs, listed with the reason


def test_rerun_script_quotes_a_comma_and_keeps_names_inside_the_root(tmp_path, capsys):
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    root = tmp_path / "sweep"
    write_run(root / "r0", task="../../escape", optimizer="adam", epochs=2, evals=EVALS)
    rerun_root = str(tmp_path / "a,b c")
    code = best_main([str(root), "--seeds", "2", "--rerun-dir", rerun_root, "--write", str(tmp_path / "rerun.sh")])
    _, err = capsys.readouterr()
    assert code == 0, err
    line = (tmp_path / "rerun.sh").read_text().splitlines()[-1]
    override = next(w for w in shlex.split(line) if w.startswith("hydra.sweep.dir="))
    sweep_dir = Path(OverridesParser.create().parse_override(override).value())
    assert sweep_dir.parent == Path(rerun_root) and ".." not in sweep_dir.parts
