"""The built-in estimators.

Notation: x_i ~ p_theta, i = 1..n, f_i = f(x_i); each estimator returns a
surrogate whose gradient is the estimate g below (see estimators.base).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Distribution

from .base import (
    EXPECTATION,
    MULTI_SAMPLE,
    Bound,
    Estimator,
    Function,
    Surrogate,
    draw,
    evaluate,
    score_surrogate,
)
from .options import Option
from .registry import builtin
from .scores import score_delta, score_term


@builtin
class Reparameterization(Estimator):
    """Pathwise estimator: g = (1/n) sum_i grad_theta f(g_theta(eps_i)), eps_i ~ p(eps).

    For a Gaussian, x = mu + sigma * eps with eps ~ N(0, I).
    Requires: ``dist.has_rsample`` and f differentiable in x.
    Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Rezende et al. 2014.
    """

    name = "reparameterization"
    description = "pathwise gradient through rsample(): differentiates f(mu + sigma * eps)"
    requires_rsample = True
    unbiased = True
    f_evals_per_draw = 1

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        x = dist.rsample((n_samples,))  # [n, *B, *E]
        fx = evaluate(f, x, dist, n_samples)  # [n, *B]
        return Surrogate(loss=fx.mean(0), f=fx.detach())


@builtin
class Reinforce(Estimator):
    """Score-function estimator: g = (1/n) sum_i f_i grad_theta log p_theta(x_i).

    Requires: ``dist.log_prob`` differentiable in theta; f need not be differentiable.
    Williams 1992, "Simple statistical gradient-following algorithms".
    """

    name = "reinforce"
    description = "score function: f(x) * grad log p(x), needs only values of f"
    unbiased = True
    f_evals_per_draw = 1

    objectives = (EXPECTATION, MULTI_SAMPLE)

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        x = draw(dist, (n_samples,))  # [n, *B, *E], no gradient through x
        fx = evaluate(f, x, dist, n_samples)
        return Surrogate(loss=score_surrogate(fx, score_delta(dist, x)), f=fx.detach())

    def bound_surrogate(self, dist: Distribution, bound: Bound, n_samples: int, state: Any = None) -> Surrogate:
        """The multi-sample bound: L grad log p(x_1, ..., x_K) (the joint of the K draws), plus the
        direct part where the log-weight depends on theta."""
        x = draw(dist, (n_samples, bound.K))
        value = Bound.value(bound.log_weight(dist, x))  # [n, *B]
        signal = value.detach().unsqueeze(1).expand(x.shape[:2] + value.shape[1:])  # L for each of the K draws
        return Surrogate(loss=(value + score_term(signal, dist, x)).mean(0), f=value.detach())


@builtin
class ReinforceLOO(Estimator):
    """REINFORCE with a leave-one-out baseline:
    g = (1/n) sum_i (f_i - b_i) grad log p(x_i),  b_i = (1/(n-1)) sum_{j != i} f_j.

    b_i is independent of x_i, so g is unbiased.
    Requires: n >= 2.
    Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free!".
    """

    name = "reinforce-loo"
    description = "REINFORCE with a leave-one-out baseline (mean of f over the other samples)"
    min_samples = 2
    unbiased = True
    f_evals_per_draw = 1

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        x = draw(dist, (n_samples,))
        fx = evaluate(f, x, dist, n_samples)
        fd = fx.detach()
        baseline = (fd.sum(0, keepdim=True) - fd) / (n_samples - 1)  # [n, *B]
        return Surrogate(loss=score_surrogate(fx, score_delta(dist, x), baseline), f=fd)


@builtin
class ReinforceEMA(Estimator):
    """REINFORCE with an exponential-moving-average baseline:
    g = (1/n) sum_i (f_i - b) grad log p(x_i),  b = state from earlier calls.

    State: a scalar tensor, the running average of the mean of f over earlier
    calls, ``b <- decay * b + (1 - decay) * mean(f)``, updated *after* the
    estimate is formed. ``None`` (the initial state) means b = 0. Because b
    only depends on samples of earlier calls, g is unbiased; the runner warms
    the state up with a few calls before it measures.
    Requires: the caller threads ``state`` from one call to the next.
    Williams 1992; Mnih & Gregor 2014 ("NVIL") use such a running baseline.
    """

    name = "reinforce-ema"
    description = "REINFORCE with a running-average baseline of f carried across calls"
    stateful = True
    unbiased = True
    f_evals_per_draw = 1
    options = (Option("decay", float, (0.9,), "weight of the old baseline in b <- decay b + (1 - decay) mean f",
                      check=lambda d: None if 0.0 <= d < 1.0 else "must be in [0, 1)"),)
    decay: float

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        x = draw(dist, (n_samples,))
        fx = evaluate(f, x, dist, n_samples)
        fd = fx.detach()
        baseline = torch.zeros((), dtype=fd.dtype, device=fd.device) if state is None else state
        loss = score_surrogate(fx, score_delta(dist, x), baseline)
        batch_mean = fd.mean()
        new_state = batch_mean if state is None else self.decay * state + (1 - self.decay) * batch_mean
        return Surrogate(loss=loss, f=fd, state=new_state)

