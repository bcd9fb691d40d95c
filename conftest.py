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

A run of the suite or of a folder (`pytest`, `pytest -m "not slow"`, `pytest tests`) is spread over one
pytest-xdist process per usable core (at most MAX_TEST_PROCESSES), each with its share of the cores as
torch threads: most tests are small torch operations and Python, which one core runs, so one process
left the second core idle (on 2 cores the suite took 8.5 minutes in one process and 5 in two, one run
each). A run of named files or tests, `-n N` (`-n 0`: one process), `-p no:xdist`, `--pdb` and
`--benchmark-only` (pytest-benchmark times nothing under xdist) are left as given.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
#: test processes of a run of the suite: one per usable core, at most this many
MAX_TEST_PROCESSES = 8


def _whole_suite(config) -> bool:
    """Whether this run is of folders (or of the configured test paths), not of named files or tests."""
    return all("::" not in a and not a.endswith(".py") for a in config.args)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Spread a run of the suite over pytest-xdist processes (the module docstring): runs before xdist's own
    pytest_cmdline_main reads -n (a conftest's hooks are called before an installed plugin's)."""
    opt = config.option
    if (not config.pluginmanager.hasplugin("xdist") or getattr(opt, "numprocesses", 0) is not None
            or getattr(opt, "dist", "no") != "no" or getattr(opt, "benchmark_only", False) or opt.usepdb
            or os.environ.get("PYTEST_XDIST_WORKER") or not _whole_suite(config)):
        return None
    from benchmarks.cluster import threads_per_worker, usable_cores

    cores = usable_cores()
    processes = min(cores, MAX_TEST_PROCESSES)
    if processes < 2:
        return None
    opt.numprocesses = processes
    opt.dist = "worksteal"  # an idle process takes half of a busy one's queue: the long tests do not end the run alone
    # each process's torch threads (and those of the estbench processes the tests start): its share of the cores
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_worker(processes, cores)))
    return None


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
