"""Benchmark problems, by name."""

from __future__ import annotations

from estimators import UnknownNameError

from .base import Chunk, Context, Problem, product
from .gaussian import GaussianCos, GaussianExp, GaussianProblem, GaussianQuadratic, GaussianSetting, SettingError
from .vae import VAE, VAEDigits, VAEMnist, VAEProblem, VAESetting

_BUILTIN: dict[str, type[Problem]] = {
    cls.name: cls for cls in (GaussianQuadratic, GaussianCos, GaussianExp, VAEDigits, VAEMnist)
}
_PROBLEMS: dict[str, type[Problem]] = dict(_BUILTIN)


_INSTANCES: dict[str, Problem] = {}  # problems handed over as objects (estbench.run(problems=[obj]))


def register(problem: Problem | type[Problem]) -> str:
    """Make a problem class or object usable by name (the Python API does this for the problems
    it is given); returns its name. A built-in problem's name cannot be taken."""
    cls = problem if isinstance(problem, type) else type(problem)
    if not (isinstance(cls, type) and issubclass(cls, Problem)):
        raise TypeError(f"{problem!r} is not a benchmarks.problems.Problem (class or object)")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"{cls.__name__}.name must be a non-empty string, got {name!r}")
    if name in _BUILTIN and _PROBLEMS[name] is not cls:
        raise ValueError(f"problem name {name!r} is taken by a built-in problem; give yours another name")
    _PROBLEMS[name] = cls
    if isinstance(problem, type):
        _INSTANCES.pop(name, None)
    else:
        _INSTANCES[name] = problem
    return name


def available() -> list[str]:
    return list(_PROBLEMS)


def defaults() -> list[str]:
    """Problems run when none is named: all but those needing user data (vae-mnist)."""
    return [n for n, cls in _PROBLEMS.items() if not getattr(cls, "needs_data_dir", False)]


def get(name: str) -> Problem:
    if name not in _PROBLEMS:
        raise UnknownNameError("problem", name, available())
    return _INSTANCES.get(name) or _PROBLEMS[name]()


__all__ = [
    "Chunk",
    "Context",
    "GaussianCos",
    "GaussianExp",
    "GaussianProblem",
    "GaussianQuadratic",
    "GaussianSetting",
    "Problem",
    "SettingError",
    "VAE",
    "VAEDigits",
    "VAEMnist",
    "VAEProblem",
    "VAESetting",
    "defaults",
    "available",
    "get",
    "product",
    "register",
]
