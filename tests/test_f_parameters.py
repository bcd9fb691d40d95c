"""What the parameters of f itself (a decoder's weights, in training) receive from an estimator's surrogate.

The convention (estimators.base.parameter_surrogate, docs/plugins.md): the gradient of the Monte Carlo average of f
at the points whose values make the surrogate's value, mean_i grad f(x_i). With f = phi * h, that is exactly
value / phi, per replicate. An estimator that detached f's value would leave a decoder untrained; one that
differentiated f at points other than those it averages would train it on another objective. Every registered
estimator but the adapters is held to it (a plugin too: ``pytest tests/test_f_parameters.py --estbench-plugin
FILE``). REBAR and RELAX add the zero-mean gradient of c(z) - c(z~) (estimators/relax.py, as the authors' code
does): for them the difference from value / phi is held to mean 0 instead.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal

import estimators

from .statutil import z_bound

#: estimators whose surrogate gives f's parameters the zero-mean extra term of their control variate
ZERO_MEAN_EXTRA = {"rebar", "relax"}
R, D, K = 4000, 3, 4
W = torch.tensor([0.5, -1.2, 2.0], dtype=torch.float64)


def held() -> list[tuple[str, str]]:
    """(estimator, family) for every registered estimator but the adapters (another library's method, whatever it
    does with f's parameters): the shipped ones, and plugins given with ``pytest --estbench-plugin FILE``."""
    cases = []
    for name in estimators.available():
        cls = estimators.get_class(name)
        if cls.__module__.startswith("estimators.adapters"):
            continue
        cases += [(name, family) for family in ("normal", "bernoulli", "categorical")
                  if cls.unsupported(family, "expectation") is None]
    return cases


def distribution(family: str) -> Independent:
    """[R] replicates of a D-dimensional distribution, in float64."""
    gen = torch.Generator().manual_seed(0)
    if family == "normal":
        return Independent(Normal(torch.randn(R, D, generator=gen, dtype=torch.float64).requires_grad_(),
                                  torch.full((R, D), 0.7, dtype=torch.float64)), 1)
    if family == "bernoulli":
        return Independent(Bernoulli(logits=torch.randn(R, D, generator=gen, dtype=torch.float64).requires_grad_()), 1)
    return Independent(Categorical(logits=torch.randn(R, D, K, generator=gen, dtype=torch.float64).requires_grad_()), 1)


def h(x: torch.Tensor) -> torch.Tensor:
    """A smooth function of a draw [n, R, D] (a relaxed categorical draw [n, R, D, K]: its expected class) -> [n, R]."""
    if x.dim() == 4:
        x = (x * torch.arange(K, dtype=x.dtype)).sum(-1)
    return torch.sin(x.to(torch.float64) @ W)


HELD = held()


@pytest.mark.parametrize("name,family", HELD, ids=[f"{n}-{f}" for n, f in HELD])
def test_f_s_own_parameters_get_the_gradient_of_the_average_of_f(name, family):
    torch.manual_seed(1)
    phi = torch.full((R,), 1.7, dtype=torch.float64, requires_grad=True)  # one f parameter per replicate

    def f(x: torch.Tensor) -> torch.Tensor:
        return phi * h(x)

    est, state = estimators.get(name), None
    for _ in range(est.warmup_calls if est.stateful else 1):  # a stateful estimator as measured: after its warm-up
        sur = est(distribution(family), f, 2, state)
        state = sur.state
    (grad,) = torch.autograd.grad(sur.loss.sum(), phi, allow_unused=True)
    grad = torch.zeros_like(phi) if grad is None else grad  # f's value detached: no gradient at all
    expected = sur.loss.detach() / phi.detach()
    if name not in ZERO_MEAN_EXTRA:
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
        return
    extra = grad - expected
    assert extra.abs().max() > 1e-6  # the term is there
    bound = z_bound(n_assertions=len(ZERO_MEAN_EXTRA)) * extra.std().item() / math.sqrt(R)
    assert abs(extra.mean().item()) <= bound, (extra.mean().item(), bound)
