"""Comparison reports over run dirs: ``build_report`` (Python) and ``adaxbench report`` (CLI).

Its modules load on first use (PEP 562): ``adaxbench run`` prints each sweep's best setting with
``report.best``, which should not cost the figures' and statistics' imports (matplotlib, scipy).
"""

import importlib
import sys
import types

_WHERE = {"build_report": "render", "Report": "render", "ReportError": "load", "RunSet": "load",
          "find_run_dirs": "load", "load_runs": "load", "welch_diff": "aggregate", "score_settings": "aggregate",
          "performance_profile": "aggregate"}
__all__ = list(_WHERE)


class _CallablePackage(types.ModuleType):
    """Importing this package makes ``adaxbench.report`` the package, not the API function of
    the same name; calling the package does what the function does, so both spellings work."""

    def __call__(self, *paths, out="report", **options):
        return self.build_report(paths, out=out, **options)

    def __getattr__(self, name):
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        setattr(self, name, value)
        return value

    def __dir__(self):
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _CallablePackage
