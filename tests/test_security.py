"""No code runs from a record: each test reproduces a hole of issue 17 and fails if it reopens.

- ``best --write`` copies run.json overrides into a shell script: one that sets a ``_target_`` or a
  dict/list literal is refused unless ``--allow-targets``, naming the run.json.
- Every ``_target_`` adaxbench resolves itself passes one policy (Hydra's instantiate policy plus
  adaxbench's denylist): no shell commands, no code from strings, aliases included.
- ``adaxbench run --experimental-rerun`` (Hydra unpickles the file) is refused.
- ``best --write`` never writes through a link or into a device, never widens a file's mode.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from adaxbench.plugins import locate
from adaxbench.report.best import main as best_main
from adaxbench.rundir import umask
from adaxbench.train.validate import ConfigError, check_config

from conftest import adaxbench, compose_cfg
from report_fixtures import write_run

ATTACK = "task.model={_target_:os.system,command:'touch PWNED'}"


def _sweep(root: Path, overrides: list[str]) -> Path:
    """A sweep of one completed run whose run.json records ``overrides`` (as a crafted file would)."""
    d = write_run(root / "0", evals={"valid/accuracy": [0.1, 0.5, 0.7, 0.8]})
    info = json.loads((d / "run.json").read_text())
    info["overrides"] = overrides
    (d / "run.json").write_text(json.dumps(info))
    return d


@pytest.mark.parametrize("override", [ATTACK, "+task.model._target_=os.system", "optimizer.betas=[0.9,0.99]",
                                      "task.model={name:mlp}"])
def test_best_write_refuses_targets_and_literals(tmp_path, capsys, override):
    run = _sweep(tmp_path / "sweep", ["task=fmnist_mlp", override])
    script = tmp_path / "rerun.sh"
    assert best_main([str(tmp_path / "sweep"), "--write", str(script)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(run / "run.json") in err and ("_target_" in err or "dict or list" in err)
    assert ("--allow-targets" in err) == (override != "+task.model._target_=os.system")  # not a key: never
    assert not script.exists()


def test_allowed_target_still_meets_the_target_policy(tmp_path):
    """--allow-targets writes the script; run as written, its command is refused at launch, not run."""
    _sweep(tmp_path / "sweep", ["task=fmnist_mlp", ATTACK])
    script = tmp_path / "rerun.sh"
    assert best_main([str(tmp_path / "sweep"), "--write", str(script), "--allow-targets", "--seeds", "1"]) == 0
    assert ATTACK in shlex.split(script.read_text().splitlines()[-1])
    bin_dir = tmp_path / "bin"  # `adaxbench` on PATH: this checkout's entry point
    bin_dir.mkdir()
    (bin_dir / "adaxbench").write_text(f'#!/usr/bin/env bash\nexec {sys.executable} -m adaxbench "$@"\n')
    (bin_dir / "adaxbench").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "is refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "sweep_best").exists()


@pytest.mark.parametrize("target", ["os.system", "posix.system", "logging.os.system", "builtins.eval", "builtins.exec",
                                    "subprocess.run", "subprocess.Popen", "os.popen", "os.execv", "pickle.loads",
                                    "shutil.rmtree", "importlib.import_module", "runpy.run_path",
                                    # unpicklers and compilers outside the pickle module
                                    "pandas.read_pickle", "torch.load", "numpy.load", "torch.hub.load",
                                    "torch.utils.cpp_extension.load_inline", "asyncio.create_subprocess_shell",
                                    "_posixsubprocess.fork_exec", "joblib.load"])
def test_target_policy_refuses_command_and_code_runners(target):
    with pytest.raises(ConfigError, match="is refused") as e:
        locate(target, "task")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("target", ["torch.optim.lr_scheduler.StepLR", "torch.nn.Linear", "plugin_user_code.LeastSquares",
                                    "torchvision.models.resnet18"])
def test_target_policy_keeps_ordinary_targets(target):
    assert callable(locate(target, "task"))


@pytest.mark.parametrize("overrides", [
    ["task=custom", "task._target_=os.system"],
    ["task=custom", "task._target_=plugin_user_code.LeastSquares", "+lr_schedule._target_=builtins.eval"],
    ["task=fmnist_mlp", "task.model={_target_:subprocess.Popen,args:[touch,PWNED]}"],
    ["task=custom_image", "task.model._target_=plugin_user_code.TinyNet", "task.dataset._target_=os.system"],
    ["optimizer=custom", "optimizer._target_=subprocess.Popen"],
])
def test_every_target_key_passes_the_policy(overrides):
    with pytest.raises(ConfigError, match="is refused"):
        check_config(compose_cfg(overrides))


@pytest.mark.parametrize("flag", [["--experimental-rerun", "{p}"], ["--experimental-rerun={p}"],
                                  ["--experimental-re", "{p}"]])
def test_experimental_rerun_is_refused(tmp_path, flag):
    evil = tmp_path / "config.pickle"
    evil.write_bytes(pickle.dumps(_TouchOnLoad(str(tmp_path / "PWNED"))))
    proc = adaxbench("run", *[f.format(p=evil) for f in flag], cwd=tmp_path)
    assert proc.returncode == 2 and "--experimental-rerun is not supported" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "PWNED").exists()


class _TouchOnLoad:
    """Unpickling this creates ``path``: the proof that a pickle was loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- best --write: the file it writes ------------------------------------------------------------
@pytest.fixture
def sweep(tmp_path) -> Path:
    _sweep(tmp_path / "sweep", ["task=fmnist_mlp", "optimizer.lr=0.01"])
    return tmp_path / "sweep"


def test_best_write_refuses_a_link(tmp_path, sweep, capsys):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o600)
    (tmp_path / "rerun.sh").symlink_to(victim)
    assert best_main([str(sweep), "--write", str(tmp_path / "rerun.sh")]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert victim.read_text() == "keep\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_best_write_refuses_a_fifo(tmp_path, sweep, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o600)
    assert best_main([str(sweep), "--write", str(fifo)]) == 2  # returns: never opens the pipe
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_IMODE(fifo.lstat().st_mode) == 0o600


def test_best_write_keeps_an_existing_mode_and_gives_a_new_file_the_umask(tmp_path, sweep):
    old = tmp_path / "old.sh"
    old.write_text("previous\n")
    old.chmod(0o600)
    assert best_main([str(sweep), "--write", str(old), "--seeds", "2"]) == 0
    assert stat.S_IMODE(old.stat().st_mode) == 0o600 and "seed=0,1" in old.read_text()
    new = tmp_path / "new.sh"
    assert best_main([str(sweep), "--write", str(new)]) == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o777 & ~umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.sh", "old.sh", "sweep"]  # no temporary file left
    assert subprocess.run(["bash", "-n", str(new)]).returncode == 0
