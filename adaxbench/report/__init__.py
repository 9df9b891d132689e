"""Comparison reports over run dirs: ``build_report`` (Python) and ``adaxbench report`` (CLI)."""

from .aggregate import bootstrap_diff_ci, performance_profile
from .load import ReportError, RunSet, find_run_dirs, load_runs
from .render import Report, build_report

__all__ = ["build_report", "Report", "ReportError", "RunSet", "find_run_dirs", "load_runs",
           "bootstrap_diff_ci", "performance_profile"]
