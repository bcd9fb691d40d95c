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
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch.distributions import Independent, Normal

from estimators import Estimator

from .base import Chunk, Context, Problem, product


@dataclass(frozen=True)
class GaussianSetting:
    mu: float
    sigma: float
    k: float
    dim: int


class SettingError(ValueError):
    """An impossible setting value; the message names it and the valid range."""


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

    # -- settings -----------------------------------------------------------
    def settings(self, sweep: Any) -> list[GaussianSetting]:
        out = []
        for c in product(mu=sweep.mu, sigma=sweep.sigma, k=sweep.k, dim=sweep.dim):
            s = GaussianSetting(mu=float(c["mu"]), sigma=float(c["sigma"]), k=float(c["k"]), dim=int(c["dim"]))
            self.validate(s)
            out.append(s)
        return out

    def validate(self, s: GaussianSetting) -> None:
        if not (s.sigma > 0 and math.isfinite(s.sigma)):
            raise SettingError(f"sigma must be a finite number > 0, got sigma={s.sigma:g}")
        if s.dim < 1:
            raise SettingError(f"dim must be an integer >= 1, got dim={s.dim}")
        if not (math.isfinite(s.mu) and math.isfinite(s.k)):
            raise SettingError(f"mu and k must be finite, got mu={s.mu:g}, k={s.k:g}")

    # -- the function and its truth -------------------------------------------
    def f(self, k: float) -> Callable[[torch.Tensor], torch.Tensor]:
        h = type(self).h

        def f(x: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [...]
            return h(x, k).sum(-1)

        return f

    def expectation(self, s: GaussianSetting) -> float:
        return s.dim * type(self).truth(s.mu, s.sigma, s.k)[0]

    def true_gradient(self, s: GaussianSetting, ctx: Context) -> dict[str, torch.Tensor]:
        _, d_mu, d_sigma = type(self).truth(s.mu, s.sigma, s.k)
        full = lambda v: torch.full((s.dim,), v, dtype=torch.float64)  # noqa: E731
        return {"mu": full(d_mu), "sigma": full(d_sigma)}

    def distribution(self, s: GaussianSetting, replicates: int, ctx: Context):
        """Independent N(mu, sigma^2) per replicate; returns (dist, mu, sigma) with
        mu, sigma [R, dim] leaves so that autograd yields one gradient per replicate."""
        mu = torch.full((replicates, s.dim), s.mu, dtype=ctx.dtype, device=ctx.device, requires_grad=True)
        sigma = torch.full((replicates, s.dim), s.sigma, dtype=ctx.dtype, device=ctx.device, requires_grad=True)
        return Independent(Normal(mu, sigma), 1), mu, sigma

    # -- replicates ---------------------------------------------------------
    def chunk_size(self, s: GaussianSetting, n_samples: int) -> int:
        # keep one [n, r, dim] tensor around 2^22 elements (32 MiB in float64)
        return max(1, (1 << 22) // (n_samples * s.dim))

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
        dist, mu, sigma = self.distribution(s, replicates, ctx)
        sur = estimator(dist, self.f(s.k), n_samples, state)
        if tuple(sur.loss.shape) != (replicates,):
            raise ValueError(
                f"estimator {estimator.name!r} returned a surrogate of shape {tuple(sur.loss.shape)}, "
                f"expected one value per replicate, ({replicates},)"
            )
        g_mu, g_sigma = torch.autograd.grad(sur.loss.sum(), (mu, sigma), allow_unused=True)
        zeros = lambda g: torch.zeros_like(mu) if g is None else g  # noqa: E731
        return Chunk(grads={"mu": zeros(g_mu), "sigma": zeros(g_sigma)}, state=sur.state)


class GaussianQuadratic(GaussianProblem):
    name = "gaussian-quadratic"
    description = "x ~ N(mu, sigma^2 I), f(x) = sum (x - k)^2; closed-form truth"
    formula = "(x - k)^2"
    h = staticmethod(_h_quadratic)
    truth = staticmethod(_truth_quadratic)


class GaussianCos(GaussianProblem):
    name = "gaussian-cos"
    description = "x ~ N(mu, sigma^2 I), f(x) = sum cos(k x); closed-form truth"
    formula = "cos(k x)"
    h = staticmethod(_h_cos)
    truth = staticmethod(_truth_cos)


class GaussianExp(GaussianProblem):
    name = "gaussian-exp"
    description = "x ~ N(mu, sigma^2 I), f(x) = sum exp(-k x^2); closed-form truth (needs 1 + 2 k sigma^2 > 0)"
    formula = "exp(-k x^2)"
    h = staticmethod(_h_exp)
    truth = staticmethod(_truth_exp)

    def validate(self, s: GaussianSetting) -> None:
        super().validate(s)
        if 1 + 2 * s.k * s.sigma**2 <= 0:
            raise SettingError(
                f"gaussian-exp needs 1 + 2 k sigma^2 > 0 (else E[f] is infinite), "
                f"got k={s.k:g}, sigma={s.sigma:g}"
            )
