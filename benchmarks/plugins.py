"""Loading a plugin file or module that defines estimators, problems, or both."""

from __future__ import annotations

import inspect

from estimators import PluginError
from estimators import registry as estimator_registry

from . import problems
from .problems.base import Problem

#: the plugins this process loaded, in the order of their last load, with the names each registered:
#: a cluster's workers load those that the run uses (benchmarks.distributed.job_for)
LOADED: dict[str, list[str]] = {}


def load(spec: str) -> list[str]:
    """Import the plugin ``spec`` (a .py file or a module name) and register the estimators and
    problems it defines; returns their names. PluginError, naming the plugin, if it cannot be
    imported, defines neither, or breaks an interface."""
    module, source = estimator_registry.import_plugin(spec)
    names = estimator_registry.register_module(module, spec, source, required=False)
    found = getattr(module, "PROBLEMS", None)
    if found is None:
        found = [obj for obj in vars(module).values()
                 if inspect.isclass(obj) and issubclass(obj, Problem) and obj.__module__ == module.__name__]
    for cls in found:
        names.append(problems.register(cls, spec, source))
    if not names:
        raise PluginError(f"plugin {spec}: defines no Estimator or Problem subclass")
    LOADED.pop(spec, None)
    LOADED[spec] = list(names)
    return names
