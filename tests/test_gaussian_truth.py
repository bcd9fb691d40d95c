"""The closed-form expectations and gradients of the toy problems.

Checked two independent ways, with no sampling:
1. the gradient formulas equal autograd of the expectation formula;
2. the expectation equals a Gauss-Hermite quadrature of E[h(x)] (dim = 1),
   which is exact to machine precision for these smooth integrands.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import problems
from benchmarks.problems import Context, GaussianSetting, SettingError

SETTINGS = [(1.0, 1.0, 1.0), (0.3, 0.5, 2.0), (-1.5, 2.0, 0.5), (2.0, 0.1, 0.0), (0.0, 1.3, -0.2)]
NAMES = ["gaussian-quadratic", "gaussian-cos", "gaussian-exp"]


def gauss_hermite_expectation(h, mu: float, sigma: float, n: int = 200) -> float:
    t, w = np.polynomial.hermite.hermgauss(n)  # int e^{-t^2} g(t) dt
    x = torch.tensor(mu + math.sqrt(2) * sigma * t, dtype=torch.float64)
    return float(np.sum(w * h(x[:, None]).numpy()) / math.sqrt(math.pi))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mu,sigma,k", SETTINGS)
def test_expectation_matches_quadrature(name, mu, sigma, k):
    p = problems.get(name)
    s = GaussianSetting(mu, sigma, k, 1)
    p.validate(s)
    quad = gauss_hermite_expectation(p.f(k), mu, sigma)
    assert p.expectation(s) == pytest.approx(quad, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mu,sigma,k", SETTINGS)
def test_gradient_formula_is_derivative_of_expectation(name, mu, sigma, k):
    p = problems.get(name)
    truth = type(p).truth
    m = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    sd = torch.tensor(sigma, dtype=torch.float64, requires_grad=True)
    # the same formula, in torch, so autograd can differentiate it
    if name == "gaussian-quadratic":
        e = (m - k) ** 2 + sd**2
    elif name == "gaussian-cos":
        e = torch.cos(k * m) * torch.exp(-(k**2) * sd**2 / 2)
    else:
        s = 1 + 2 * k * sd**2
        e = s**-0.5 * torch.exp(-k * m**2 / s)
    assert e.item() == pytest.approx(truth(mu, sigma, k)[0], rel=1e-12, abs=1e-14)
    g_mu, g_sigma = torch.autograd.grad(e, (m, sd))
    _, d_mu, d_sigma = truth(mu, sigma, k)
    assert d_mu == pytest.approx(g_mu.item(), rel=1e-12, abs=1e-14)
    assert d_sigma == pytest.approx(g_sigma.item(), rel=1e-12, abs=1e-14)


def test_true_gradient_has_one_entry_per_coordinate():
    p = problems.get("gaussian-cos")
    g = p.true_gradient(GaussianSetting(0.4, 0.8, 1.5, 7), Context())
    assert set(g) == {"mu", "sigma"} and g["mu"].shape == (7,)
    assert torch.all(g["mu"] == type(p).truth(0.4, 0.8, 1.5)[1])


@pytest.mark.parametrize(
    "name,setting,message",
    [
        ("gaussian-quadratic", GaussianSetting(0.0, 0.0, 1.0, 1), "sigma must be a finite number > 0, got sigma=0"),
        ("gaussian-cos", GaussianSetting(0.0, -1.0, 1.0, 1), "sigma=-1"),
        ("gaussian-cos", GaussianSetting(0.0, 1.0, 1.0, 0), "dim must be an integer >= 1, got dim=0"),
        ("gaussian-exp", GaussianSetting(0.0, 1.0, -1.0, 1), "1 \\+ 2 k sigma\\^2 > 0.*k=-1, sigma=1"),
    ],
)
def test_impossible_settings_are_rejected(name, setting, message):
    with pytest.raises(SettingError, match=message):
        problems.get(name).validate(setting)
