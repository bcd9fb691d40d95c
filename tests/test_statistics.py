"""Tier 2: statistical checks on many vectorized replicates, against closed forms.

Every tolerance is z * standard error, z from the test's false-failure rate
(tests/statutil.py), the standard error from the samples themselves.

Variance of the estimators on the quadratic, f(x) = sum_d (x_d - k)^2,
x = mu + sigma * eps, eps ~ N(0, I_D); write a = mu - k. Per coordinate c, one
sample (n = 1); an estimate from n samples has 1/n of these variances.

Pathwise:  g_mu = 2 (a + sigma eps_c)            -> Var = 4 sigma^2
           g_sigma = 2 (a + sigma eps_c) eps_c   -> Var = 4 a^2 Var(eps) + 4 sigma^2 Var(eps^2)
                                                         + 8 a sigma Cov(eps, eps^2) = 4 a^2 + 8 sigma^2
Score:     g_mu = f eps_c / sigma,  g_sigma = f (eps_c^2 - 1) / sigma,  E g = 2a, 2 sigma.
           Split f = (a + sigma eps_c)^2 + F, F = sum_{d != c} (a + sigma eps_d)^2
           independent of eps_c, with E F = (D-1) m1, E F^2 = (D-1) v + (D-1)^2 m1^2,
           m1 = a^2 + sigma^2, v = 4 a^2 sigma^2 + 2 sigma^4. Using E eps^2,4,6,8 = 1, 3, 15, 105:
           E[(a+s e)^4 e^2] = a^4 + 18 a^2 s^2 + 15 s^4,   E[(a+s e)^2 e^2] = a^2 + 3 s^2,
           E[(a+s e)^4 (e^2-1)^2] = 2 a^4 + 60 a^2 s^2 + 78 s^4,  E[(a+s e)^2 (e^2-1)^2] = 2 a^2 + 10 s^2,
           E[(e^2-1)^2] = 2, so
           Var g_mu    = (A4 + 2 E F A2 + E F^2) / sigma^2 - 4 a^2
           Var g_sigma = (B4 + 2 E F B2 + 2 E F^2) / sigma^2 - 4 sigma^2.
The D = 1 case of these moments is checked exactly by quadrature below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import estimators
from benchmarks import problems, runner
from benchmarks.problems import Context, GaussianSetting
from benchmarks.stats import GradientStats, Moments
from benchmarks.sweep import Sweep

from .statutil import variance_and_se, z_bound

CTX = Context(dtype=torch.float64)


def quadratic_variances(a: float, s: float, D: int, n: int) -> dict[str, dict[str, float]]:
    m1 = a**2 + s**2
    v = 4 * a**2 * s**2 + 2 * s**4
    EF = (D - 1) * m1
    EF2 = (D - 1) * v + (D - 1) ** 2 * m1**2
    A4, A2 = a**4 + 18 * a**2 * s**2 + 15 * s**4, a**2 + 3 * s**2
    B4, B2 = 2 * a**4 + 60 * a**2 * s**2 + 78 * s**4, 2 * a**2 + 10 * s**2
    return {
        "reparameterization": {"mu": 4 * s**2 / n, "sigma": (4 * a**2 + 8 * s**2) / n},
        "reinforce": {
            "mu": ((A4 + 2 * EF * A2 + EF2) / s**2 - 4 * a**2) / n,
            "sigma": ((B4 + 2 * EF * B2 + 2 * EF2) / s**2 - 4 * s**2) / n,
        },
    }


@pytest.mark.parametrize("a,s", [(0.0, 1.0), (1.5, 0.8), (-2.0, 1.7)])
def test_variance_formulas_by_quadrature(a, s):
    """For D = 1 the formulas above equal E[g^2] - (E g)^2 computed by Gauss-Hermite quadrature."""
    t, w = np.polynomial.hermite.hermgauss(60)
    eps = math.sqrt(2) * t
    E = lambda v: float(np.sum(w * v) / math.sqrt(math.pi))  # noqa: E731
    fx = (a + s * eps) ** 2
    want = quadratic_variances(a, s, D=1, n=1)
    g = {
        ("reparameterization", "mu"): 2 * (a + s * eps),
        ("reparameterization", "sigma"): 2 * (a + s * eps) * eps,
        ("reinforce", "mu"): fx * eps / s,
        ("reinforce", "sigma"): fx * (eps**2 - 1) / s,
    }
    for (est, group), values in g.items():
        var = E(values**2) - E(values) ** 2
        assert var == pytest.approx(want[est][group], rel=1e-10), (est, group)


CASES = [
    # mu, k, sigma, dim, n_samples
    (1.5, 0.5, 0.8, 1, 1),
    (0.0, 1.0, 1.2, 3, 2),
]


def test_measured_variance_matches_closed_form():
    """Runner code path (problem.chunk) against the formulas, for both estimators and groups."""
    z = z_bound(n_assertions=len(CASES) * 2 * 2)
    quad = problems.get("gaussian-quadratic")
    R = 40_000
    for case_i, (mu, k, sigma, dim, n) in enumerate(CASES):
        setting = GaussianSetting(mu, sigma, k, dim)
        want = quadratic_variances(mu - k, sigma, dim, n)
        for est_name in ("reparameterization", "reinforce"):
            torch.manual_seed(1000 + case_i)
            out = quad.chunk(estimators.get(est_name), setting, None, n, R, None, CTX)
            for group in ("mu", "sigma"):
                var, se = variance_and_se(out.grads[group])
                expected = want[est_name][group]
                assert abs(var - expected) <= z * se, (
                    f"{est_name} {group} {setting} n={n}: measured {var:.4g} +- {se:.2g}, formula {expected:.4g}"
                )


def test_all_estimators_unbiased_on_every_toy_function():
    """Every registered estimator for continuous distributions (built-ins and the shipped plugins)
    has a mean gradient equal to the closed-form truth (bias z-test); the discrete ones are tested
    in tests/test_discrete.py."""
    settings = [GaussianSetting(1.0, 0.7, 0.5, 1), GaussianSetting(-0.5, 1.5, 1.3, 4)]
    names = ["gaussian-quadratic", "gaussian-cos", "gaussian-exp"]
    ests = [e for e in estimators.available() if estimators.get_class(e).unsupported("normal") is None]
    assert {"reinforce-optimal", "measure-valued", "reinforce-delta-cv"} <= set(ests)
    z = z_bound(n_assertions=len(settings) * len(names) * len(ests) * 2)
    sweep = Sweep(replicates=4000, seed=7, estimator=ests)
    for name in names:
        problem = problems.get(name)
        for setting in settings:
            for est in ests:
                rows = runner.run_cell(runner.Cell(problem, est, setting, 4), sweep, None, CTX)
                for row in rows:
                    assert row["status"] == "ok", row["error"]
                    assert abs(row["bias_z"]) <= z, (
                        f"{est} on {name} {setting}, {row['parameter']}: mean {row['mean']:.5g}, "
                        f"truth {row['true_grad']:.5g}, z = {row['bias_z']:.2f} > {z:.2f}"
                    )


@pytest.mark.parametrize("baseline", ["reinforce-loo", "reinforce-ema"])
def test_baselines_reduce_variance_on_the_quadratic(baseline):
    """At mu - k = 2, sigma = 1, a baseline lowers the mu-gradient variance of REINFORCE (one-sided z-test)."""
    quad = problems.get("gaussian-quadratic")
    setting = GaussianSetting(mu=2.0, sigma=1.0, k=0.0, dim=1)
    R, n = 20_000, 4
    results = {}
    for i, name in enumerate(["reinforce", baseline]):
        est = estimators.get(name)
        torch.manual_seed(50 + i)
        state = est.init_state()
        for _ in range(est.warmup_calls if est.stateful else 0):
            state = quad.chunk(est, setting, None, n, 100, state, CTX).state
        out = quad.chunk(est, setting, None, n, R, state, CTX)
        results[name] = variance_and_se(out.grads["mu"])
    (v0, se0), (v1, se1) = results["reinforce"], results[baseline]
    assert v0 - v1 > z_bound(1, two_sided=False) * math.hypot(se0, se1), results


def test_chunked_moments_equal_one_pass_moments():
    torch.manual_seed(0)
    x = torch.randn(1003, 7, dtype=torch.float64) * 3 + 1e6  # large offset: needs the stable merge
    m = Moments()
    for part in torch.split(x, [1, 500, 2, 500]):
        m.update(part)
    torch.testing.assert_close(m.mean, x.mean(0), rtol=0, atol=1e-8)
    torch.testing.assert_close(m.var, x.var(0), rtol=1e-10, atol=0)


@pytest.mark.parametrize("rows", [7, 16, 203, 1600])
def test_chunk_statistics_of_float32_estimates_match_float64_ones(rows):
    """chunk_moments reduces a float32 chunk in float32 (batch sums by halves, squared deviations, row sums) and
    GradientStats merges in float64: every statistic, and the per-coordinate mean and M2 of the chunk
    (GradientStats.coords), agrees with the same computed on the chunk copied to float64, within bounds from
    float32's unit roundoff u = 2^-24: a batch mean is off by at most e = 4 u max|x| (four additions and an
    exact division by 16), a sum of 16 squares by 16 u of itself, a row sum of P values by P u sum|x|; and a
    merge's M2 moves by at most 2 sum|deviation| x error + count x error^2. Estimates that are all equal keep
    an M2 of exactly 0. The coordinates include one whose standard deviation is 2e-4 of its mean."""
    from benchmarks.stats import VARIANCE_BATCH, chunk_moments, moments

    u, p = 2.0**-24, 5
    torch.manual_seed(rows)
    g = torch.randn(rows, p) * torch.tensor([1.0, 1e-3, 10.0, 1.0, 0.0]) + torch.tensor([0.0, 5.0, -3.0, 1e3, 2.5])
    x = g.to(torch.float64)
    b = rows // VARIANCE_BATCH
    whole = b * VARIANCE_BATCH
    batches = x[:whole].reshape(b, VARIANCE_BATCH, p)
    batch_mean = batches.mean(1)
    batch_m2 = (batches - batch_mean[:, None]).square().sum(1)
    variances = batch_m2.mean(-1) / (VARIANCE_BATCH - 1)
    avg = x.mean(1)
    want = (*moments(avg), *(moments(variances) if b else (torch.zeros(()),) * 2), batch_mean, batch_m2)
    if rows > whole:
        want += moments(x[whole:])
    got = chunk_moments(g)

    def merged(dev: torch.Tensor, err: torch.Tensor, m2: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """bound on an M2's error: its parts' own (``own``) and that of the values' ``err`` around ``dev``"""
        return own + 2 * dev.abs().sum(0) * err + dev.shape[0] * err * err + 1e-12

    e = 4 * u * x.abs().amax(0)  # [P]: a batch mean's rounding
    e_avg = p * u * x.abs().sum(1).amax() / p  # a replicate's coordinate average's
    m2_err = 16 * u * batch_m2 + VARIANCE_BATCH * e * e  # [b, P]: each batch's M2
    bounds = [e_avg + 1e-12, merged(avg - want[0], e_avg, want[1], 0.0)]
    if b:
        v_err = m2_err.mean(-1) / (VARIANCE_BATCH - 1)
        bounds += [v_err.max() + 1e-12, merged(variances - want[2], v_err.max(), want[3], 0.0), e + 1e-12, m2_err + 1e-12]
    else:
        bounds += [1e-12] * 4
    if rows > whole:  # the rows after the last whole batch: float64 from the start
        bounds += [1e-12 * x.abs().amax(0) + 1e-12, 1e-9 * want[-1] + 1e-12]
    assert len(got) == len(want) == len(bounds)
    for i, (a, w, bound) in enumerate(zip(got, want, bounds, strict=True)):
        assert a.dtype == torch.float64 and a.shape == w.shape, i
        assert ((a - w).abs() <= bound).all(), (i, (a - w).abs(), bound)
    assert not b or (got[5][:, 4] == 0).all()  # the constant coordinate

    stats = GradientStats()
    stats.merge(rows, got)
    mean, m2 = moments(x)
    assert stats.n == rows and stats.coords.n == rows
    assert ((stats.coords.mean - mean).abs() <= e + 1e-12).all(), (stats.coords.mean - mean).abs()
    m2_bound = merged(batch_mean - mean, VARIANCE_BATCH * e, m2, m2_err.sum(0)) if b else 1e-9 * m2 + 1e-12
    assert ((stats.coords.m2 - m2).abs() <= m2_bound).all(), ((stats.coords.m2 - m2).abs(), m2_bound)
    assert stats.coords.m2[4] == 0 and stats.coords.mean[4] == 2.5


def test_gradient_stats_merge_chunks_as_one_pass_and_check_finiteness_exactly():
    """GradientStats' per-coordinate mean and M2 (its groups of whole batches and the rows after each chunk's last
    whole batch, merged) equal those of all its estimates in one pass, in float64 to rounding, however the
    estimates came in chunks (contiguous or not); finite() turns False on one non-finite coordinate, and not where a replicate's
    coordinate sum overflows float32 while every coordinate is finite."""
    from benchmarks.stats import VARIANCE_BATCH, moments

    torch.manual_seed(2)
    x = torch.randn(1000, 4, dtype=torch.float64) * torch.tensor([1.0, 3.0, 1e-2, 0.0]) + 1e3
    stats = GradientStats()
    for i, part in enumerate(torch.split(x, [5, 100, 16, 333, 48, 1, 497])):
        stats.update(part if i % 2 else part.t().contiguous().t())  # a chunk may come in any layout
        assert i % 2 or not part.t().contiguous().t().is_contiguous()
    mean, m2 = moments(x)
    assert stats.n == 1000 and stats.groups.batches == sum(n // VARIANCE_BATCH for n in (5, 100, 16, 333, 48, 1, 497))
    torch.testing.assert_close(stats.coords.mean, mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(stats.coords.m2, m2, rtol=1e-10, atol=1e-20)
    assert stats.coords.m2[3] == 0
    assert stats.finite()
    huge = GradientStats()
    sign = torch.tensor([1.0] * 8 + [-1.0] * 8).repeat(2)[:, None]  # a batch's halves cancel, so its mean is 0
    huge.update(sign * torch.full((32, 4), 1e38))  # each row's float32 coordinate sum overflows: the coordinates decide
    assert not math.isfinite(huge.avg.mean.item()) and huge.finite()
    for bad in (math.nan, math.inf):
        late = GradientStats()
        late.update(torch.ones(48, 3))
        y = torch.ones(40, 3)
        y[37, 1] = bad  # among the rows after the last whole batch
        late.update(y)
        assert not late.finite()


def test_jackknife_groups_hold_the_moments_of_their_batches_whatever_the_chunking():
    """BatchGroups: batch i of the cell joins group i mod G, whether it came in a chunk of fewer batches than
    groups (each updated in place) or of more; every group's count, mean and M2 equal its estimates' own."""
    from benchmarks.jackknife import JACKKNIFE_GROUPS, BatchGroups
    from benchmarks.stats import VARIANCE_BATCH, chunk_moments

    torch.manual_seed(0)
    chunks = [torch.randn(VARIANCE_BATCH * b, 3, dtype=torch.float64) + 2 for b in (3, 7, 12, 1, 10, 4, 25)]
    bg = BatchGroups(VARIANCE_BATCH)
    for c in chunks:
        out = chunk_moments(c)
        bg.add(out[4], out[5])
    batches = torch.cat(chunks).reshape(-1, VARIANCE_BATCH, 3)
    assert bg.batches == batches.shape[0]
    for k in range(JACKKNIFE_GROUPS):
        rows = batches[k::JACKKNIFE_GROUPS].reshape(-1, 3)
        assert bg.n[k].item() == rows.shape[0]
        torch.testing.assert_close(bg.mean[k], rows.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bg.m2[k], (rows - rows.mean(0)).square().sum(0), rtol=1e-10, atol=1e-12)
