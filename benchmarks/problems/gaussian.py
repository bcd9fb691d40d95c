"""Toy Gaussian problems with closed-form truth.

x ~ N(mu, diag(sigma^2)) in ``dim`` dimensions, f(x) = sum_d h(x_d) for a
scalar test function h. Gradients are reported with respect to mu and to
sigma itself (not log sigma), as in Mohamed et al. 2020, "Monte Carlo Gradient
Estimation in Machine Learning" (JMLR), section 3.

Closed forms, per coordinate, for x ~ N(mu, sigma^2):

quadratic  h = (x - k)^2
    E h = (mu - k)^2 + sigma^2
    dE/dmu = 2 (mu - k)                   dE/dsigma = 2 sigma
cos        h = cos(k x)
    E h = cos(k mu) exp(-k^2 sigma^2 / 2)
    dE/dmu = -k sin(k mu) exp(-k^2 sigma^2 / 2)
    dE/dsigma = -k^2 sigma cos(k mu) exp(-k^2 sigma^2 / 2)
exp        h = exp(-k x^2), needs s = 1 + 2 k sigma^2 > 0
    E h = s^(-1/2) exp(-k mu^2 / s)
    dE/dmu = E h * (-2 k mu / s)
    dE/dsigma = E h * (-2 k sigma / s + 4 k^2 mu^2 sigma / s^2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.distributions import Independent, Normal

from estimators import Estimator
from estimators.options import Option, at_least, finite, positive

from .base import Chunk, Context, Problem, SettingError, builtin, surrogate
from .counting import counted


def normal_leaves(mu: float | tuple[float, ...], sigma: float | tuple[float, ...], dim: int, replicates: int,
                  ctx: Context) -> tuple[Independent, torch.Tensor, torch.Tensor]:
    """Independent N(mu, sigma^2) per replicate (each one number, or one per coordinate); returns (dist,
    mu, sigma) with mu, sigma [R, dim] leaves so that autograd yields one gradient per replicate."""
    def leaf(value: float | tuple[float, ...]) -> torch.Tensor:
        if isinstance(value, tuple):
            row = torch.tensor(value, dtype=ctx.dtype, device=ctx.device)
            return row.expand(replicates, dim).clone().requires_grad_(True)
        # requires_grad_ after the fill, not torch.full(requires_grad=True): dynamo breaks the compiled chunk's graph
        # at a creation function with requires_grad=True (compiled estimates then cost 1.06-1.31x, docs/performance.md)
        return torch.full((replicates, dim), value, dtype=ctx.dtype, device=ctx.device).requires_grad_(True)

    mu_, sigma_ = leaf(mu), leaf(sigma)
    # validate_args=False: the setting was validated once (validate()); per-call checks of
    # parameters and samples cost a third of a toy chunk's time
    return Independent(Normal(mu_, sigma_, validate_args=False), 1), mu_, sigma_


def normal_chunk(estimator: Estimator, dist: Independent, mu: torch.Tensor, sigma: torch.Tensor, target: Any,
                 n_samples: int, replicates: int, state: Any) -> Chunk:
    """The gradients in mu and sigma [R, dim] of the estimator's surrogate for ``target`` (an f or a
    Bound) under normal_leaves' ``dist``; zero where the estimator leaves one out."""
    sur = surrogate(estimator, dist, target, n_samples, state, (replicates,))
    g_mu, g_sigma = torch.autograd.grad(sur.loss.sum(), (mu, sigma), allow_unused=True)
    zeros = lambda g: torch.zeros_like(mu) if g is None else g  # noqa: E731
    return Chunk(grads={"mu": zeros(g_mu), "sigma": zeros(g_sigma)}, state=sur.state)


@dataclass(frozen=True)
class GaussianSetting:
    """mu and sigma are one number for every coordinate, or (from a sweep file) a tuple of
    one number per coordinate."""

    mu: float | tuple[float, ...]
    sigma: float | tuple[float, ...]
    k: float
    dim: int

    def coords(self, name: str) -> list[float]:
        """Per-coordinate values of ``mu`` or ``sigma`` (length dim)."""
        value = getattr(self, name)
        return list(value) if isinstance(value, tuple) else [value] * self.dim

    def distinct(self, name: str) -> tuple[float, ...]:
        """The values of ``mu`` or ``sigma`` without repeating a shared one dim times (checks and
        closed forms need no list of length dim)."""
        value = getattr(self, name)
        return value if isinstance(value, tuple) else (value,)


def _text(value: float | tuple[float, ...]) -> float | str:
    """A setting value for the results table: a number, or per-coordinate values joined by ';'."""
    return ";".join(repr(v) for v in value) if isinstance(value, tuple) else value


def _h_quadratic(x: torch.Tensor, k: float) -> torch.Tensor:
    return (x - k) ** 2


def _h_cos(x: torch.Tensor, k: float) -> torch.Tensor:
    return torch.cos(k * x)


def _h_exp(x: torch.Tensor, k: float) -> torch.Tensor:
    return torch.exp(-k * x * x)


def _truth_quadratic(mu: float, sigma: float, k: float) -> tuple[float, float, float]:
    return (mu - k) ** 2 + sigma**2, 2 * (mu - k), 2 * sigma


def _truth_cos(mu: float, sigma: float, k: float) -> tuple[float, float, float]:
    damp = math.exp(-(k**2) * sigma**2 / 2)
    return (
        math.cos(k * mu) * damp,
        -k * math.sin(k * mu) * damp,
        -(k**2) * sigma * math.cos(k * mu) * damp,
    )


def _truth_exp(mu: float, sigma: float, k: float) -> tuple[float, float, float]:
    s = 1 + 2 * k * sigma**2
    value = s**-0.5 * math.exp(-k * mu**2 / s)
    return (
        value,
        value * (-2 * k * mu / s),
        value * (-2 * k * sigma / s + 4 * k**2 * mu**2 * sigma / s**2),
    )


class GaussianProblem(Problem):
    """E_{x ~ N(mu, sigma^2 I)} [sum_d h(x_d)] for one scalar test function h."""

    groups = ("mu", "sigma")
    h: ClassVar[Callable[[torch.Tensor, float], torch.Tensor]]
    truth: ClassVar[Callable[[float, float, float], tuple[float, float, float]]]
    formula: ClassVar[str]

    kind = "toy"
    family = "normal"
    axes = (
        Option("mu", float, (1.0,), "mean of every coordinate (a sweep file may give one per coordinate)",
               check=finite, per_coordinate=True, report=(-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
               report_quick=(-2.0, 0.0, 1.0, 2.0)),
        Option("sigma", float, (1.0,), "standard deviation, > 0 (a sweep file may give one per coordinate)",
               check=positive, per_coordinate=True, report=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0), report_quick=(0.25, 1.0, 4.0)),
        Option("k", float, (1.0,), "parameter of the test function", check=finite),
        Option("dim", int, (1,), "dimension, >= 1", check=at_least(1)),
    )
    setting_type = GaussianSetting

    def validate(self, s: GaussianSetting) -> None:
        if s.dim < 1:
            raise SettingError(f"dim must be an integer >= 1, got dim={s.dim}")
        for name in ("mu", "sigma"):
            value = getattr(s, name)
            if isinstance(value, tuple) and len(value) != s.dim:
                raise SettingError(f"{name} has {len(value)} per-coordinate values but dim={s.dim}; "
                                   f"give one value per coordinate, or a single number")
        for sigma in s.distinct("sigma"):
            if not (sigma > 0 and math.isfinite(sigma)):
                raise SettingError(f"sigma must be a finite number > 0, got sigma={sigma:g}")
        if not (all(math.isfinite(m) for m in s.distinct("mu")) and math.isfinite(s.k)):
            raise SettingError(f"mu and k must be finite, got mu={_text(s.mu)}, k={s.k:g}")

    # -- the function and its truth -------------------------------------------
    def f(self, k: float) -> Callable[[torch.Tensor], torch.Tensor]:
        h = type(self).h

        def f(x: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [...]
            return h(x, k).sum(-1)

        return f

    def _truths(self, s: GaussianSetting) -> list[tuple[float, float, float]]:
        """(E h, dE/dmu, dE/dsigma) per coordinate; computed once where mu and sigma are shared."""
        if not isinstance(s.mu, tuple) and not isinstance(s.sigma, tuple):
            return [type(self).truth(s.mu, s.sigma, s.k)] * s.dim
        return [type(self).truth(m, sd, s.k) for m, sd in zip(s.coords("mu"), s.coords("sigma"), strict=True)]

    def expectation(self, s: GaussianSetting) -> float:
        return sum(t[0] for t in self._truths(s))

    def true_gradient(self, s: GaussianSetting, ctx: Context) -> dict[str, torch.Tensor]:
        """{mu: [dim], sigma: [dim]} in float64. A closed form that overflows raises OverflowError
        (the runner then fails that cell alone)."""
        if not isinstance(s.mu, tuple) and not isinstance(s.sigma, tuple):
            _, g_mu, g_sigma = type(self).truth(s.mu, s.sigma, s.k)
            return {"mu": torch.full((s.dim,), g_mu, dtype=torch.float64),
                    "sigma": torch.full((s.dim,), g_sigma, dtype=torch.float64)}
        truths = self._truths(s)
        return {"mu": torch.tensor([t[1] for t in truths], dtype=torch.float64),
                "sigma": torch.tensor([t[2] for t in truths], dtype=torch.float64)}

    def columns(self, s: GaussianSetting) -> dict[str, Any]:
        return {"mu": _text(s.mu), "sigma": _text(s.sigma), "k": s.k, "dim": s.dim}

    def distribution(self, s: GaussianSetting, replicates: int, ctx: Context):
        """Independent N(mu, sigma^2) per replicate: normal_leaves of the setting."""
        return normal_leaves(s.mu, s.sigma, s.dim, replicates, ctx)

    # -- replicates ---------------------------------------------------------
    def chunk_size(self, s: GaussianSetting, n_samples: int) -> int:
        # keep one [n, r, dim] tensor around 2^20 elements (8 MiB in float64): the best measured
        # (docs/performance.md, how replicates are vectorized)
        return max(1, (1 << 20) // (n_samples * s.dim))

    def replicate_bytes(self, s: GaussianSetting, n_samples: int, ctx: Context) -> int:
        # the samples, f's intermediates and their gradients: about 8 [n, dim] tensors, and the
        # parameter leaves with their gradients, 4 [dim] tensors
        itemsize = torch.empty((), dtype=ctx.dtype).element_size()
        return itemsize * s.dim * (8 * n_samples + 4)

    def chunk(
        self,
        estimator: Estimator,
        s: GaussianSetting,
        prepared: Any,
        n_samples: int,
        replicates: int,
        state: Any,
        ctx: Context,
    ) -> Chunk:
        return normal_chunk(estimator, *self.distribution(s, replicates, ctx), counted(self.f(s.k), replicates),
                            n_samples, replicates, state)


@builtin
class GaussianQuadratic(GaussianProblem):
    name = "gaussian-quadratic"
    description = "x ~ N(mu, sigma^2 I), f(x) = sum (x - k)^2; closed-form truth"
    formula = "(x - k)^2"
    report_base: ClassVar[dict[str, Any]] = {"mu": 0.0}  # at mu = k measure-valued's mu-gradient is exact
    h = staticmethod(_h_quadratic)
    truth = staticmethod(_truth_quadratic)


@builtin
class GaussianCos(GaussianProblem):
    name = "gaussian-cos"
    description = "x ~ N(mu, sigma^2 I), f(x) = sum cos(k x); closed-form truth"
    formula = "cos(k x)"
    h = staticmethod(_h_cos)
    truth = staticmethod(_truth_cos)


@builtin
class GaussianExp(GaussianProblem):
    name = "gaussian-exp"
    description = "x ~ N(mu, sigma^2 I), f(x) = sum exp(-k x^2); closed-form truth (needs 1 + 2 k sigma^2 > 0)"
    formula = "exp(-k x^2)"
    h = staticmethod(_h_exp)
    truth = staticmethod(_truth_exp)

    def validate(self, s: GaussianSetting) -> None:
        super().validate(s)
        for sigma in s.distinct("sigma"):
            if 1 + 2 * s.k * sigma**2 <= 0:
                raise SettingError(
                    f"gaussian-exp needs 1 + 2 k sigma^2 > 0 (else E[f] is infinite), "
                    f"got k={s.k:g}, sigma={sigma:g}"
                )
