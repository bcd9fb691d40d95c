"""Leave-one-out score-function estimators for Bernoulli variables, 2021-2022: ARMS and the
double control variate. Notation: logits theta, p = sigmoid(theta), n draws b_1..b_n per estimate,
f_i = f(b_i), the score in the logits b - p, fbar the mean of the f_i.

- ``arms``: Dimitriev & Zhou 2021 ("ARMS: antithetic-REINFORCE-multi-sample gradient for binary
  variables", ICML). The n draws are mutually antithetic: in each coordinate, u_1..u_n come from a
  copula (marginally uniform, negatively dependent), b_i = 1[u_i < p]. RLOO's baseline is then no
  longer independent of the draw it is subtracted from; with rho the correlation of two of the
  coordinate's b's, E[f_j (b_i - p)] = rho E[f_i (b_i - p)] (b_i's regression on b_j is linear), so

      g = 1 / ((n - 1)(1 - rho)) sum_i (f_i - fbar)(b_i - p),   1 - rho = (p - P(b_i = b_j = 1)) / (p (1 - p))

  is unbiased. ``copula``: ``dirichlet`` (the paper's: d ~ Dirichlet(1, ..., 1), u = (1 - d)^(n-1),
  oriented per coordinate as the authors' code (thjashin/rodeo, alekdimi/arms) orients it:
  b_i = 1[u_i < p] where p < 1/2, else 1 - 1[u_i < 1 - p]; P(b_i = b_j = 1) in closed form,
  min(p, 1 - p) - P(...) = x - (2 x^(1/(n-1)) - 1)_+^(n-1) at x = min(p, 1 - p)), ``gaussian``
  (z = sqrt(n/(n-1)) (eps - mean eps), equicorrelation -1/(n-1), b_i = 1[z_i < Phi^-1(p)];
  p - P(...) = p (1 - p) + (1/2pi) int_{-1/(n-1)}^0 exp(-h^2/(1+s)) / sqrt(1 - s^2) ds, h = Phi^-1(p),
  by 32-point Gauss-Legendre, exact at n = 2) or ``independent`` (rho = 0: reinforce-loo's
  estimate). At n = 2 both copulas give ARM's antithetic pair and the estimate is DisARM's.
  n evaluations of f per estimate.
- ``double-cv``: Titsias & Shi 2022 ("Double control variates for gradient estimation in discrete
  latent variable models", AISTATS), the estimator of the authors' code (thjashin/rodeo, grad_type
  double_cv): RLOO whose baseline for b_i adds a control variate built from g_j = grad f(b_j) (f
  differentiated at the binary draws), gbar_-i the mean of the g_j over j != i,

      baseline_i = mean_{j != i} f_j + alpha [gbar_-i . (b_i - p) - mean_{j != i} gbar_-j . (b_j - p)],

  with the expectation of the part that depends on b_i added back:
  g = (1/n) sum_i (f_i - baseline_i)(b_i - p) + alpha mean_i(g_i) p (1 - p). Unbiased for any alpha
  that does not depend on this call's draws. The authors learn alpha by minimizing the estimate's
  variance; here each call's alpha is a running average (option ``decay``) of the variance-minimizing
  alpha of the earlier calls' estimates (closed form: the estimate is linear in alpha), starting at 0
  (the authors' initial value, where the estimate is reinforce-loo's). One evaluation of f and of its
  gradient per draw.

Requires: a Bernoulli distribution (optionally Independent over its last dimension), n >= 2;
double-cv an f differentiable in its input at the binary draws.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import Bernoulli, Distribution

from .base import Estimator, EstimatorError, Function, Surrogate, draw, evaluate, made_once, parameter_surrogate
from .discrete import _per_draw, discrete_parts
from .options import Option
from .registry import builtin
from .uniforms import standard_exponential

COPULAS = ("dirichlet", "gaussian", "independent")
#: Gauss-Legendre nodes of the Gaussian copula's bivariate normal integral
LEGENDRE_NODES = 32


@made_once(maxsize=4)
def legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(nodes, weights) of n-point Gauss-Legendre on [0, 1], float64 (Golub-Welsch)."""
    k = torch.arange(1, n, dtype=torch.float64)
    beta = k / torch.sqrt(4 * k * k - 1)
    nodes, vectors = torch.linalg.eigh(torch.diag(beta, 1) + torch.diag(beta, -1))
    return (nodes + 1) / 2, vectors[0] ** 2  # weights 2 v0^2 on [-1, 1], halved on [0, 1]


def copula_uniforms(copula: str, shape: tuple[int, ...], dtype: torch.dtype, device: Any) -> torch.Tensor:
    """n mutually antithetic draws per coordinate (the copula of ``copula``), [n, *rest]: u of the
    Dirichlet copula, z of the Gaussian one, iid uniforms for ``independent``."""
    n = shape[0]
    if copula == "dirichlet":
        e = standard_exponential(shape, dtype, device)
        u = 1 - e / e.sum(0, keepdim=True)
        return u if n == 2 else u ** (n - 1)
    if copula == "gaussian":
        eps = torch.randn(shape, dtype=dtype, device=device)
        return math.sqrt(n / (n - 1)) * (eps - eps.mean(0, keepdim=True))
    return torch.rand(shape, dtype=dtype, device=device)


def one_minus_rho(copula: str, theta: torch.Tensor, n: int) -> torch.Tensor:
    """1 - rho, rho the correlation of two of a coordinate's n draws, from logits ``theta`` (float64 inside)."""
    t = theta.detach().to(torch.float64)
    if n == 2 and copula != "independent":  # the antithetic pair of both copulas: min(p, q) / (p q) = 1 / max(p, q)
        return t.abs().neg_().exp_().add_(1).to(theta.dtype)
    p, q = torch.sigmoid(t), torch.sigmoid(-t)
    pq = (p * q).clamp(min=torch.finfo(torch.float64).tiny)
    if copula == "independent":
        return torch.ones_like(theta)
    if copula == "dirichlet" or n == 2:  # at n = 2 both are the antithetic pair: p - P(1, 1) = min(p, q)
        x = torch.minimum(p, q)
        apart = x - (2 * x ** (1 / (n - 1)) - 1).clamp(min=0) ** (n - 1)  # P(b_i = 1, b_j = 0)
    else:
        h = torch.special.ndtri(p)
        nodes, weights = legendre(LEGENDRE_NODES)
        r = -1 / (n - 1)
        s = (r * nodes).to(device=t.device).reshape(-1, *([1] * t.dim()))
        integrand = torch.exp(-h * h / (1 + s)) / torch.sqrt(1 - s * s)
        apart = pq + (-r) * (weights.to(t.device).reshape_as(s) * integrand).sum(0) / (2 * math.pi)
    return (apart / pq).to(theta.dtype)


def _bernoulli(dist: Distribution, name: str) -> tuple[torch.Tensor, int]:
    _, logits, event_ndims = discrete_parts(dist, name, (Bernoulli,))
    return logits, event_ndims


@builtin
class ARMS(Estimator):
    """ARMS (Dimitriev & Zhou 2021): n mutually antithetic Bernoulli draws through a copula and the
    leave-one-out estimate with its debiasing factor 1 / (1 - rho). Unbiased. Requires: Bernoulli, n >= 2."""

    name = "arms"
    description = "ARMS: n antithetic draws (Dirichlet or Gaussian copula), leave-one-out with a debiasing factor"
    supports = ("bernoulli",)
    min_samples = 2
    unbiased = True
    f_evals_per_draw = 1
    exact_when = "at n = 2 on one Bernoulli at p = 1/2 (theta = 0), where its two draws are DisARM's pair (b, 1 - b)"
    report_axes = ("theta", "power")
    options = (Option("copula", str, ("dirichlet",), "how the n draws of a coordinate are made antithetic",
                      choices=COPULAS),)
    copula: str

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        logits, event_ndims = _bernoulli(dist, self.name)
        theta = logits.detach()
        p = torch.sigmoid(theta)
        u = copula_uniforms(self.copula, (n_samples, *theta.shape), theta.dtype, theta.device)
        if self.copula == "gaussian":
            b = (u < torch.special.ndtri(p.to(torch.float64)).to(theta.dtype)).to(theta.dtype)
        elif self.copula == "dirichlet":  # oriented per coordinate, as the authors' code
            low = p < 0.5
            b = torch.where(low, u < p, ~(u < 1 - p)).to(theta.dtype)
        else:
            b = (u < p).to(theta.dtype)
        fx = evaluate(f, b, dist, n_samples)
        fd = _per_draw(fx.detach(), event_ndims)
        g = ((fd - fd.mean(0)) * (b - p)).sum(0) / ((n_samples - 1) * one_minus_rho(self.copula, theta, n_samples))
        loss = parameter_surrogate(fx, [(logits, g)], len(dist.batch_shape))
        return Surrogate(loss=loss, f=fx.detach())


@builtin
class DoubleCV(Estimator):
    """The double control variate (Titsias & Shi 2022): RLOO plus a control variate from grad f at the
    other draws, its expectation added back, its weight alpha learned across calls. Unbiased.
    Requires: Bernoulli, n >= 2, f differentiable in its input; the caller threads ``state`` (alpha)."""

    name = "double-cv"
    description = "double control variate: RLOO plus a control variate from grad f at the other draws (alpha learned)"
    supports = ("bernoulli",)
    min_samples = 2
    stateful = True
    unbiased = True
    f_evals_per_draw = 1
    report_axes = ("theta", "power")
    options = (Option("decay", float, (0.9,), "weight of the old alpha in alpha <- decay alpha + (1 - decay) "
                      "alpha*, alpha* the variance-minimizing weight of the last call",
                      check=lambda d: None if 0.0 <= d < 1.0 else "must be in [0, 1)"),)
    decay: float

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        logits, event_ndims = _bernoulli(dist, self.name)
        p = torch.sigmoid(logits.detach())
        b = draw(dist, (n_samples,))
        x = b.clone().requires_grad_(True)
        fx = evaluate(f, x, dist, n_samples)
        grad = torch.autograd.grad(fx.sum(), x, retain_graph=True, allow_unused=True)[0] if fx.requires_grad else None
        if grad is None:
            raise EstimatorError("estimator 'double-cv' needs an f differentiable in its input (its gradient at the "
                                 "draws builds the control variate); this f does not depend on it differentiably",
                                 capability=True)
        grad = grad.detach()
        s = b - p  # the score in the logits, [n, *B, *E]

        def loo(t: torch.Tensor) -> torch.Tensor:
            return (t.sum(0, keepdim=True) - t) / (n_samples - 1)

        def dot(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # over the event dims: [n, *B]
            prod = a * c
            return prod.reshape(*prod.shape[: prod.dim() - event_ndims], -1).sum(-1) if event_ndims else prod

        fd = fx.detach()
        c = dot(loo(grad), s)  # gbar_-i . (b_i - p)
        rloo = (_per_draw(fd - loo(fd), event_ndims) * s).mean(0)
        cv = -(_per_draw(c - loo(c), event_ndims) * s).mean(0) + grad.mean(0) * p * (1 - p)  # mean zero
        alpha = torch.zeros((), dtype=p.dtype, device=p.device) if state is None else state
        g = rloo + alpha * cv
        # the alpha that minimizes this call's sum of squared estimates, for the next calls (this one's alpha
        # came from earlier calls only, so the estimate stays unbiased)
        denominator = cv.square().sum()
        best = torch.where(denominator > 0, -(rloo * cv).sum() / denominator.clamp(min=torch.finfo(p.dtype).tiny), 0.0)
        new_state = best if state is None else self.decay * state + (1 - self.decay) * best
        loss = parameter_surrogate(fx, [(logits, g)], len(dist.batch_shape))
        return Surrogate(loss=loss, f=fd, state=new_state.detach())


__all__ = ["ARMS", "COPULAS", "DoubleCV", "copula_uniforms", "one_minus_rho"]
