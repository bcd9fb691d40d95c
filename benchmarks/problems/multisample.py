"""Toy problems of the K-sample importance-weighted bound (objective "multi-sample",
estimators.Bound), with exact truth:

    L_K(theta) = E log (1/K) sum_k exp(l(x_k)),   x_1, ..., x_K ~ p_theta iid.

bernoulli-multisample  b_k ~ Bernoulli(sigmoid(theta)) iid in dim coordinates, l(b) = sum_j (b_j - t)^2
                       (the log-weight does not depend on theta but through b). Truth: the 2^(dim K)
                       joint outcomes enumerated in float64 and the exact L_K differentiated; at
                       most 2^20 outcomes (dim x K <= 20).
gaussian-iwae          x_k ~ q = N(mu, sigma^2 I), l(x) = log p(x) - log q(x) with the unnormalized
                       target log p(x) = -sum_j (x_j - a)^2 / 2 (axis a moves it away from q): theta
                       enters l through the draw and through log q, as in a VAE, where DReG differs
                       from the plain pathwise gradient. Truth: K = 1 in closed form (any dim),
                       dE/dmu = a - mu, dE/dsigma = 1/sigma - sigma per coordinate; dim x K <= 4
                       by Gauss-Hermite quadrature over the dim x K standard normals
                       (QUADRATURE_NODES per variable, float64, through x = mu + sigma eps). Other
                       settings have no exact truth: there the truth is a high-precision Monte Carlo
                       reference with its standard error (true_gradient_se): REFERENCE_DRAWS
                       standard normals (at least REFERENCE_MIN_REPLICATES replicates), seed
                       REFERENCE_SEED, float64, each replicate's gradient of log mean_k w by
                       autograd through x = mu + sigma eps (the reparameterized gradient, unbiased).
                       Its standard error enters every bias z against it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.distributions import Bernoulli, Independent, Normal

from estimators import MULTI_SAMPLE, Bound, Estimator
from estimators.options import Option, at_least, finite, positive

from ..stats import Moments
from .base import Chunk, Context, Problem, SettingError, builtin
from .counting import counted
from .discrete import DiscreteProblem, coordinate_vector, outcomes
from .gaussian import normal_chunk, normal_leaves

#: the most joint outcomes bernoulli-multisample enumerates for its truth
MAX_JOINT_OUTCOMES = 1 << 20
#: Gauss-Hermite nodes per variable of gaussian-iwae's quadrature (dim x K <= QUADRATURE_MAX_VARIABLES)
QUADRATURE_NODES = 24
QUADRATURE_MAX_VARIABLES = 4  # dim x K: 24^4 = 331,776 points
#: standard normal draws (dim x K x replicates) of gaussian-iwae's Monte Carlo reference, its fewest replicates,
#: and its seed
REFERENCE_DRAWS = 1 << 24
REFERENCE_MIN_REPLICATES = 1 << 14
REFERENCE_SEED = 2016
#: standard normals per block of the reference (512 KB of float64, in a core's cache): one process, K = 16,
#: alternated three times, 1.48-1.53 s against 1.85-2.10 s in blocks of 2^20 (the same draws, in the same order)
REFERENCE_BLOCK = 1 << 16

K_AXIS = Option("K", int, (4,), "samples in the importance-weighted bound, 1 to 4096", check=at_least(1, 4096),
                report=(1, 2, 4, 8, 16, 64), report_quick=(2, 16))


def quadratic_log_weight(t: float):
    """bernoulli-multisample's log-weight l(b) = sum_j (b_j - t)^2: [..., dim] -> [...]."""
    return lambda b: ((b - t) ** 2).sum(-1)


@dataclass(frozen=True)
class MultiSampleSetting:
    theta: float | tuple[float, ...]
    t: float
    dim: int
    K: int


@builtin
class BernoulliMultiSample(DiscreteProblem):
    name = "bernoulli-multisample"
    description = ("b_1..b_K ~ Bernoulli(sigmoid(theta)), bound E log mean_k exp(sum (b_k - t)^2); "
                   "truth by enumerating the 2^(dim K) joint outcomes")
    objective = MULTI_SAMPLE
    reference = "reinforce"  # the plain score function on the joint of the K draws runs at every K
    axes = (
        Option("theta", float, (0.5,), "logit of every coordinate (a sweep file may give one per coordinate)",
               check=finite, per_coordinate=True, report=(-2.0, 0.5, 2.0), report_quick=(0.5,)),
        Option("t", float, (0.45,), "target of the log-weight l(b) = sum (b - t)^2", check=finite),
        Option("dim", int, (2,), "dimension, >= 1 (dim x K <= 20: the truth enumerates 2^(dim K) outcomes)",
               check=at_least(1)),
        Option("K", int, (4,), "samples in the importance-weighted bound (dim x K <= 20)", check=at_least(1, 20),
               report=(1, 2, 4, 8, 10), report_quick=(2, 8)),
    )
    setting_type = MultiSampleSetting

    def validate(self, s: MultiSampleSetting) -> None:
        super().validate(s)
        if 2 ** (s.dim * s.K) > MAX_JOINT_OUTCOMES:
            raise SettingError(f"{self.name}: dim={s.dim} and K={s.K} have 2^{s.dim * s.K} joint outcomes; its exact "
                               f"truth enumerates at most 2^20 (dim x K <= 20)")

    def f(self, s: MultiSampleSetting, ctx: Context):
        return quadratic_log_weight(s.t)

    def target(self, s: MultiSampleSetting, ctx: Context, replicates: int) -> Bound:
        return Bound(counted(self.f(s, ctx), replicates), s.K, minus_log_q=False)

    def exact(self, s: MultiSampleSetting) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_K, dL_K/dtheta [dim]) by enumerating the 2^(dim K) joint outcomes in float64 (once per setting)."""
        return _bernoulli_bound(s)

    def true_gradient(self, s: MultiSampleSetting, ctx: Context) -> dict[str, torch.Tensor]:
        return {"theta": self.exact(s)[1]}


@functools.lru_cache(maxsize=16)
def _bernoulli_bound(s: MultiSampleSetting) -> tuple[torch.Tensor, torch.Tensor]:
    theta = coordinate_vector(s.theta, s.dim, Context(dtype=torch.float64)).requires_grad_(True)
    b = outcomes(s.dim * s.K).reshape(-1, s.K, s.dim)  # [M, K, dim]
    log_p = Independent(Bernoulli(logits=theta), 1).log_prob(b).sum(-1)  # [M]
    value = (log_p.exp() * Bound.value(quadratic_log_weight(s.t)(b))).sum()  # l [M, K] -> bound [M]
    (grad,) = torch.autograd.grad(value, theta)
    return value.detach(), grad


@dataclass(frozen=True)
class IWAESetting:
    mu: float
    sigma: float
    a: float
    dim: int
    K: int


@builtin
class GaussianIWAE(Problem):
    name = "gaussian-iwae"
    description = ("x_1..x_K ~ N(mu, sigma^2 I), bound E log mean_k p(x_k)/q(x_k), log p(x) = -|x - a|^2/2; "
                   "exact truth at K = 1 and (quadrature) at dim x K <= 4, else a Monte Carlo reference with its "
                   "standard error")
    kind = "toy"
    family = "normal"
    objective = MULTI_SAMPLE
    groups = ("mu", "sigma")
    reference = "iwae"
    axes = (
        Option("mu", float, (0.0,), "mean of q in every coordinate", check=finite),
        Option("sigma", float, (1.0,), "standard deviation of q in every coordinate, > 0", check=positive),
        Option("a", float, (1.0,), "mean of the unnormalized Gaussian target, log p(x) = -|x - a|^2 / 2",
               check=finite, report=(0.0, 1.0, 3.0), report_quick=(1.0,)),
        Option("dim", int, (1,), "dimension, >= 1", check=at_least(1)),
        K_AXIS,
    )
    setting_type = IWAESetting

    def columns(self, s: IWAESetting) -> dict[str, Any]:
        return dict(vars(s))

    def chunk_size(self, s: IWAESetting, n_samples: int) -> int:
        return max(1, (1 << 20) // (n_samples * s.dim * s.K * max(1, s.K // 4)))

    def replicate_bytes(self, s: IWAESetting, n_samples: int, ctx: Context) -> int:
        itemsize = torch.empty((), dtype=ctx.dtype).element_size()
        return itemsize * (s.dim * s.K * (12 * n_samples + 4) + s.K * s.K * n_samples)

    def log_p(self, s: IWAESetting):
        a = s.a

        def log_p(x: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [...]
            return -0.5 * ((x - a) ** 2).sum(-1)

        return log_p

    def chunk(self, estimator: Estimator, s: IWAESetting, prepared: Any, n_samples: int, replicates: int,
              state: Any, ctx: Context) -> Chunk:
        return normal_chunk(estimator, *normal_leaves(s.mu, s.sigma, s.dim, replicates, ctx),
                            Bound(counted(self.log_p(s), replicates), s.K), n_samples, replicates, state)

    def exact(self, s: IWAESetting) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(L_K, dL/dmu [dim], dL/dsigma [dim]) in float64 where exact (K = 1 in closed form; dim x K <= 4
        by quadrature), else None."""
        if s.K == 1:
            mu, sigma = torch.full((s.dim,), s.mu, dtype=torch.float64), torch.full((s.dim,), s.sigma, dtype=torch.float64)
            value = (-0.5 * ((mu - s.a) ** 2 + sigma**2) + torch.log(sigma) + 0.5 * math.log(2 * math.pi) + 0.5).sum()
            return value, s.a - mu, 1 / sigma - sigma
        if s.dim * s.K > QUADRATURE_MAX_VARIABLES:
            return None
        return _iwae_quadrature(s)

    def true_gradient(self, s: IWAESetting, ctx: Context) -> dict[str, torch.Tensor]:
        exact = self.exact(s)
        if exact is None:
            return dict(zip(self.groups, _iwae_reference(s)[0], strict=True))
        return {"mu": exact[1], "sigma": exact[2]}

    def true_gradient_se(self, s: IWAESetting, ctx: Context) -> dict[str, torch.Tensor] | None:
        return None if self.exact(s) is not None else dict(zip(self.groups, _iwae_reference(s)[1], strict=True))


@functools.lru_cache(maxsize=16)
def _iwae_reference(s: IWAESetting) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """((dL/dmu, dL/dsigma), (their standard errors)), each [dim], float64: the mean over replicates of the
    reparameterized gradient of log mean_k w(x_k), x = mu + sigma eps, by autograd (module docstring)."""
    gen = torch.Generator().manual_seed(REFERENCE_SEED)
    draws = s.dim * s.K
    total = max(REFERENCE_MIN_REPLICATES, REFERENCE_DRAWS // draws)
    stats = (Moments(), Moments())
    block = max(1, REFERENCE_BLOCK // draws)
    for start in range(0, total, block):
        r = min(block, total - start)
        mu = torch.full((r, 1, s.dim), s.mu, dtype=torch.float64, requires_grad=True)
        sigma = torch.full((r, 1, s.dim), s.sigma, dtype=torch.float64, requires_grad=True)
        x = mu + sigma * torch.randn(r, s.K, s.dim, generator=gen, dtype=torch.float64)
        lw = (-0.5 * (x - s.a) ** 2 - Normal(mu, sigma).log_prob(x)).sum(-1)  # [r, K]
        grads = torch.autograd.grad(Bound.value(lw).sum(), (mu, sigma))
        for st, g in zip(stats, grads, strict=True):
            st.update(g[:, 0])
    return tuple(st.mean for st in stats), tuple((st.var / st.n).sqrt() for st in stats)


@functools.lru_cache(maxsize=16)
def _iwae_quadrature(s: IWAESetting) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gaussian-iwae's bound and gradient by Gauss-Hermite quadrature over the dim x K standard normals
    eps (x = mu + sigma eps), QUADRATURE_NODES per variable, float64."""
    n = s.dim * s.K
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)  # for exp(-eps^2 / 2)
    nodes, weights = torch.tensor(nodes), torch.tensor(weights / math.sqrt(2 * math.pi))
    grid = torch.cartesian_prod(*[nodes] * n).reshape(-1, s.K, s.dim)  # [M, K, dim]
    w = torch.cartesian_prod(*[weights] * n).reshape(-1, n).prod(-1)  # [M]
    mu = torch.full((s.dim,), s.mu, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((s.dim,), s.sigma, dtype=torch.float64, requires_grad=True)
    x = mu + sigma * grid
    lw = (-0.5 * (x - s.a) ** 2 - Normal(mu, sigma).log_prob(x)).sum(-1)  # [M, K]
    value = (w * Bound.value(lw)).sum()
    g_mu, g_sigma = torch.autograd.grad(value, (mu, sigma))
    return value.detach(), g_mu, g_sigma


__all__ = ["BernoulliMultiSample", "GaussianIWAE", "IWAESetting", "MultiSampleSetting"]
