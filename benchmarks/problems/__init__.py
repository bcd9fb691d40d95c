"""Benchmark problems, by name."""

from __future__ import annotations

from estimators import UnknownNameError

from .base import Chunk, Context, Problem, product
from .gaussian import GaussianCos, GaussianExp, GaussianProblem, GaussianQuadratic, GaussianSetting, SettingError
from .vae import VAE, VAEDigits, VAEMnist, VAEProblem, VAESetting

_PROBLEMS: dict[str, type[Problem]] = {
    cls.name: cls for cls in (GaussianQuadratic, GaussianCos, GaussianExp, VAEDigits, VAEMnist)
}


def available() -> list[str]:
    return list(_PROBLEMS)


def defaults() -> list[str]:
    """Problems run when none is named: all but those needing user data (vae-mnist)."""
    return [n for n, cls in _PROBLEMS.items() if not getattr(cls, "needs_data_dir", False)]


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
    "VAE",
    "VAEDigits",
    "VAEMnist",
    "VAEProblem",
    "VAESetting",
    "defaults",
    "available",
    "get",
    "product",
]
