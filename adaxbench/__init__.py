"""adaxbench: which adaptive optimizer trains better, settled by experiment.

The Python API (see docs/how-to/python-api.md); imported lazily, so ``import adaxbench`` stays light:

* ``adaxbench.run(optimizer, overrides, **hyperparameters)``: one run, recorded like ``adaxbench run``;
* ``adaxbench.load_runs(*paths)``: the runs under ``paths`` as one pandas DataFrame;
* ``adaxbench.report(*paths, out=...)``: the comparison report, as ``adaxbench report`` writes it.
"""

from ._version import __version__

_API = {"run": "api", "load_runs": "api", "report": "api", "compose": "api", "RunOutcome": "api",
        "ConfigError": "errors"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'adaxbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
