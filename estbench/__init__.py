"""estbench: a benchmark suite for Monte Carlo gradient estimators.

From Python: ``estbench.run(...)`` returns the results as a DataFrame and ``estbench.report(...)``
builds the variance report (see estbench.api). From the shell: the ``estbench`` command
(estbench.cli), a thin layer over the same functions.
"""

from .api import report, run

__all__ = ["report", "run"]
