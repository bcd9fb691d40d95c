"""Property-based tests (hypothesis) of the estimator interface and the closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import integrate

import estimators
from benchmarks import problems
from benchmarks.problems import Context, GaussianSetting

BUILTIN_NAMES = [n for n, c in estimators.ESTIMATORS.classes().items() if c.__module__ == "estimators.builtin"]

CTX = Context(dtype=torch.float64)
NAMES = ["gaussian-quadratic", "gaussian-cos", "gaussian-exp"]

mus = st.floats(-4.0, 4.0)
sigmas = st.floats(0.05, 4.0)
ks = st.floats(-2.0, 2.0)


def valid(problem, s: GaussianSetting) -> bool:
    try:
        problem.validate(s)
    except problems.SettingError:
        return False
    return True


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), est=st.sampled_from(BUILTIN_NAMES), mu=mus, sigma=sigmas, k=ks,
       dim=st.integers(1, 12), n=st.integers(1, 6), r=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_every_builtin_returns_finite_gradients_of_the_right_shape(name, est, mu, sigma, k, dim, n, r, seed):
    problem = problems.get(name)
    s = GaussianSetting(mu, sigma, k, dim)
    assume(valid(problem, s))
    estimator = estimators.get(est)
    assume(n >= estimator.min_samples)
    torch.manual_seed(seed)
    out = problem.chunk(estimator, s, None, n, r, estimator.init_state(), CTX)
    assert set(out.grads) == {"mu", "sigma"}
    for g in out.grads.values():
        assert g.shape == (r, dim) and g.dtype == torch.float64
        assert torch.isfinite(g).all()


def normal_pdf(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True)
@given(name=st.sampled_from(NAMES), mu=mus, sigma=sigmas, k=ks)
def test_closed_forms_agree_with_numerical_integrals(name, mu, sigma, k):
    """E h, dE/dmu = E[h (x - mu) / sigma^2] and dE/dsigma = E[h ((x - mu)^2 - sigma^2) / sigma^3] by adaptive quadrature."""
    problem = problems.get(name)
    s = GaussianSetting(mu, sigma, k, 1)
    assume(valid(problem, s))
    assume(name != "gaussian-exp" or 1 + 2 * k * sigma**2 > 0.05)  # keep the integrand's tails integrable in practice
    h = type(problem).h

    def hx(x: float) -> float:
        return float(h(torch.tensor(x, dtype=torch.float64), k))

    lo, hi = mu - 12 * sigma, mu + 12 * sigma
    weights = {
        "value": lambda x: 1.0,
        "mu": lambda x: (x - mu) / sigma**2,
        "sigma": lambda x: ((x - mu) ** 2 - sigma**2) / sigma**3,
    }
    value, d_mu, d_sigma = type(problem).truth(mu, sigma, k)
    want = {"value": value, "mu": d_mu, "sigma": d_sigma}
    opts = dict(limit=400, epsabs=1e-12, epsrel=1e-10, points=[mu])
    for key, w in weights.items():
        got, err = integrate.quad(lambda x: hx(x) * w(x) * normal_pdf(x, mu, sigma), lo, hi, **opts)
        # the quadrature's accuracy is relative to the size of the integrand, not of the (possibly
        # cancelling) integral: allow 1e-8 of the integral of |integrand|, plus its own error estimate
        size, _ = integrate.quad(lambda x: abs(hx(x) * w(x)) * normal_pdf(x, mu, sigma), lo, hi, **opts)
        assert abs(got - want[key]) <= 1e-8 * size + 10 * err + 1e-12, (key, got, want[key], err, size)
