"""Repository-wide pytest set-up.

Plain `pytest` (the CI command) runs the pytest-benchmark files under
benchmarks/ once each with timing disabled (a smoke run: they are imported
and executed, but cost no benchmark time). `pytest --benchmark-only` times
them for real, and collects nothing under tests/: it works after the base
(report) install alone, without the test extra's packages.

Plugins for the benchmarks: `--estbench-plugin FILE_OR_MODULE` (repeatable)
or the environment variable ESTBENCH_PLUGINS (paths or modules separated by
os.pathsep). The device the benchmarks run on: `--estbench-device cuda` (or
ESTBENCH_DEVICE; default cpu).
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    parser.addoption("--estbench-plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                     help="load estbench estimators from a file or module before collecting benchmarks")
    parser.addoption("--estbench-device", metavar="DEVICE",
                     help="run the benchmarks under benchmarks/ on this device: cpu or cuda[:N] (default: "
                          "$ESTBENCH_DEVICE, else cpu)")


def pytest_ignore_collect(collection_path, config):
    """Under --benchmark-only, the unit tests (which need the test extra) are not collected."""
    if getattr(config.option, "benchmark_only", False) and collection_path.is_relative_to(ROOT / "tests"):
        return True
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from benchmarks.allocator import keep_freed_memory

    keep_freed_memory()  # as the estbench commands do, so the benchmarks time the same allocations
    opt = config.option
    if hasattr(opt, "benchmark_only") and not (opt.benchmark_only or opt.benchmark_enable or opt.benchmark_skip):
        opt.benchmark_disable = True
    device = config.getoption("estbench_device")
    if device is not None:
        from benchmarks.sweep import SweepError, check_device

        try:
            check_device(device)
        except SweepError as exc:
            raise pytest.UsageError(f"--estbench-device: {exc}") from None
        os.environ["ESTBENCH_DEVICE"] = device  # read by benchmarks.sweep.benchmark_device when they are collected
    specs = list(config.getoption("estbench_plugin") or [])
    specs += [s for s in os.environ.get("ESTBENCH_PLUGINS", "").split(os.pathsep) if s]
    if specs:
        import estimators

        for spec in specs:
            estimators.load_plugin(spec)
