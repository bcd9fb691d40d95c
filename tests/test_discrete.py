"""Discrete problems and estimators, against exact enumeration.

Every tolerance is z * standard error (tests/statutil.py: a false-failure rate of 1e-3 per
test, split over its assertions). Exact values come from enumerating outcomes in float64:
the truth of the problems, and the exact variance of reinforce, reinforce-loo and disarm on
bernoulli-quadratic, whose estimate from n draws takes finitely many values.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import estimators
from benchmarks import problems
from benchmarks.problems import Context
from benchmarks.problems.discrete import (
    BernoulliSetting,
    CategoricalSetting,
    CoupledSetting,
    PolynomialSetting,
    coupling,
    outcomes,
)
from estbench.cli import main

from .statutil import z_bound

CTX = Context(dtype=torch.float64)
UNBIASED = ["reinforce", "reinforce-loo", "reinforce-ema", "arm", "disarm", "rebar", "relax", "exact"]
BERNOULLI_ONLY = {"arm", "disarm", "rebar", "relax"}
SETTINGS = [
    ("bernoulli-quadratic", BernoulliSetting(theta=(0.0, -2.0, 1.5), t=0.45, dim=3)),
    ("bernoulli-coupled", CoupledSetting(theta=(0.3, -1.0, 2.0, 0.0), dim=4, w_seed=7)),
    ("categorical-quadratic", CategoricalSetting(theta=1.5, t=0.3, K=5, dim=2)),
]


def draws(problem: str, setting, estimator: str, n: int, R: int, seed: int, **options) -> torch.Tensor:
    """R estimates [R, P] in float64 through the problem's own chunk (the runner's path)."""
    p = problems.get(problem)
    est = estimators.get(estimator, **options)
    torch.manual_seed(seed)
    state = est.init_state()
    if est.stateful:
        for _ in range(10):
            state = p.chunk(est, setting, None, n, 100, state, CTX).state
    return p.chunk(est, setting, None, n, R, state, CTX).grads["theta"]


# -- the truth ---------------------------------------------------------------------

def test_bernoulli_closed_form_matches_enumeration():
    p = problems.get("bernoulli-quadratic")
    s = BernoulliSetting(theta=(0.7, -1.2), t=0.2, dim=2)
    theta = torch.tensor(s.theta, dtype=torch.float64, requires_grad=True)
    b = outcomes(2)
    prob = torch.distributions.Independent(torch.distributions.Bernoulli(logits=theta), 1).log_prob(b).exp()
    value = (prob * ((b - s.t) ** 2).sum(-1)).sum()
    (grad,) = torch.autograd.grad(value, theta)
    torch.testing.assert_close(p.true_gradient(s, CTX)["theta"], grad)
    assert p.expectation(s) == pytest.approx(value.item(), rel=1e-12)


def test_coupled_truth_matches_finite_differences_and_is_fast_at_dim_16():
    p = problems.get("bernoulli-coupled")
    s = CoupledSetting(theta=(0.5, -0.3, 1.1), dim=3, w_seed=2)
    grad = p.true_gradient(s, CTX)["theta"]
    h = 1e-6
    for i in range(3):
        up = list(s.theta)
        down = list(s.theta)
        up[i] += h
        down[i] -= h
        fd = (p.exact(CoupledSetting(tuple(up), 3, 2))[0] - p.exact(CoupledSetting(tuple(down), 3, 2))[0]) / (2 * h)
        assert grad[i].item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-9)
    w, c = coupling(3, 2)
    assert torch.equal(w, w.T) and c.shape == (3,)
    import time

    start = time.perf_counter()
    p.true_gradient(CoupledSetting(0.2, 16, 0), CTX)  # 65,536 outcomes
    assert time.perf_counter() - start < 5  # the issue asks for under a second; 5 s leaves room for a loaded machine


def test_categorical_closed_form_matches_enumeration():
    p = problems.get("categorical-quadratic")
    s = CategoricalSetting(theta=1.3, t=0.6, K=3, dim=2)
    free = p.logits(s, torch.float64)[:-1].expand(2, 2).clone().requires_grad_(True)
    c = outcomes(2, 3).long()
    prob = p.distribution(free).log_prob(c).exp()
    value = (prob * p.f(s, CTX)(c)).sum()
    (grad,) = torch.autograd.grad(value, free)
    torch.testing.assert_close(p.true_gradient(s, CTX)["theta"], grad.reshape(-1))
    assert p.expectation(s) == pytest.approx(value.item(), rel=1e-12)


@pytest.mark.parametrize("power", [1.5, 2.0, 3.0])
def test_polynomial_f_and_its_two_derivatives_are_the_formulas_and_zero_at_t(power):
    """f(b) = mean |b - t|^p at relaxed points: its value and first two derivatives are the formulas' (REBAR and
    RELAX differentiate it twice while learning), and 0 where b = t, where |x|^p's second derivative is infinite
    for p < 2 and autograd's would be NaN."""
    t, dim = 0.45, 4
    f = problems.get("bernoulli-polynomial").f(PolynomialSetting(theta=0.0, t=t, power=power, dim=dim), CTX)
    b = torch.tensor([[t, 0.2, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    value = f(b)
    (grad,) = torch.autograd.grad(value.sum(), b, create_graph=True)
    hessian = torch.stack([torch.autograd.grad(grad[0, i], b, retain_graph=True)[0][0] for i in range(dim)])
    x = (b.detach() - t)[0]
    expected_grad = torch.where(x == 0, 0.0, power * x.abs() ** (power - 1) * x.sign() / dim)
    expected_second = torch.where(x == 0, 0.0, power * (power - 1) * x.abs() ** (power - 2) / dim)
    torch.testing.assert_close(value, (x.abs() ** power).mean().reshape(1))
    torch.testing.assert_close(grad[0], expected_grad)
    torch.testing.assert_close(hessian, torch.diag(expected_second))


# -- unbiased estimators: their mean is the exact gradient ------------------------

CASES = [(prob, s, est) for prob, s in SETTINGS for est in UNBIASED
         if not (est in BERNOULLI_ONLY and prob.startswith("categorical"))]


@pytest.mark.parametrize("problem,setting,estimator", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_unbiased_estimators_match_the_exact_gradient(problem, setting, estimator):
    g = draws(problem, setting, estimator, n=3, R=20_000, seed=11)
    truth = problems.get(problem).true_gradient(setting, CTX)["theta"]
    if estimator == "exact":
        torch.testing.assert_close(g, truth.expand_as(g), rtol=1e-12, atol=1e-14)
        return
    se = g.std(0) / math.sqrt(len(g))
    z = ((g.mean(0) - truth) / se).abs()
    assert z.max() < z_bound(len(z)), (z, truth)


@pytest.mark.parametrize("estimator", ["gumbel-softmax", "straight-through"])
@pytest.mark.parametrize("problem,setting", [SETTINGS[0], SETTINGS[2]], ids=["bernoulli", "categorical"])
def test_relaxed_estimators_are_shown_biased(problem, setting, estimator):
    """At temperature 1 both relaxations are biased: some coordinate's mean is far (|z| > 10)
    from the exact gradient at R = 20,000 (they would pass as unbiased at |z| < 4)."""
    g = draws(problem, setting, estimator, n=3, R=20_000, seed=5, temperature=1.0)
    truth = problems.get(problem).true_gradient(setting, CTX)["theta"]
    z = ((g.mean(0) - truth) / (g.std(0) / math.sqrt(len(g)))).abs()
    assert z.max() > 10, z


# -- exact variances on bernoulli-quadratic ----------------------------------------

def _reinforce_like(theta: float, t: float, n: int, loo: bool) -> list[tuple[float, float]]:
    """(probability, estimate) of every outcome of n draws, dim 1."""
    p = 1 / (1 + math.exp(-theta))
    out = []
    for bs in itertools.product((0, 1), repeat=n):
        prob = math.prod(p if b else 1 - p for b in bs)
        fs = [(b - t) ** 2 for b in bs]
        scores = [b - p for b in bs]  # d log p(b) / d theta
        base = [(sum(fs) - fs[i]) / (n - 1) if loo else 0.0 for i in range(n)]
        out.append((prob, sum((fs[i] - base[i]) * scores[i] for i in range(n)) / n))
    return out


def _disarm(theta: float, t: float, n: int) -> list[tuple[float, float]]:
    """(probability, estimate) of every outcome of n antithetic pairs, dim 1: the pair (b, b')
    is (1, 1) with probability max(0, 2p - 1), (1, 0) and (0, 1) with min(p, 1 - p) each,
    (0, 0) with max(0, 1 - 2p); DisARM depends on the pair only."""
    p = 1 / (1 + math.exp(-theta))
    pairs = {(1, 1): max(0.0, 2 * p - 1), (1, 0): min(p, 1 - p), (0, 1): min(p, 1 - p), (0, 0): max(0.0, 1 - 2 * p)}
    sig = 1 / (1 + math.exp(-abs(theta)))

    def g(b1: int, b2: int) -> float:
        return 0.5 * ((b1 - t) ** 2 - (b2 - t) ** 2) * (-1) ** b2 * (b1 != b2) * sig

    out = []
    for combo in itertools.product(pairs, repeat=n):
        out.append((math.prod(pairs[c] for c in combo), sum(g(*c) for c in combo) / n))
    return out


def _moments(dist: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(mean, variance, fourth central moment) of a finite distribution."""
    mean = sum(p * x for p, x in dist)
    return mean, sum(p * (x - mean) ** 2 for p, x in dist), sum(p * (x - mean) ** 4 for p, x in dist)


@pytest.mark.parametrize("theta", [0.0, -1.5])
def test_measured_variances_match_the_exact_variances(theta):
    """reinforce, reinforce-loo and disarm on bernoulli-quadratic (dim 1, n = 3): the runner's
    sample variance against the exact variance; the tolerance is z times the standard error of a
    sample variance, sqrt((m4 - (R - 3)/(R - 1) v^2) / R), from the exact moments."""
    t, n, R = 0.45, 3, 40_000
    s = BernoulliSetting(theta=theta, t=t, dim=1)
    exact = {"reinforce": _reinforce_like(theta, t, n, loo=False), "reinforce-loo": _reinforce_like(theta, t, n, loo=True),
             "disarm": _disarm(theta, t, n)}
    z = z_bound(2 * len(exact))
    truth = problems.get("bernoulli-quadratic").true_gradient(s, CTX)["theta"].item()
    for name, dist in exact.items():
        mean, v, m4 = _moments(dist)
        assert mean == pytest.approx(truth, abs=1e-12), name  # the enumeration itself is unbiased
        g = draws("bernoulli-quadratic", s, name, n=n, R=R, seed=3)[:, 0]
        if v < 1e-20:  # DisARM at theta = 0 in one dimension: every pair is (1, 0) or (0, 1), one value
            assert g.var().item() < 1e-20, name
            continue
        se = math.sqrt((m4 - (R - 3) / (R - 1) * v**2) / R)
        assert abs(g.var().item() - v) < z * se, (name, g.var().item(), v, se)
        assert abs(g.mean().item() - truth) < z * math.sqrt(v / R), name
    assert _moments(exact["disarm"])[1] < _moments(exact["reinforce-loo"])[1]  # what the DisARM paper reports


# -- through the command line ------------------------------------------------------

def test_f_evals_and_options_reach_the_rows(tmp_path):
    import pandas as pd

    out = tmp_path / "r.csv"
    assert main(["run", "--problem", "bernoulli-quadratic", "--estimator", "reinforce", "disarm", "gumbel-softmax",
                 "exact", "--temperature", "0.5", "2", "--dim", "3", "--n-samples", "4", "--replicates", "50",
                 "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    evals = df.groupby("estimator")["f_evals"].first().to_dict()
    assert evals == {"reinforce": 4, "disarm": 8, "gumbel-softmax": 4, "exact": 8}  # exact: 2^3 outcomes
    gumbel = df[df["estimator"] == "gumbel-softmax"]
    assert sorted(gumbel["estimator_options"]) == ["temperature=0.5", "temperature=2.0"]
    assert set(df[df["estimator"] == "exact"]["variance"]) == {0.0} and set(df[df["estimator"] == "exact"]["bias_z"]) == {0}


def test_rebar_and_relax_learn_during_the_warm_up_then_freeze():
    """The control variate's parameters move during all warm-up calls but the last and stay fixed after."""
    from estimators.relax import Rebar

    LEARN_CALLS = Rebar.warmup_calls - 1

    p, s = problems.get("bernoulli-coupled"), SETTINGS[1][1]
    for name in ("rebar", "relax"):
        est, state = estimators.get(name), None
        torch.manual_seed(0)
        history = []
        for _ in range(LEARN_CALLS + 3):
            state = p.chunk(est, s, None, 3, 100, state, CTX).state
            history.append([q.clone() for q in state["params"]])
        assert not torch.equal(history[0][0], history[LEARN_CALLS - 1][0]), name  # eta learned
        for later in history[LEARN_CALLS:]:
            assert all(torch.equal(a, b) for a, b in zip(history[LEARN_CALLS - 1], later, strict=True)), name


@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_rebar_and_relax_learn_from_the_gradient_of_the_estimates_second_moment(name):
    """While learning, the estimate as a function of the control variate's parameters is the papers', one per
    batch element, g = mean over draws of [f(b) - c(z~)] d log p(b) + d c(z) - d c(z~) (z~'s own dependence on
    the logits included, the weight's not), and the learning step's gradient in those parameters is that of
    sum g^2: both against the formula differentiated in the logits draw by draw, in float64."""
    from torch.distributions import Bernoulli, Independent

    gen = torch.Generator().manual_seed(3)
    n, B, D = 3, 5, 4
    logits = torch.randn(B, D, dtype=torch.float64, generator=gen)
    u, v = (torch.rand(n, B, D, dtype=torch.float64, generator=gen).clamp(1e-6, 1 - 1e-6) for _ in range(2))
    w = torch.randn(D, dtype=torch.float64, generator=gen)

    def f(x):  # [..., D] -> [...]: not linear, so c's derivatives depend on where it is evaluated
        return torch.sin(x @ w) + ((x - 0.3) ** 2).sum(-1)

    est = estimators.get(name)
    dist = Independent(Bernoulli(logits=logits), 1)
    params = [q.requires_grad_(True) for q in est.init_params(D, logits)]
    params[0] = (params[0] * 1.3).detach().requires_grad_(True)  # eta != 1
    if name == "relax":
        params[-1] = torch.randn(params[-1].shape, dtype=torch.float64, generator=gen).requires_grad_(True)
    b = (logits + torch.log(u) - torch.log1p(-u) > 0).to(logits.dtype)
    g = est.learning_gradient(params, dist, f, n, est.learning_parts(logits, u, v), f(b), 1)
    got = torch.autograd.grad((g * g).sum(), params)

    per_draw = logits.expand(n, B, D).clone().requires_grad_(True)  # the formula, draw by draw
    p = torch.sigmoid(per_draw)
    z = per_draw + torch.log(u) - torch.log1p(-u)
    v_cond = torch.where(b > 0, v * p + (1 - p), v * (1 - p)).clamp(1e-6, 1 - 1e-6)
    z_cond = per_draw + torch.log(v_cond) - torch.log1p(-v_cond)
    c_z, c_cond = (est.control(params, f, x, dist, n) for x in (z, z_cond))
    grad = [torch.autograd.grad(y.sum(), per_draw, create_graph=True)[0]
            for y in (Bernoulli(logits=per_draw).log_prob(b).sum(-1), c_z, c_cond)]
    want_g = ((f(b) - c_cond).unsqueeze(-1) * grad[0] + grad[1] - grad[2]).mean(0)
    torch.testing.assert_close(g, want_g, rtol=1e-10, atol=1e-12)
    want = torch.autograd.grad((want_g * want_g).sum(), params)
    for a, e in zip(got, want, strict=True):
        assert e.abs().max() > 1e-3  # every parameter is learned
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("argv,message", [
    (["--problem", "bernoulli-quadratic", "--theta", "inf"], "theta must be a finite number, got theta=inf"),
    (["--problem", "bernoulli-coupled", "--dim", "21"], "bernoulli-coupled: dim must be <= 20, got dim=21"),
    (["--problem", "categorical-quadratic", "--K", "1"], "K must be >= 2, got K=1"),
    (["--estimator", "gumbel-softmax", "--temperature", "0"], "temperature must be > 0, got temperature=0"),
])
def test_bad_discrete_input_is_one_line(tmp_path, capsys, argv, message):
    assert main(["run", *argv, "--out", str(tmp_path / "r.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_suffix_logsumexp_is_logcumsumexp_reversed_on_narrow_and_wide_rows(dtype):
    """stick-breaking-disarm's tails: on rows whose logits span less than DIRECT_SPREAD, the direct sum of
    exp(theta - max); on wider rows (a spread of 2,000, a class of probability 0), torch.logcumsumexp. Both
    give logsumexp(theta_{j..K}) and its gradient (the narrow rows against the float64 reference)."""
    from estimators.discrete import DIRECT_SPREAD, suffix_logsumexp

    narrow = torch.randn(6, 3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    wide = narrow.clone()
    wide[0, 0, 2], wide[1, 1, 6], wide[2, 2, 0] = 2000.0, -float("inf"), -30.0
    assert (narrow.amax(-1) - narrow.amin(-1)).max() < DIRECT_SPREAD[dtype]
    weights = torch.randn(narrow.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for rows in (narrow, wide):
        x = rows.to(dtype).requires_grad_(True)
        got = suffix_logsumexp(x)
        (grad,) = torch.autograd.grad((got * weights.to(dtype)).nan_to_num(0.0).sum(), x)
        # narrow rows against float64's logcumsumexp; wide ones are logcumsumexp itself, in their own dtype
        ref_x = (rows if rows is narrow else rows.to(dtype)).clone().requires_grad_(True)
        want = torch.logcumsumexp(ref_x.flip(-1), -1).flip(-1)
        (want_grad,) = torch.autograd.grad((want * weights.to(ref_x.dtype)).nan_to_num(0.0).sum(), ref_x)
        tol = dict(rtol=2e-6, atol=2e-5) if dtype == torch.float32 and rows is narrow else dict(rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(got.double(), want.detach().double(), **tol)
        torch.testing.assert_close(grad.double(), want_grad.double(), equal_nan=True, **tol)  # nan at -inf, as logcumsumexp


def test_the_truths_outcomes_are_itertools_products_in_its_order():
    """benchmarks.problems.discrete.outcomes (the enumerated truths' outcomes, made in tensors) against
    itertools.product, Bernoulli and three classes."""
    import itertools

    from benchmarks.problems.discrete import outcomes

    for dim, classes in [(1, 2), (5, 2), (3, 3)]:
        expected = torch.tensor(list(itertools.product(range(classes), repeat=dim)), dtype=torch.float64)
        assert torch.equal(outcomes(dim, classes), expected)
