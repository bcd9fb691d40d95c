"""The estimator registry: built-ins plus plugins.

Modelled on xarray's backend registry: built-ins are always there; installed
packages add estimators through the entry-point group ``estbench.estimators``
(loaded lazily, once); a local file or module can be loaded explicitly with
:func:`load_plugin`. A broken plugin becomes a warning naming it, never a
crash of the whole suite; an unknown name raises an error listing valid names.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from .adapters.common import MissingExtra
from .base import Estimator
from .builtin import BUILTINS
from .discrete import DISCRETE
from .options import declared
from .relax import RELAXED_CV

ENTRY_POINT_GROUP = "estbench.estimators"
#: set to "off" to leave the installed library adapters (estimators.adapters) out while it is set: the
#: test suite does, so that what it checks does not depend on which extras are installed
ADAPTERS_ENV = "ESTBENCH_ADAPTERS"

_BUILTIN: dict[str, type[Estimator]] = {cls.name: cls for cls in (*BUILTINS, *DISCRETE, *RELAXED_CV)}
_PLUGINS: dict[str, type[Estimator]] = {}
_PLUGIN_ORIGIN: dict[str, str] = {}
_PLUGIN_SOURCE: dict[str, str] = {}  # what a results row records as the estimator's origin
_INSTANCES: dict[str, Estimator] = {}  # estimators handed over as objects: each get() is a copy
_MISSING: dict[str, str] = {}  # entry points whose library is not installed: name -> how to install it
_entry_points_loaded = False


class UnknownNameError(KeyError):
    """An unknown estimator or problem name; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.message = f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PluginError(TypeError):
    """A plugin does not implement the estimator interface."""


def check_interface(cls: object, base: type, base_path: str, origin: str) -> str:
    """The checks every plugin class passes (an estimator, a problem): a subclass of ``base``, a
    non-empty ``name``, every abstract method implemented. Returns the name; PluginError naming
    ``origin`` otherwise."""
    where = f"plugin {origin}"
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise PluginError(f"{where}: {cls!r} is not a subclass of {base_path}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise PluginError(f"{where}: {cls.__name__}.name must be a non-empty string, got {name!r}")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise PluginError(f"{where}: {cls.__name__} does not implement {missing}")
    return name


def validate(cls: object, origin: str) -> type[Estimator]:
    """Check that ``cls`` implements the public interface; raise PluginError naming ``origin``."""
    where = f"plugin {origin}"
    name = check_interface(cls, Estimator, "estimators.Estimator", origin)
    if name in _BUILTIN and _BUILTIN[name] is not cls:
        raise PluginError(f"{where}: name {name!r} clashes with a built-in estimator")
    same_origin = _PLUGIN_ORIGIN.get(name) == origin  # the same file or notebook defining it again
    if name in _PLUGINS and _PLUGINS[name] is not cls and not getattr(cls, "replaces", False) and not same_origin:
        raise PluginError(
            f"{where}: name {name!r} is already registered by {_PLUGIN_ORIGIN[name]}; rename the estimator, or set "
            f"replaces = True on {cls.__name__} to replace it"
        )
    if not isinstance(getattr(cls, "min_samples", 1), int) or cls.min_samples < 1:
        raise PluginError(f"{where}: {cls.__name__}.min_samples must be an int >= 1")
    try:
        declared(getattr(cls, "options", ()), cls.__name__)
    except TypeError as exc:
        raise PluginError(f"{where}: {exc}") from None
    return cls


def register(cls: type[Estimator], origin: str | None = None, source: str | None = None) -> type[Estimator]:
    """Register an estimator class (usable as a decorator). Returns the class.

    A name that is already registered (by an installed plugin, such as the shipped
    ``measure-valued``) is an error unless the class sets ``replaces = True``.
    ``source`` is what results rows record as the estimator's origin."""
    origin = origin or f"{cls.__module__}.{cls.__qualname__}"
    if not _entry_points_loaded:
        _load_entry_points()  # so that a plugin meets the installed names before it can shadow them
    validate(cls, origin)
    _PLUGINS[cls.name] = cls
    _INSTANCES.pop(cls.name, None)
    _PLUGIN_ORIGIN[cls.name] = origin
    _PLUGIN_SOURCE[cls.name] = source or f"plugin {origin}"
    return cls


def register_object(obj: Estimator | type[Estimator], origin: str = "Python object") -> str:
    """Make an estimator class or object usable by name (the Python API does this for estimators
    defined in a notebook or script); returns its name. An object is copied for every use, so
    each cell starts from the object as it was handed over."""
    cls = obj if isinstance(obj, type) else type(obj)
    source = f"{origin} {cls.__module__}.{cls.__qualname__}"
    register(cls, source, source)
    if isinstance(obj, type):
        _INSTANCES.pop(cls.name, None)
    else:
        _INSTANCES[cls.name] = obj
    return cls.name


def register_module(module: object, origin: str, source: str | None = None, required: bool = True) -> list[str]:
    """Register the estimators a plugin module exposes; returns their names.

    A module may list them in ``ESTIMATORS``; otherwise every Estimator
    subclass defined in the module itself is taken. With ``required``, a module
    without any is a PluginError.
    """
    found = getattr(module, "ESTIMATORS", None)
    if found is None:
        defined = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, Estimator)
            and obj.__module__ == getattr(module, "__name__", None)
        ]
        found = [obj for obj in defined if not inspect.isabstract(obj)]
        if not found and defined:  # a class that forgot surrogate(): say so, not "no estimator"
            validate(defined[0], origin)
    if not found and required:
        raise PluginError(f"plugin {origin}: defines no Estimator subclass")
    names = []
    for cls in found:
        register(cls, origin, source)
        names.append(cls.name)
    return names


def load_plugin(spec: str) -> list[str]:
    """Load estimators from a Python file path or an importable module name.

    Returns the names registered. Raises PluginError (naming the plugin) if the
    file cannot be found or imported, or defines no valid estimator. (A plugin
    that may also define problems: benchmarks.plugins.load.)
    """
    module, source = import_plugin(spec)
    return register_module(module, spec, source)


def import_plugin(spec: str) -> tuple[object, str]:
    """Import a plugin file or module; returns (module, source), source being what results rows
    record as its origin (a file with a hash of its content, or the module's name)."""
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise PluginError(f"plugin {spec}: no such file")
        mod_name = f"estbench_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a plugin's own bug: report it, naming the plugin
            del sys.modules[mod_name]
            raise PluginError(f"plugin {spec}: import failed: {type(exc).__name__}: {exc}") from exc
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        source = f"plugin file {path.name} sha256:{digest}"
    else:
        try:
            module = importlib.import_module(spec)
        except (Exception, SystemExit) as exc:
            raise PluginError(f"plugin {spec}: import failed: {type(exc).__name__}: {exc}") from exc
        source = f"plugin module {spec}"
    return module, source


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"{ep.name} = {ep.value} (entry point)"
        dist = getattr(ep, "dist", None)
        source = f"entry point {ep.value}" + (f" ({dist.name} {dist.version})" if dist is not None else "")
        try:
            obj = ep.load()
        except MissingExtra as exc:  # an adapter whose library is an extra not installed here: listed, not loaded
            _MISSING[ep.name] = f"needs {exc.library}, not installed here: {exc.hint}"
            continue
        except Exception as exc:  # a broken plugin must not break the suite
            warnings.warn(f"estbench: skipping estimator {origin}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        try:
            if inspect.ismodule(obj):
                register_module(obj, origin, source)
            else:
                register(obj, origin, source)
        except Exception as exc:  # a broken plugin must not break the suite
            warnings.warn(f"estbench: skipping estimator {origin}: {exc}", RuntimeWarning, stacklevel=2)


def _adapters_off() -> bool:
    return os.environ.get(ADAPTERS_ENV, "").lower() == "off"


def _all() -> dict[str, type[Estimator]]:
    _load_entry_points()
    if _adapters_off():
        return {**_BUILTIN, **{n: c for n, c in _PLUGINS.items() if not c.__module__.startswith("estimators.adapters.")}}
    return {**_BUILTIN, **_PLUGINS}


def available() -> list[str]:
    """Names of all estimators: built-ins first, then plugins, in registration order."""
    return list(_all())


def missing() -> dict[str, str]:
    """Estimators whose library is not installed (the adapters' extras): name -> what to install."""
    _load_entry_points()
    return {} if _adapters_off() else {n: why for n, why in _MISSING.items() if n not in _PLUGINS}


class MissingExtraError(UnknownNameError):
    """An estimator whose library (an optional extra) is not installed; the message says how to install it."""

    def __init__(self, name: str, why: str):
        KeyError.__init__(self, name)
        self.message = f"estimator {name!r} {why}"


def get_class(name: str) -> type[Estimator]:
    classes = _all()
    if name not in classes:
        if name in missing():
            raise MissingExtraError(name, _MISSING[name])
        raise UnknownNameError("estimator", name, list(classes))
    return classes[name]


def get(name: str, **options: Any) -> Estimator:
    """A fresh estimator instance by name, with the given option values (for one handed over as
    an object, a copy of it)."""
    cls = get_class(name)
    if name in _INSTANCES:
        est = copy.deepcopy(_INSTANCES[name])
        for key, value in options.items():
            setattr(est, key, value)
        return est
    return cls(**options)


def origin(name: str) -> str:
    get_class(name)
    return _PLUGIN_ORIGIN.get(name, "built-in")


def provenance(name: str) -> str:
    """Where an estimator's code comes from, as a results row records it: 'built-in', the entry
    point and its distribution's version, or the plugin file with a hash of its content."""
    get_class(name)
    return _PLUGIN_SOURCE.get(name, "built-in")
