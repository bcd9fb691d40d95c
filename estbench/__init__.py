"""estbench: a benchmark suite for Monte Carlo gradient estimators.

From Python: ``estbench.run(...)`` returns the results as a DataFrame and ``estbench.report(...)``
builds the variance report (see estbench.api). From the shell: the ``estbench`` command
(estbench.cli), a thin layer over the same functions.

``run`` and ``report`` are imported on first use, so that the command's entry point
(estbench.entry) starts with the standard library only.
"""

from typing import Any

__all__ = ["report", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'estbench' has no attribute {name!r}")
