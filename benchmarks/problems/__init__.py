"""Benchmark problems, by name: the built-in ones, installed plugins (entry-point group
``estbench.problems``), and problems registered from a plugin file or the Python API."""

from __future__ import annotations

import importlib.metadata
import warnings

from estimators import PluginError, UnknownNameError
from estimators.options import Option, declared
from estimators.registry import check_interface

from .base import Chunk, Context, Problem, SettingError, product
from .binary_vae import BinaryVAE, BinaryVAEProblem, VAEDigitsBinary, VAEMnistBinary
from .counting import counted
from .discrete import BernoulliCoupled, BernoulliQuadratic, CategoricalQuadratic, DiscreteProblem
from .gaussian import GaussianCos, GaussianExp, GaussianProblem, GaussianQuadratic, GaussianSetting
from .vae import VAE, VAEDigits, VAEMnist, VAEProblem, VAESetting

ENTRY_POINT_GROUP = "estbench.problems"
KINDS = ("toy", "model")

_BUILTIN: dict[str, type[Problem]] = {
    cls.name: cls for cls in (GaussianQuadratic, GaussianCos, GaussianExp, BernoulliQuadratic, BernoulliCoupled,
                              CategoricalQuadratic, VAEDigits, VAEMnist, VAEDigitsBinary, VAEMnistBinary)
}
_PROBLEMS: dict[str, type[Problem]] = dict(_BUILTIN)
_INSTANCES: dict[str, Problem] = {}  # problems handed over as objects (estbench.run(problems=[obj]))
_ORIGIN: dict[str, str] = {}
_entry_points_loaded = False


def validate(cls: object, origin: str) -> type[Problem]:
    """Check that ``cls`` implements the problem interface; PluginError naming ``origin`` otherwise."""
    where = f"plugin {origin}"
    name = check_interface(cls, Problem, "benchmarks.problems.Problem", origin)
    for attr in ("description", "groups", "kind", "setting_type"):
        if not hasattr(cls, attr):
            raise PluginError(f"{where}: {cls.__name__} does not set {attr}")
    if cls.kind not in KINDS:
        raise PluginError(f"{where}: {cls.__name__}.kind must be one of {', '.join(KINDS)}, got {cls.kind!r}")
    try:
        axes = declared(cls.axes, cls.__name__)
    except TypeError as exc:
        raise PluginError(f"{where}: {exc}") from None
    fields = set(getattr(cls.setting_type, "__dataclass_fields__", {}))
    if fields != set(axes):
        raise PluginError(f"{where}: {cls.__name__}.setting_type must be a dataclass with one field per axis "
                          f"({', '.join(axes) or 'none'}), has {', '.join(sorted(fields)) or 'none'}")
    if name in _BUILTIN and _BUILTIN[name] is not cls:
        raise PluginError(f"{where}: name {name!r} clashes with a built-in problem")
    if name in _PROBLEMS and _PROBLEMS[name] is not cls and _ORIGIN.get(name) != origin:
        raise PluginError(f"{where}: name {name!r} is already registered by {_ORIGIN.get(name, 'estbench')}")
    others = {a.name: (a, p) for p, c in _PROBLEMS.items() if p != name for a in c.axes}
    for axis in axes.values():
        if axis.name in others and others[axis.name][0].type is not axis.type:
            other, owner = others[axis.name]
            raise PluginError(f"{where}: axis {axis.name!r} is a {axis.type.__name__} here but a "
                              f"{other.type.__name__} in problem {owner}; rename it")
    return cls


def register(problem: Problem | type[Problem], origin: str = "Python object") -> str:
    """Make a problem class or object usable by name (a plugin file, an entry point, or the
    Python API's problems); returns its name. PluginError if it breaks the interface."""
    cls = problem if isinstance(problem, type) else type(problem)
    _load_entry_points()
    validate(cls, origin)
    _PROBLEMS[cls.name] = cls
    _ORIGIN[cls.name] = origin
    if isinstance(problem, type):
        _INSTANCES.pop(cls.name, None)
    else:
        _INSTANCES[cls.name] = problem
    return cls.name


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(ep.load(), f"{ep.name} = {ep.value} (entry point)")
        except Exception as exc:  # a broken installed plugin must not break the suite
            warnings.warn(f"estbench: skipping problem {ep.name} = {ep.value}: {exc}", RuntimeWarning, stacklevel=2)


def available() -> list[str]:
    _load_entry_points()
    return list(_PROBLEMS)


def defaults() -> list[str]:
    """Problems run when none is named: all but those needing user data (vae-mnist)."""
    return [n for n in available() if not getattr(_PROBLEMS[n], "needs_data_dir", False)]


def get_class(name: str) -> type[Problem]:
    if name not in available():
        raise UnknownNameError("problem", name, available())
    return _PROBLEMS[name]


def get(name: str) -> Problem:
    cls = get_class(name)
    return _INSTANCES.get(name) or cls()


def origin(name: str) -> str:
    get_class(name)
    return _ORIGIN.get(name, "built-in")


__all__ = [
    "BernoulliCoupled", "BernoulliQuadratic", "BinaryVAE", "BinaryVAEProblem", "CategoricalQuadratic", "DiscreteProblem",
    "Chunk", "Context", "GaussianCos", "GaussianExp", "GaussianProblem", "GaussianQuadratic", "GaussianSetting",
    "Option", "Problem", "SettingError", "VAE", "VAEDigits", "VAEDigitsBinary", "VAEMnist", "VAEMnistBinary",
    "VAEProblem", "VAESetting",
    "available", "counted", "defaults", "get", "get_class", "origin", "product", "register",
]  # fmt: skip
