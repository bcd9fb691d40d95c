"""Benchmark problems, by name."""

from __future__ import annotations

from estimators import UnknownNameError

from .base import Chunk, Context, Problem, product
from .gaussian import GaussianCos, GaussianExp, GaussianProblem, GaussianQuadratic, GaussianSetting, SettingError

_PROBLEMS: dict[str, type[Problem]] = {
    cls.name: cls for cls in (GaussianQuadratic, GaussianCos, GaussianExp)
}


def available() -> list[str]:
    return list(_PROBLEMS)


def get(name: str) -> Problem:
    if name not in _PROBLEMS:
        raise UnknownNameError("problem", name, available())
    return _PROBLEMS[name]()


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
    "available",
    "get",
    "product",
]
