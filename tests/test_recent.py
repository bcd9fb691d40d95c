"""The estimators of 2021-2023 against what their papers state, beyond the declared exactness that
tests/test_declared.py checks for every estimator: ARMS's relations to DisARM and RLOO and its
debiasing factor, Gumbel-Rao at M = 1, ReinMax's exactness for quadratic f, double-cv's start.
Statistical checks use fixed seeds and the z-bound of tests/statutil.py (false-failure rate 1e-3 per
test, split over its assertions)."""

from __future__ import annotations

import math

import pytest
import torch

import estimators
from benchmarks import runner
from benchmarks.sweep import Sweep
from estimators.leave_one_out import copula_uniforms, one_minus_rho
from reports.text import bias_threshold

from .statutil import z_bound

TOYS = [
    ("bernoulli-quadratic", dict(theta=[(0.0, -2.0, 1.5)], t=[0.45], dim=[3])),
    ("bernoulli-coupled", dict(theta=[(0.3, -1.0, 2.0, 0.0)], dim=[4], w_seed=[7])),
    ("bernoulli-polynomial", dict(theta=[0.7], t=[0.2], power=[3.0], dim=[5])),
]


def rows(problem: str, estimator: str, n: int, replicates: int, seed: int, **values) -> list[dict]:
    return runner.run(Sweep(problem=[problem], estimator=[estimator], n_samples=[n], replicates=replicates, seed=seed,
                            dtype="float64", **values).validate())


def log_variance_z(a: dict, b: dict) -> float:
    """z of the difference of two cells' log variances (each standard error by batch means)."""
    return (math.log(a["variance"]) - math.log(b["variance"])) / math.hypot(a["variance_se"] / a["variance"],
                                                                            b["variance_se"] / b["variance"])


@pytest.mark.parametrize("copula", ["dirichlet", "gaussian"])
def test_arms_at_two_draws_has_disarms_distribution(copula):
    """At n = 2 both copulas give ARM's antithetic pair, where ARMS's estimate is DisARM's on one pair: equal
    variance (and both unbiased) at three settings."""
    bound = z_bound(2 * len(TOYS))
    for problem, values in TOYS:
        (arms,) = rows(problem, "arms", 2, 20_000, 1, copula=[copula], **values)
        (disarm,) = rows(problem, "disarm", 1, 20_000, 2, **values)
        assert abs(log_variance_z(arms, disarm)) < bound, (problem, arms["variance"], disarm["variance"])


def test_arms_with_independent_draws_is_reinforce_loo():
    """With independent draws rho = 0: ARMS's estimate is RLOO's, draw for draw (the same seed, the same uniforms)."""
    theta = torch.tensor([[0.0, -2.0, 1.5], [0.7, 0.7, -0.3]], dtype=torch.float64, requires_grad=True)
    dist = torch.distributions.Independent(torch.distributions.Bernoulli(logits=theta), 1)

    def f(b):
        return ((b - 0.45) ** 2).sum(-1) + b[..., 0] * b[..., 2]

    grads = []
    for est in (estimators.get("arms", copula="independent"), estimators.get("reinforce-loo")):
        torch.manual_seed(11)
        (g,) = torch.autograd.grad(est(dist, f, 5).loss.sum(), theta)
        grads.append(g)
    torch.testing.assert_close(*grads)


@pytest.mark.parametrize("copula,n", [("dirichlet", 3), ("dirichlet", 5), ("gaussian", 3), ("gaussian", 6)])
def test_the_debiasing_factor_matches_the_copulas_joint_frequency(copula, n):
    """1 - rho = (p - P(b_i = b_j = 1)) / (p (1 - p)) in closed form (Dirichlet) or by quadrature (Gaussian), against
    the frequency of b_i = b_j = 1 over 400,000 draws of the copula at five logits."""
    theta = torch.tensor([-2.5, -0.4, 0.0, 0.9, 3.0], dtype=torch.float64)
    p = torch.sigmoid(theta)
    torch.manual_seed(0)
    m = 400_000
    u = copula_uniforms(copula, (n, m, len(theta)), torch.float64, "cpu")
    if copula == "gaussian":
        b = u < torch.special.ndtri(p)
    else:
        b = torch.where(p < 0.5, u < p, ~(u < 1 - p))
    both = (b[0] & b[1]).double()
    # marginals: the n draws are negatively correlated, so their mean varies less than n independent ones do
    assert b.double().mean((0, 1)).sub(p).abs().max() < z_bound(2 * len(theta)) * 0.5 / math.sqrt(n * m)
    predicted = p - one_minus_rho(copula, theta, n) * p * (1 - p)  # P(b_i = b_j = 1)
    se = (predicted * (1 - predicted) / m).sqrt().clamp(min=1e-12)
    z = ((both.mean(0) - predicted) / se).abs().max().item()
    assert z < z_bound(2 * len(theta)), (both.mean(0), predicted)


@pytest.mark.parametrize("copula,n", [("gaussian", 3), ("gaussian", 5), ("dirichlet", 6)])
def test_arms_is_unbiased_with_either_copula_at_several_draws(copula, n):
    for problem, values in TOYS[1:]:
        (row,) = rows(problem, "arms", n, 4000, 5, copula=[copula], **values)
        assert row["status"] == "ok" and row["agreement_z"] < z_bound(2 * 5), row


def test_gumbel_rao_at_one_gumbel_has_straight_throughs_distribution_and_more_gumbels_lower_its_variance():
    problem, values = TOYS[0]
    (st,) = rows(problem, "straight-through", 1, 20_000, 1, **values)
    (one,) = rows(problem, "gumbel-rao", 1, 20_000, 2, M=[1], **values)
    (many,) = rows(problem, "gumbel-rao", 1, 20_000, 3, M=[20], **values)
    bound = z_bound(3)
    assert abs(log_variance_z(st, one)) < bound, (st["variance"], one["variance"])
    se = math.hypot(st["variance"], one["variance"])  # per coordinate; the coordinate average's is smaller
    assert abs(st["mean"] - one["mean"]) < bound * math.sqrt(se / 20_000)
    assert log_variance_z(one, many) > bound, (one["variance"], many["variance"])


def test_reinmax_is_exact_for_a_quadratic_f_and_biased_beyond():
    """Second-order accurate (Heun's method): at p = 2 the polynomial toy's f is quadratic and ReinMax unbiased;
    at p = 1.5 and 3 the report's rule flags it."""
    out = {power: rows("bernoulli-polynomial", "reinmax", 2, 20_000, 4, power=[power], dim=[8])[0]
           for power in (1.5, 2.0, 3.0)}
    threshold = bias_threshold(3)
    assert abs(out[2.0]["bias_z"]) < z_bound(1)
    assert abs(out[1.5]["bias_z"]) > threshold and abs(out[3.0]["bias_z"]) > threshold


def test_double_cv_starts_as_reinforce_loo_and_needs_a_differentiable_f():
    theta = torch.tensor([0.2, -1.0], dtype=torch.float64, requires_grad=True)
    dist = torch.distributions.Independent(torch.distributions.Bernoulli(logits=theta), 1)

    def f(b):
        return ((b - 0.3) ** 2).sum(-1)

    dcv, loo = estimators.get("double-cv"), estimators.get("reinforce-loo")
    torch.manual_seed(0)
    s = dcv(dist, f, 4)
    (g1,) = torch.autograd.grad(s.loss, theta)
    torch.manual_seed(0)
    (g2,) = torch.autograd.grad(loo(dist, f, 4).loss, theta)
    torch.testing.assert_close(g1, g2)  # alpha = 0 before any call has taught it
    assert s.state is not None and torch.isfinite(s.state)
    with pytest.raises(estimators.EstimatorError, match="differentiable") as err:
        dcv(dist, lambda b: b.detach().sum(-1), 4)
    assert err.value.capability


def test_double_cv_lowers_reinforce_loos_variance_where_f_is_not_linear_on_the_outcomes():
    problem, values = TOYS[1]
    (dcv,) = rows(problem, "double-cv", 3, 20_000, 1, **values)
    (loo,) = rows(problem, "reinforce-loo", 3, 20_000, 2, **values)
    assert log_variance_z(loo, dcv) > z_bound(1), (loo["variance"], dcv["variance"])


def test_unordered_set_probabilities_sum_to_one_and_leave_one_out_ratios_are_normalized():
    """Over every 3-subset of a 6-outcome domain: sum_S p(S) = 1 (the set probabilities of sampling without
    replacement), and for each outcome s, sum_{S containing s} p(S) R(S, s) = 1 (R(S, s) p(S) is the probability
    of S \\ s drawn from the domain without s); Rsnd likewise over the pairs."""
    import itertools

    from estimators.sets import leave_one_out_ratios, set_probability

    p = torch.tensor([0.05, 0.3, 0.1, 0.25, 0.2, 0.1], dtype=torch.float64)
    sets = torch.tensor(list(itertools.combinations(range(6), 3)))
    probs = set_probability(p[sets], torch.zeros(len(sets), dtype=torch.float64))
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    r, rsnd = leave_one_out_ratios(p[sets])
    for s in range(6):
        holds = (sets == s).any(-1)
        where = (sets == s).long().argmax(-1)
        total = (probs * r[torch.arange(len(sets)), where])[holds].sum()
        assert total.item() == pytest.approx(1.0, abs=1e-12)
    # k = 2 in closed form: p(S) = p1 p2 (1 / (1 - p1) + 1 / (1 - p2))
    pair = p[[1, 3]]
    closed = pair.prod() * (1 / (1 - pair[0]) + 1 / (1 - pair[1]))
    assert set_probability(pair, torch.zeros((), dtype=torch.float64)).item() == pytest.approx(closed.item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["bernoulli", "categorical", "one categorical"])
def test_joint_domain_log_probabilities_and_their_gradient_are_the_distributions(kind):
    """JointDomain's log_p (an outer sum over coordinates) against the distribution's own log_prob at every
    outcome of the grid (itertools.product's order), value and gradient, with a class of probability 0."""
    import itertools

    from torch.distributions import Bernoulli, Categorical, Independent

    from estimators.sets import JointDomain

    gen = torch.Generator().manual_seed(3)
    if kind == "bernoulli":
        logits = torch.randn(2, 5, 4, dtype=torch.float64, generator=gen)
        dist_of = lambda lg: Independent(Bernoulli(logits=lg, validate_args=False), 1)  # noqa: E731
        classes, d = 2, 4
    else:
        d = 3 if kind == "categorical" else 1
        logits = torch.randn(2, 5, d, 3, dtype=torch.float64, generator=gen)
        logits[0, 1, 0, 2] = -math.inf  # a class that cannot be drawn: its outcomes' log p is -inf, not nan
        logits = logits if d > 1 else logits[..., 0, :]
        dist_of = lambda lg: (Independent(Categorical(logits=lg, validate_args=False), 1) if d > 1  # noqa: E731
                              else Categorical(logits=lg, validate_args=False))
        classes = 3
    logits.requires_grad_(True)
    grid = torch.tensor(list(itertools.product(range(classes), repeat=d)))
    outcomes = grid.to(logits.dtype) if kind == "bernoulli" else (grid if d > 1 else grid[:, 0])
    weights = torch.randn(2, 5, classes**d, dtype=torch.float64, generator=gen)
    domain = JointDomain(dist_of(logits), "test")
    (got,) = torch.autograd.grad(torch.where(domain.log_p.isfinite(), domain.log_p * weights, 0).sum(), logits)
    expected = dist_of(logits).log_prob(outcomes[:, None, None].expand(-1, 2, 5, *outcomes.shape[1:])).movedim(0, -1)
    (want,) = torch.autograd.grad(torch.where(expected.isfinite(), expected * weights, 0).sum(), logits)
    torch.testing.assert_close(domain.log_p, expected, rtol=0, atol=1e-12)
    assert not domain.log_p.isnan().any() and (kind == "bernoulli" or domain.log_p.isinf().any())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("estimator,k,n", [("unordered-set", 1, 3), ("unordered-set", 2, 1), ("unordered-set", 6, 1),
                                           ("sum-and-sample", 1, 1), ("sum-and-sample", 2, 3)])
def test_the_set_estimators_are_unbiased_at_other_set_sizes(estimator, k, n):
    """Beyond the declared defaults that tests/test_declared.py runs: the smallest sets (unordered-set's k = 1 has
    no built-in baseline), the largest, and sum-and-sample's restricted draws with and without their baseline."""
    for problem, values in [("categorical-quadratic", dict(theta=[1.5], t=[0.3], K=[5], dim=[2])), TOYS[1]]:
        (row,) = rows(problem, estimator, n, 6000, 9, k=[k], **values)
        assert row["status"] == "ok" and row["agreement_z"] < z_bound(2 * 8), row


def test_sum_and_sample_over_every_outcome_is_exact():
    (row,) = rows("categorical-quadratic", "sum-and-sample", 2, 64, 1, k=[9], theta=[0.5], t=[0.3], K=[3], dim=[2])
    assert row["variance"] == 0 and abs(row["bias_z"]) < 1e-6, row


@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_gumbel_rao_bernoulli_point_has_the_mean_of_its_relaxations_derivatives(temperature):
    """The Bernoulli point is written with its derivative in closed form (sigma' / tau, averaged over the M
    conditional draws, without an autograd graph through them; at tau = 1 sigma(theta + logit v) as
    v / (v + (1 - v) e^-theta)): the same value and gradient as differentiating the mean of the M relaxed
    points, drawn from the same uniforms."""
    est = estimators.get("gumbel-rao", M=7, temperature=temperature)
    theta = torch.tensor([[-1.5, 0.2, 3.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]], dtype=torch.float64)  # [n=2, 1, 3]
    weights = torch.randn(b.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    point = est.bernoulli_point(theta, b)
    (grad,) = torch.autograd.grad((point * weights).sum(), theta)
    torch.manual_seed(5)  # the same uniforms, through autograd
    q = torch.sigmoid(-theta.detach())
    width, start = torch.where(b.bool(), 1 - q, q), b * q
    v = start + torch.rand((7, *b.shape), dtype=b.dtype) * width
    expected = torch.sigmoid((theta + torch.logit(v)) / temperature).mean(0)
    (want,) = torch.autograd.grad((expected * weights).sum(), theta)
    torch.testing.assert_close(point.detach(), expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_gumbel_rao_bernoulli_point_in_float32_draws_its_uniforms_two_per_word(temperature):
    """In float32 the Bernoulli point takes its uniforms from estimators.uniforms (u = 1/2 + c 2^-24, two codes
    per 64-bit word, M x n x dim of them in one block here): value and gradient are those of the mean of the
    M relaxed points at exactly those uniforms, within float32 rounding."""
    from estimators.uniforms import UNIFORM_STEP, uniform_buffer, uniform_codes_

    est = estimators.get("gumbel-rao", M=5, temperature=temperature)
    theta = torch.tensor([[-1.5, 0.2, 3.0]], requires_grad=True)
    b = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]])  # [n=3, 1, 3], 9 numbers
    weights = torch.randn(b.shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(6)
    point = est.bernoulli_point(theta, b)
    (grad,) = torch.autograd.grad((point * weights).sum(), theta)
    torch.manual_seed(6)
    u = 0.5 + uniform_codes_(uniform_buffer(5 * 9, "cpu"))[: 5 * 9].double().view(5, *b.shape) * UNIFORM_STEP
    t = theta.detach().double().requires_grad_(True)
    q = torch.sigmoid(-t.detach())
    v = b.double() * q + u * torch.where(b.bool(), 1 - q, q)
    expected = torch.sigmoid((t + torch.logit(v)) / temperature).mean(0)
    (want,) = torch.autograd.grad((expected * weights.double()).sum(), t)
    torch.testing.assert_close(point.detach().double(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.4])
def test_gumbel_rao_categorical_point_is_the_softmax_of_the_conditional_gumbels(dtype, temperature):
    """conditional_softmax is softmax((theta + G_m) / tau) at conditional_gumbels' draws (at tau = 1 written as
    normalised 1 / (E_i / p_i + E_d), without a log), and the point's gradient, MeanRelaxation's closed-form
    backward, is autograd's through that softmax; a class of probability 0 (logit -1e4) gets weight 0."""
    from estimators.straight_through import conditional_gumbels, conditional_softmax

    est = estimators.get("gumbel-rao", M=4, temperature=temperature)
    logits = torch.tensor([[0.3, -2.0, 1.1, -1e4], [1.0, 0.0, -0.5, 2.0]], dtype=dtype, requires_grad=True)
    d = torch.nn.functional.one_hot(torch.tensor([[2, 0], [1, 3], [0, 3]]), 4).to(dtype)  # [n=3, 2, 4]
    weights = torch.randn(d.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(8)
    relaxations = conditional_softmax(logits, d, 4, temperature)
    torch.manual_seed(8)
    point = est.point(logits, d)
    (grad,) = torch.autograd.grad((point * weights).sum(), logits)
    torch.manual_seed(8)
    want = torch.softmax((conditional_gumbels(logits, d, 4) + logits - logits.detach()) / temperature, -1)
    (want_grad,) = torch.autograd.grad((want.mean(0) * weights).sum(), logits)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(relaxations, want.detach(), **tol)
    torch.testing.assert_close(point.detach(), want.mean(0).detach(), **tol)
    torch.testing.assert_close(grad, want_grad, **tol)
    assert (relaxations[..., 0, 3] == 0).all()


def test_conditional_gumbels_are_the_truncated_gumbels_of_their_formula():
    """conditional_gumbels computes, in place, log Z - log(E_i / p_i + E_d) for the classes not drawn and
    log Z - log E_d for the drawn one: the truncated Gumbels -logaddexp(log E_i - theta_i, -top) of its
    derivation, from the same Exp(1) draws."""
    from estimators.straight_through import conditional_gumbels
    from estimators.uniforms import standard_exponential

    logits = torch.tensor([[0.3, -2.0, 1.1, 4.0], [-1.0, 0.0, 0.5, -30.0]], dtype=torch.float64)
    d = torch.nn.functional.one_hot(torch.tensor([[2, 0], [3, 3], [0, 1]]), 4).to(torch.float64)  # [n=3, 2, 4]
    torch.manual_seed(3)
    got = conditional_gumbels(logits, d, 5)
    torch.manual_seed(3)
    log_e = torch.log(standard_exponential((5, *d.shape), d.dtype, "cpu", codes=True))
    log_z = torch.logsumexp(logits, -1, keepdim=True)
    top = log_z - (log_e * d).sum(-1, keepdim=True)
    want = torch.where(d.bool(), top, -torch.logaddexp(log_e - logits, -top))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert (got.argmax(-1) == d.argmax(-1)).all()  # the drawn class holds the maximum


def test_gumbel_rao_categorical_point_is_the_mean_relaxation_with_its_gradient():
    from estimators.straight_through import conditional_gumbels

    est = estimators.get("gumbel-rao", M=6, temperature=0.5)
    logits = torch.tensor([[0.3, -2.0, 1.1], [1.0, 0.0, -0.5]], dtype=torch.float64, requires_grad=True)
    d = torch.nn.functional.one_hot(torch.tensor([[2, 0], [1, 1]]), 3).to(torch.float64)  # [n=2, 2, 3]
    weights = torch.randn(d.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(4)
    point = est.point(logits, d)
    (grad,) = torch.autograd.grad((point * weights).sum(), logits)
    torch.manual_seed(4)
    noise = conditional_gumbels(logits, d, 6) - logits.detach()
    want = torch.softmax((logits + noise) / 0.5, -1).mean(0)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), logits)
    torch.testing.assert_close(point.detach(), want.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, want_grad, rtol=1e-10, atol=1e-14)
