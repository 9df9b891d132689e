"""Comparison reports over run dirs: ``build_report`` (Python) and ``adaxbench report`` (CLI)."""

import sys
import types

from .aggregate import performance_profile, score_settings, welch_diff
from .load import ReportError, RunSet, find_run_dirs, load_runs
from .render import Report, build_report

__all__ = ["build_report", "Report", "ReportError", "RunSet", "find_run_dirs", "load_runs",
           "welch_diff", "score_settings", "performance_profile"]


class _CallablePackage(types.ModuleType):
    """Importing this package makes ``adaxbench.report`` the package, not the API function of
    the same name; calling the package does what the function does, so both spellings work."""

    def __call__(self, *paths, out="report", **options):
        return build_report(paths, out=out, **options)


sys.modules[__name__].__class__ = _CallablePackage
