"""estbench.reports: tables, text and figures from result files. Imports no model code."""

from .report import ResultsError, build, read_results

__all__ = ["ResultsError", "build", "read_results"]
