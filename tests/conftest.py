"""Test set-up shared by every test under tests/."""

from __future__ import annotations

import pytest

import estimators
from benchmarks import problems


@pytest.fixture(autouse=True)
def no_library_adapters(monkeypatch):
    """The suite checks estbench's own behaviour, which must not depend on which optional extras are
    installed: the library adapters (the [pyro] and [storchastic] extras) are left out, in this process
    and the estbench processes a test starts. tests/test_adapters.py turns them on where it tests them."""
    monkeypatch.setenv("ESTBENCH_ADAPTERS", "off")


@pytest.fixture(autouse=True)
def no_xdist_variables(monkeypatch):
    """Where the suite runs in pytest-xdist processes (conftest.py at the root), a pytest the test starts must not
    inherit their variables: pytest-benchmark reads PYTEST_XDIST_WORKER as "xdist is on" and refuses to time."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def clean_registry():
    """Estimators and problems registered by a test (plugins, objects given to estbench.run) are
    removed afterwards, so that no test sees another's; installed plugins are loaded first, and kept."""
    saved = [(r, r.snapshot()) for r in (estimators.ESTIMATORS, problems.PROBLEMS)]
    yield
    for r, before in saved:
        r.restore(before)
