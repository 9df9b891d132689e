"""Comparison reports over run dirs: ``build_report`` (Python) and ``adaxbench report`` (CLI)."""

from .aggregate import performance_profile, score_settings, welch_diff
from .load import ReportError, RunSet, find_run_dirs, load_runs
from .render import Report, build_report

__all__ = ["build_report", "Report", "ReportError", "RunSet", "find_run_dirs", "load_runs",
           "welch_diff", "score_settings", "performance_profile"]
