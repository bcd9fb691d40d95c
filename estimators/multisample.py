"""Estimators of the K-sample importance-weighted bound (objective "multi-sample", a
:class:`estimators.base.Bound`):

    L_K(theta) = E log (1/K) sum_k w_k,   w_k = exp(l(x_k)),   x_1, ..., x_K ~ p_theta iid.

Notation: l_k the log-weights, L = log (1/K) sum_k w_k, w~_k = w_k / sum_j w_j the normalized
weights. The gradient has two parts: the score part, E[L sum_k grad log p_theta(x_k)], and, where
l depends on theta directly (l = log p - log q), the direct part E[grad_theta L at fixed x]. Every
estimator here adds the direct part by differentiating L at its draws, and differs in the score
part (or, pathwise, in how x is differentiated):

- ``vimco`` (Mnih & Rezende 2016, "Variational inference for Monte Carlo objectives", eq. 9-10):
  the score part sum_k (L - L_-k) grad log p(x_k), where L_-k replaces l_k by the mean of the other
  log-weights (the log of their geometric mean); L_-k does not depend on x_k, so it is unbiased.
  K >= 2. One evaluation of l per draw.
- ``iwae`` (Burda et al. 2016): pathwise, x_k = rsample, grad L through the draws and l. Unbiased.
- ``dreg`` (Tucker, Lawson, Gu & Maddison 2019, "Doubly reparameterized gradient estimators for
  Monte Carlo objectives", eq. 5): for the parameters of p_theta (the encoder),
  sum_k w~_k^2 d l_k / d x_k * d x_k / d theta with log q's parameters held fixed in l; for
  parameters of log_p itself (a decoder), IWAE's sum_k w~_k grad log_p(x_k). Needs l = log p -
  log q. Unbiased. Two evaluations of l per draw (at the draws and at the draws held fixed).
- ``local-disarm`` (Dong, Mnih & Tucker 2020, "DisARM", sec. 5, multi-sample bounds; the
  google-research/disarm code's get_local_disarm_learning_signal): K antithetic pairs
  (b_k, b'_k); for pair k, DisARM's factor times the change of L when b_k alone is swapped for
  b'_k: g_k = 1/2 (L - L^(k)) (-1)^{b'_k} 1[b_k != b'_k] sigmoid(|theta|), L^(k) the bound with
  l(b_k) replaced by l(b'_k). Bernoulli. The direct part is added at b (the authors' encoder loss
  leaves it out, which biases the encoder's gradient where l contains -log q; the K = 1 term
  vanishes in expectation, for K > 1 it does not: tests/test_multisample.py shows the variant without
  it biased on the binary VAE's bound). Two evaluations of l per draw.
- ``reinforce`` on the multi-sample bound (estimators.builtin): the score part
  L sum_k grad log p(x_k), no baseline: the high-variance reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .base import (
    MULTI_SAMPLE,
    Bound,
    Estimator,
    EstimatorError,
    Surrogate,
    draw,
    gaussian_parameters,
    parameter_surrogate,
)
from .discrete import antithetic_pair, disarm_gradient, discrete_parts
from .registry import builtin
from .scores import score_term


def swapped_bounds(lw: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """[n, K, *B]: for each k, the bound log (1/K) sum_j exp(l_j) with l_k replaced by
    ``replacement``[:, k] (lw and replacement [n, K, *B], detached). K x K per batch element."""
    n, k = lw.shape[:2]
    mat = lw.unsqueeze(1).expand(n, k, *lw.shape[1:]).clone()  # [n, K (swapped), K, *B]
    torch.diagonal(mat, dim1=1, dim2=2).copy_(replacement.movedim(1, -1))
    return torch.logsumexp(mat, 2) - math.log(k)


@builtin
class VIMCO(Estimator):
    """VIMCO (Mnih & Rezende 2016): score function on the K draws, each with the leave-one-out
    baseline L_-k that replaces l_k by the mean of the other log-weights. Requires K >= 2."""

    name = "vimco"
    description = "VIMCO: multi-sample score function, baseline per draw from the geometric mean of the others"
    supports = ("bernoulli", "categorical", "normal")
    objectives = (MULTI_SAMPLE,)
    unbiased = True
    min_K = 2
    f_evals_per_draw = 1

    def bound_surrogate(self, dist: Distribution, bound: Bound, n_samples: int, state: Any = None) -> Surrogate:
        x = draw(dist, (n_samples, bound.K))  # [n, K, *B, *E], no gradient through x
        lw = bound.log_weight(dist, x)  # [n, K, *B]: the direct part through log q and log_p
        value = Bound.value(lw)  # [n, *B]
        d = lw.detach()
        others = (d.sum(1, keepdim=True) - d) / (bound.K - 1)
        signal = value.detach().unsqueeze(1) - swapped_bounds(d, others)
        loss = value + score_term(signal, dist, x)
        return Surrogate(loss=loss.mean(0), f=value.detach())


class _PathwiseBound(Estimator):
    """An estimator of the bound through reparameterized draws of a Gaussian."""

    supports = ("normal",)
    objectives = (MULTI_SAMPLE,)
    requires_rsample = True
    unbiased = True


@builtin
class IWAE(_PathwiseBound):
    """The importance-weighted autoencoder's gradient (Burda et al. 2016): x_k reparameterized,
    grad log (1/K) sum_k exp(l(x_k)) through the draws and l. Requires: rsample."""

    name = "iwae"
    description = "IWAE: pathwise gradient of the K-sample bound through reparameterized draws"
    f_evals_per_draw = 1

    def bound_surrogate(self, dist: Distribution, bound: Bound, n_samples: int, state: Any = None) -> Surrogate:
        value = Bound.value(bound.log_weight(dist, dist.rsample((n_samples, bound.K))))
        return Surrogate(loss=value.mean(0), f=value.detach())


def detached_normal(dist: Distribution, estimator: str) -> Distribution:
    """The same (Independent) Normal with its parameters detached: log q at fixed parameters."""
    loc, scale, event_ndims = gaussian_parameters(dist, estimator)
    q = Normal(loc.detach(), scale.detach(), validate_args=False)
    return Independent(q, event_ndims) if event_ndims else q


@builtin
class DReG(_PathwiseBound):
    """DReG (Tucker, Lawson, Gu & Maddison 2019): doubly-reparameterized, for the distribution's
    parameters sum_k w~_k^2 dl_k/dx_k dx_k/dtheta (log q's parameters fixed in l); for parameters of
    log_p, IWAE's sum_k w~_k grad log_p(x_k). Requires: rsample and l = log p - log q."""

    name = "dreg"
    description = "DReG: doubly-reparameterized gradient of the K-sample bound (squared normalized weights)"
    f_evals_per_draw = 2

    def bound_surrogate(self, dist: Distribution, bound: Bound, n_samples: int, state: Any = None) -> Surrogate:
        if not bound.minus_log_q:
            raise EstimatorError(f"estimator {self.name!r} needs a log-weight log p - log q (an importance weight); "
                                 f"this bound's log-weight has no log q term", capability=True)
        q = detached_normal(dist, self.name)
        x = dist.rsample((n_samples, bound.K))
        lw = bound.log_weight(dist, x, q)  # theta enters through x only (and log_p's own parameters)
        fixed = bound.log_weight(dist, x.detach(), q)  # the same values; only log_p's own parameters
        w = torch.softmax(lw.detach(), 1)
        value = Bound.value(lw.detach())
        loss = value + (w**2 * (lw - fixed)).sum(1) + (w * (fixed - fixed.detach())).sum(1)
        return Surrogate(loss=loss.mean(0), f=value)


@builtin
class LocalDisARM(Estimator):
    """Local DisARM (Dong, Mnih & Tucker 2020, multi-sample bounds): K antithetic pairs; pair k's
    gradient is DisARM's with the change of the bound when b_k alone is swapped for b'_k, plus the
    direct part at b. Requires: Bernoulli."""

    name = "local-disarm"
    description = "local DisARM: antithetic pair per draw, DisARM with the bound's change when that draw is swapped"
    supports = ("bernoulli",)
    objectives = (MULTI_SAMPLE,)
    unbiased = True
    f_evals_per_draw = 2

    def bound_surrogate(self, dist: Distribution, bound: Bound, n_samples: int, state: Any = None) -> Surrogate:
        _, logits, event_ndims = discrete_parts(dist, self.name, (Bernoulli,))
        theta = logits.detach()
        _, b1, b2 = antithetic_pair(theta, (n_samples, bound.K))  # [n, K, *B, *E]
        lw = bound.log_weight(dist, b1)  # [n, K, *B], the direct part through log q and log_p
        value = Bound.value(lw)
        swapped = swapped_bounds(lw.detach(), bound.log_weight(dist, b2).detach())  # [n, K, *B]
        per_event = (*swapped.shape, *([1] * event_ndims))  # over the event dims
        g = disarm_gradient(b1, b2, value.detach().unsqueeze(1).expand_as(swapped).reshape(per_event),
                            swapped.reshape(per_event), theta).sum(1)  # [n, *B, *E]: the score part
        loss = parameter_surrogate(value, [(logits, g.mean(0))], len(dist.batch_shape))
        return Surrogate(loss=loss, f=value.detach())


__all__ = ["DReG", "IWAE", "LocalDisARM", "VIMCO", "detached_normal", "swapped_bounds"]
