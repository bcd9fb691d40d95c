"""Repository-wide pytest set-up.

Plain `pytest` (the CI command) runs the pytest-benchmark files under
benchmarks/ once each with timing disabled (a smoke run: they are imported
and executed, but cost no benchmark time). `pytest --benchmark-only` times
them for real.
"""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    opt = config.option
    if hasattr(opt, "benchmark_only") and not (opt.benchmark_only or opt.benchmark_enable or opt.benchmark_skip):
        opt.benchmark_disable = True
