"""Registries: names -> classes, for estimators (here) and problems (benchmarks.problems).

Modelled on xarray's backend registry. One :class:`Registry` type serves both kinds with the
same rules:

- **Built-ins** register where they are defined (``@ESTIMATORS.builtin``), so a new built-in is
  one class and no list to edit.
- **Installed plugins** come from an entry-point group (``estbench.estimators``,
  ``estbench.problems``), loaded lazily and once; a broken one becomes a warning naming it,
  never a crash; one whose optional library is missing is listed with how to install it.
- **Plugin files and modules** (:func:`load_plugin`) and **objects handed in** (the Python API:
  :meth:`Registry.register` of a class or an object) are checked against the interface first.
- A name clashes with a built-in never, and with another plugin's only where the newcomer sets
  ``replaces = True`` (or comes from the same origin: a file loaded again).
- An object handed in is copied for every use, with option values coerced by their declarations,
  so every cell starts from the object as it was handed over.
- The origin of every name is recorded (results rows carry it as ``estimator_origin``).
- An unknown name raises an error listing the valid ones.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .adapters.common import MissingExtra
from .base import ANY, EXPECTATION, MULTI_SAMPLE, OBJECTIVES, Estimator, EstimatorError
from .identity import api_source, file_digest, module_digest
from .isolation import no_exit
from .options import OptionError, declared

ENTRY_POINT_GROUP = "estbench.estimators"
#: set to "off" to leave the installed library adapters (estimators.adapters) out while it is set: the
#: test suite does, so that what it checks does not depend on which extras are installed
ADAPTERS_ENV = "ESTBENCH_ADAPTERS"


class UnknownNameError(KeyError):
    """An unknown estimator or problem name; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.message = f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class MissingExtraError(UnknownNameError):
    """An estimator whose library (an optional extra) is not installed; the message says how to install it."""

    def __init__(self, name: str, why: str):
        KeyError.__init__(self, name)
        self.message = f"estimator {name!r} {why}"


class PluginError(TypeError):
    """A plugin does not implement the interface of its kind."""


#: the names of estimators and problems: they become file cells, Markdown and figure labels, so no character
#: that a spreadsheet, Markdown or HTML would interpret (benchmarks.schema.NAME, which the report checks, is the same)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
NAME_RULE = "letters, digits and . _ : + - only, starting with a letter or digit, at most 64 characters"


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
    if not NAME.fullmatch(name):
        raise PluginError(f"{where}: {cls.__name__}.name {name!r} is not a valid name: {NAME_RULE}")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise PluginError(f"{where}: {cls.__name__} does not implement {missing}")
    return name


class Registry:
    """Names -> classes of one kind, built in and plugins, with the rules of the module docstring.

    kind:      "estimator" or "problem" (error messages); base, base_path: the interface class and
               how users import it; group: the entry-point group; listing: the attribute a plugin
               module may list its classes in (ESTIMATORS, PROBLEMS)
    check:     the kind's own checks of a class, ``check(registry, cls, where)`` raising PluginError
    hidden:    classes left out while it says so (the library adapters under ESTBENCH_ADAPTERS=off);
               hidden(None): whether the names of uninstalled extras are left out too
    """

    def __init__(self, kind: str, base: type, base_path: str, group: str, listing: str,
                 check: Callable[[Registry, type, str], None] | None = None,
                 hidden: Callable[[type | None], bool] | None = None):
        self.kind, self.base, self.base_path, self.group, self.listing = kind, base, base_path, group, listing
        self._check, self._hidden = check, hidden
        self._builtin: dict[str, type] = {}
        self._plugins: dict[str, type] = {}
        self._origin: dict[str, str] = {}
        self._source: dict[str, str] = {}  # what a results row records as the origin
        self._instances: dict[str, Any] = {}  # objects handed over: each get() is a copy
        self._missing: dict[str, str] = {}  # entry points whose library is not installed: name -> how to install it
        self._loaded = False

    # -- registering -------------------------------------------------------------------------

    def builtin(self, cls: type) -> type:
        """Class decorator: register a built-in where it is defined."""
        self.validate(cls, f"estbench {cls.__module__}.{cls.__qualname__}")
        self._builtin[cls.name] = cls
        return cls

    def validate(self, cls: object, origin: str) -> type:
        """Check ``cls`` against the interface and the names registered; PluginError naming ``origin``."""
        where = f"plugin {origin}"
        name = check_interface(cls, self.base, self.base_path, origin)
        if name in self._builtin and self._builtin[name] is not cls:
            raise PluginError(f"{where}: name {name!r} clashes with a built-in {self.kind}")
        same_origin = self._origin.get(name) == origin  # the same file or notebook defining it again
        if (name in self._plugins and self._plugins[name] is not cls and not getattr(cls, "replaces", False)
                and not same_origin):
            raise PluginError(f"{where}: name {name!r} is already registered by {self._origin[name]}; rename the "
                              f"{self.kind}, or set replaces = True on {cls.__name__} to replace it")
        if self._check is not None:
            self._check(self, cls, where)
        return cls

    def register(self, obj: Any, origin: str | None = None, source: str | None = None) -> str:
        """Register a class, or an object (used as a copy per get()); returns its name. ``source`` is
        what results rows record as its origin (default: ``plugin <origin>``)."""
        cls = obj if isinstance(obj, type) else type(obj)
        origin = origin or f"{cls.__module__}.{cls.__qualname__}"
        self.load_entry_points()  # so that a plugin meets the installed names before it can shadow them
        self.validate(cls, origin)
        if cls.name in self._builtin:  # a built-in handed over as a class or an object: its origin stays
            if isinstance(obj, type):
                self._instances.pop(cls.name, None)
            else:
                self._instances[cls.name] = obj
            return cls.name
        self._plugins[cls.name] = cls
        self._origin[cls.name] = origin
        self._source[cls.name] = source or f"plugin {origin}"
        if isinstance(obj, type):
            self._instances.pop(cls.name, None)
        else:
            self._instances[cls.name] = obj
        return cls.name

    def register_module(self, module: object, origin: str, source: str | None = None,
                        required: bool = True) -> list[str]:
        """Register the classes a plugin module exposes (its ``listing`` attribute, else every
        concrete subclass defined in the module itself); returns their names."""
        found = getattr(module, self.listing, None)
        if found is None:
            defined = [obj for obj in vars(module).values()
                       if inspect.isclass(obj) and issubclass(obj, self.base)
                       and obj.__module__ == getattr(module, "__name__", None)]
            found = [obj for obj in defined if not inspect.isabstract(obj)]
            if not found and defined:  # a class that forgot an abstract method: say so, not "none defined"
                self.validate(defined[0], origin)
        if not found and required:
            raise PluginError(f"plugin {origin}: defines no {self.base.__name__} subclass")
        return [self.register(cls, origin, source) for cls in found]

    def load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            origin = f"{ep.name} = {ep.value} (entry point)"
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.value}" + (f" ({dist.name} {dist.version})" if dist is not None else "")
            try:
                obj = ep.load()
            except MissingExtra as exc:  # an adapter whose library is an extra not installed here: listed, not loaded
                self._missing[ep.name] = f"needs {exc.library}, not installed here: {exc.hint}"
                continue
            except Exception as exc:  # a broken plugin must not break the suite
                warnings.warn(f"estbench: skipping {self.kind} {origin}: {exc}", RuntimeWarning, stacklevel=2)
                continue
            try:
                if inspect.ismodule(obj):
                    self.register_module(obj, origin, source)
                else:
                    self.register(obj, origin, source)
            except Exception as exc:  # a broken plugin must not break the suite
                warnings.warn(f"estbench: skipping {self.kind} {origin}: {exc}", RuntimeWarning, stacklevel=2)

    # -- looking up --------------------------------------------------------------------------

    def classes(self) -> dict[str, type]:
        """Every usable name -> class: built-ins first, then plugins, in registration order."""
        self.load_entry_points()
        everything = {**self._builtin, **self._plugins}
        if self._hidden is None:
            return everything
        return {n: c for n, c in everything.items() if not self._hidden(c)}

    def available(self) -> list[str]:
        return list(self.classes())

    def missing(self) -> dict[str, str]:
        """Names whose library is not installed (the adapters' extras): name -> what to install."""
        self.load_entry_points()
        if self._hidden is not None and self._hidden(None):
            return {}
        return {n: why for n, why in self._missing.items() if n not in self._plugins}

    def get_class(self, name: str) -> type:
        self.load_entry_points()
        cls = self._plugins.get(name, self._builtin.get(name))  # as classes() resolves it, without building it
        if cls is not None and (self._hidden is None or not self._hidden(cls)):
            return cls
        classes = self.classes()
        if name not in classes:
            if name in self.missing():
                raise MissingExtraError(name, self._missing[name])
            raise UnknownNameError(self.kind, name, list(classes))
        return classes[name]

    def get(self, name: str, **options: Any) -> Any:
        """A fresh object by name with the given option values: a new instance of the class, or a
        copy of the object handed over, its options coerced by their declarations."""
        cls = self.get_class(name)
        if name not in self._instances:
            return cls(**options)
        obj = copy.deepcopy(self._instances[name])
        known = declared(getattr(cls, "options", ()), cls.__name__)
        for key, value in options.items():
            if key not in known:
                raise EstimatorError(f"{self.kind} {name!r} has no option {key!r}; its options: "
                                     f"{', '.join(known) or 'none'}")
            try:
                setattr(obj, key, known[key].coerce(value))
            except OptionError as exc:
                raise EstimatorError(f"{self.kind} {name!r}: {exc}") from None
        return obj

    def origin(self, name: str) -> str:
        self.get_class(name)
        return self._origin.get(name, "built-in")

    def provenance(self, name: str) -> str:
        """Where a name's code comes from, as a results row records it: 'built-in', the entry point
        and its distribution's version, or the plugin file with a hash of its content."""
        self.get_class(name)
        return self._source.get(name, "built-in")

    # -- for tests: registrations made in a block are undone after it ---------------------------

    def snapshot(self) -> tuple[dict, ...]:
        self.load_entry_points()
        return tuple(dict(d) for d in (self._plugins, self._origin, self._source, self._instances))

    def restore(self, saved: tuple[dict, ...]) -> None:
        for d, before in zip((self._plugins, self._origin, self._source, self._instances), saved, strict=True):
            d.clear()
            d.update(before)


def _check_estimator(registry: Registry, cls: type, where: str) -> None:
    if not isinstance(getattr(cls, "min_samples", 1), int) or cls.min_samples < 1:
        raise PluginError(f"{where}: {cls.__name__}.min_samples must be an int >= 1")
    supports, objectives = getattr(cls, "supports", None), getattr(cls, "objectives", None)
    for attr, value in (("supports", supports), ("objectives", objectives)):
        if not isinstance(value, tuple) or not value or not all(isinstance(v, str) and v for v in value):
            raise PluginError(f"{where}: {cls.__name__}.{attr} must be a non-empty tuple of names, got {value!r}")
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise PluginError(f"{where}: {cls.__name__}.objectives has {', '.join(map(repr, unknown))}; "
                          f"the objective kinds: {', '.join(OBJECTIVES)}")
    for objective, method in ((EXPECTATION, "surrogate"), (MULTI_SAMPLE, "bound_surrogate")):
        if objective in objectives and getattr(cls, method) is getattr(Estimator, method):
            raise PluginError(f"{where}: {cls.__name__} does not implement {method}() for the {objective!r} "
                              f"objective it declares (objectives = {objectives!r})")
    if not isinstance(getattr(cls, "min_K", 1), int) or cls.min_K < 1:
        raise PluginError(f"{where}: {cls.__name__}.min_K must be an int >= 1")
    if cls.unbiased not in (True, False, None):
        raise PluginError(f"{where}: {cls.__name__}.unbiased must be True, False or None, got {cls.unbiased!r}")
    per_draw = cls.f_evals_per_draw
    if per_draw is not None and (isinstance(per_draw, bool) or not isinstance(per_draw, int) or per_draw < 1):
        raise PluginError(f"{where}: {cls.__name__}.f_evals_per_draw must be an int >= 1 or None, got {per_draw!r}")
    try:
        declared(getattr(cls, "options", ()), cls.__name__)
    except TypeError as exc:
        raise PluginError(f"{where}: {exc}") from None


def _adapters_off() -> bool:
    return os.environ.get(ADAPTERS_ENV, "").lower() == "off"


def _hidden_estimator(cls: type | None) -> bool:
    """The library adapters (a class with a ``library``; None: one whose library is not installed)
    while ESTBENCH_ADAPTERS=off."""
    return _adapters_off() and (cls is None or bool(getattr(cls, "library", "")))


ESTIMATORS = Registry("estimator", Estimator, "estimators.Estimator", ENTRY_POINT_GROUP, "ESTIMATORS",
                      check=_check_estimator, hidden=_hidden_estimator)
builtin = ESTIMATORS.builtin


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
            with no_exit():
                module_spec.loader.exec_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a plugin's own bug (even SystemExit, os._exit): report it, naming the plugin
            del sys.modules[mod_name]
            raise PluginError(f"plugin {spec}: import failed: {type(exc).__name__}: {exc}") from exc
        source = f"plugin file {path.name} sha256:{file_digest(path)}"
    else:
        try:
            with no_exit():
                module = importlib.import_module(spec)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise PluginError(f"plugin {spec}: import failed: {type(exc).__name__}: {exc}") from exc
        digest = module_digest(module)
        source = f"plugin module {spec}" + (f" sha256:{digest}" if digest else "")
    return module, source


def load_plugin(spec: str) -> list[str]:
    """Load estimators from a Python file path or an importable module name; returns the names
    registered. PluginError (naming the plugin) if the file cannot be found or imported, or defines
    no valid estimator. (A plugin that may also define problems: benchmarks.plugins.load.)"""
    module, source = import_plugin(spec)
    return ESTIMATORS.register_module(module, spec, source)


def register(cls: type[Estimator], origin: str | None = None, source: str | None = None) -> type[Estimator]:
    """Register an estimator class (usable as a decorator); returns the class."""
    ESTIMATORS.register(cls, origin, source)
    return cls


def register_object(obj: Estimator | type[Estimator], origin: str = "Python object") -> str:
    """Make an estimator class or object usable by name (the Python API does this for estimators
    defined in a notebook or script); returns its name."""
    cls = obj if isinstance(obj, type) else type(obj)
    return ESTIMATORS.register(obj, f"{origin} {cls.__module__}.{cls.__qualname__}", api_source(obj, origin))


def validate(cls: object, origin: str) -> type[Estimator]:
    return ESTIMATORS.validate(cls, origin)


def register_module(module: object, origin: str, source: str | None = None, required: bool = True) -> list[str]:
    return ESTIMATORS.register_module(module, origin, source, required)


available = ESTIMATORS.available
missing = ESTIMATORS.missing
get_class = ESTIMATORS.get_class
get = ESTIMATORS.get
origin = ESTIMATORS.origin
provenance = ESTIMATORS.provenance


def family_names(cls: type[Estimator]) -> str:
    """What ``estbench list`` shows of ``supports``."""
    return "any" if ANY in cls.supports else ",".join(cls.supports)
