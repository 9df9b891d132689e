"""The config tree ships inside the wheel: an installed (non-editable) package finds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


def test_wheel_contains_configs_and_runs_from_them(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(proc.stderr)
    wheel = next(tmp_path.glob("adaxbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("adaxbench/configs/config.yaml", "adaxbench/configs/task/fmnist_mlp.yaml",
                 "adaxbench/configs/optimizer/adax.yaml", "adaxbench/configs/experiment/beta2_ablation.yaml",
                 "adaxbench/configs/setting/adax_paper/adaxw.yaml", "adaxbench/configs/hydra/launcher/slurm_gpu.yaml",
                 "adaxbench/configs/hydra/help/adaxbench.yaml",
                 "adaxbench/report/references/deepobs_curves.csv",
                 "hydra_plugins/adaxbench_packed_launcher/packed_launcher.py"):
        assert path in names, path
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Import the unpacked wheel (not this checkout) and compose a run config from its configs.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import adaxbench, adaxbench.cli as c; "
            "assert adaxbench.__file__.startswith(sys.argv[1]), adaxbench.__file__; "
            "from hydra import compose, initialize_config_module; "
            "initialize_config_module('adaxbench.configs', version_base='1.3').__enter__(); "
            "cfg = compose('config', overrides=['experiment=beta2_ablation']); "
            "print(cfg.optimizer._target_, cfg.task.name); "
            # Hydra's own plugin scan finds the packed launcher in the installed tree.
            "from hydra.core.plugins import Plugins; from hydra.plugins.launcher import Launcher; "
            "found = [p for p in Plugins.instance().discover(Launcher) if p.__name__ == 'PackedLauncher']; "
            "assert found and sys.modules[found[0].__module__].__file__.startswith(sys.argv[1]), found; "
            "from hydra.core.config_store import ConfigStore; ConfigStore.instance().load('hydra/launcher/packed.yaml'); "
            "sys.exit(c.main(['list']))")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "adaxbench.optim.ScheduledBeta2 fmnist_mlp" in out.stdout and "cifar10_resnet20" in out.stdout
