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
def clean_registry():
    """Estimators and problems registered by a test (plugins, objects given to estbench.run) are
    removed afterwards, so that no test sees another's; installed plugins are loaded first, and kept."""
    estimators.available()
    reg = estimators.registry
    saved = [(d, dict(d)) for d in (reg._PLUGINS, reg._PLUGIN_ORIGIN, reg._PLUGIN_SOURCE, reg._INSTANCES,
                                     problems._PROBLEMS, problems._INSTANCES)]
    yield
    for d, before in saved:
        d.clear()
        d.update(before)
