"""The layers of pyproject.toml's [tool.importlinter] hold, and no adaxbench module sits in an import cycle.

``lint-imports`` (import-linter) checks the contracts; the cycle test reads the same import
graph (grimp, which import-linter is built on) module by module, lazy imports included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adaxbench", "hydra_plugins.adaxbench_packed_launcher")
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                "--no-cache"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # import-linter puts its working directory first on sys.path, so it reads root's code.
    return subprocess.run(LINT_IMPORTS, cwd=root, capture_output=True, text=True, timeout=120)


def cycles(graph: grimp.ImportGraph, prefix: str = "adaxbench") -> list[tuple[str, str]]:
    """Every direct import ``(a, b)`` between modules under ``prefix`` that lies on a cycle,
    that is, with a chain of imports from ``b`` back to ``a``."""
    mods = sorted(m for m in graph.modules if m == prefix or m.startswith(prefix + "."))
    return [(a, b) for a in mods for b in sorted(graph.find_modules_directly_imported_by(a))
            if b in mods and graph.find_shortest_chain(importer=b, imported=a)]


def test_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    # The contract is not vacuous: optim importing from train (a layer above) fails it.
    for name in ("adaxbench", "hydra_plugins"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "adaxbench" / "optim" / "beta2.py", "a") as f:
        f.write("\nfrom ..train import validate  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "adaxbench.optim is not allowed to import adaxbench.train" in result.stdout


def test_a_report_module_without_a_layer_breaks_the_report_contract(tmp_path):
    # The report's layers name every module of report/ (exhaustive): a new one must be given a layer.
    for name in ("adaxbench", "hydra_plugins"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "adaxbench" / "report" / "stray.py").write_text("from .load import usable  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "adaxbench.report.stray" in result.stdout


def test_no_module_imports_the_package_root():
    # adaxbench/__init__.py is in no layer (its API is imported lazily from every layer): a module
    # that imported it, for __version__ say, would sit above all of them.  _version.py is the leaf.
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert graph.find_modules_that_directly_import("adaxbench") == set()


def test_no_module_is_in_an_import_cycle():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert cycles(graph) == []


def test_cycles_finds_each_import_of_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in [("adaxbench.a", "adaxbench.b"), ("adaxbench.b", "adaxbench.c"), ("adaxbench.c", "adaxbench.a"),
                 ("adaxbench.c", "adaxbench.d")]:
        graph.add_import(importer=a, imported=b)
    assert cycles(graph) == [("adaxbench.a", "adaxbench.b"), ("adaxbench.b", "adaxbench.c"),
                             ("adaxbench.c", "adaxbench.a")]
