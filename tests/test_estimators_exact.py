"""Tier 1: exact algebra on a few samples with a fixed seed.

Is the gradient of each surrogate exactly the estimator's formula, computed by
hand from the same samples? Normal.sample() and rsample() draw from the same
random stream, so re-seeding reproduces the estimator's samples.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal

import estimators
from estimators import EstimatorError

N, D = 5, 3

BUILTIN_NAMES = [n for n, c in estimators.ESTIMATORS.classes().items() if c.__module__ == "estimators.builtin"]

K = 0.7


def f(x: torch.Tensor) -> torch.Tensor:  # [n, D] -> [n]
    return ((x - K) ** 2).sum(-1)


def setup():
    mu = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64, requires_grad=True)
    return mu, sigma, Independent(Normal(mu, sigma), 1)


def samples(seed: int) -> torch.Tensor:
    mu, sigma, dist = setup()
    torch.manual_seed(seed)
    return dist.sample((N,))  # [N, D]


def grads(name: str, seed: int, state=None):
    mu, sigma, dist = setup()
    torch.manual_seed(seed)
    sur = estimators.get(name)(dist, f, N, state)
    g_mu, g_sigma = torch.autograd.grad(sur.loss, (mu, sigma))
    return sur, g_mu, g_sigma


def score_terms(x: torch.Tensor):
    mu, sigma, _ = setup()
    mu, sigma = mu.detach(), sigma.detach()
    d_mu = (x - mu) / sigma**2  # d/dmu log N(x; mu, sigma)
    d_sigma = ((x - mu) ** 2 - sigma**2) / sigma**3  # d/dsigma log N
    return d_mu, d_sigma


def test_reparameterization_is_pathwise_formula():
    x = samples(1)
    sur, g_mu, g_sigma = grads("reparameterization", 1)
    mu, sigma, _ = setup()
    eps = (x - mu.detach()) / sigma.detach()
    torch.testing.assert_close(g_mu, (2 * (x - K)).mean(0))
    torch.testing.assert_close(g_sigma, (2 * (x - K) * eps).mean(0))
    torch.testing.assert_close(sur.loss, f(x).mean())


@pytest.mark.parametrize("name", ["reinforce", "reinforce-loo", "reinforce-ema"])
def test_score_function_formulas(name):
    x = samples(2)
    fx = f(x)
    if name == "reinforce":
        b = torch.zeros(N, dtype=torch.float64)
        state = None
    elif name == "reinforce-loo":
        b = (fx.sum() - fx) / (N - 1)
        state = None
    else:
        state = torch.tensor(3.25, dtype=torch.float64)
        b = state.expand(N)
    sur, g_mu, g_sigma = grads(name, 2, state)
    d_mu, d_sigma = score_terms(x)
    w = (fx - b)[:, None]
    torch.testing.assert_close(g_mu, (w * d_mu).mean(0))
    torch.testing.assert_close(g_sigma, (w * d_sigma).mean(0))
    # the surrogate's value is the plain Monte Carlo estimate of E f
    torch.testing.assert_close(sur.loss, fx.mean())
    torch.testing.assert_close(sur.f, fx)


def test_ema_state_is_explicit_and_updated_after_use():
    est = estimators.get("reinforce-ema")
    assert est.init_state() is None
    x = samples(3)
    sur0, _, _ = grads("reinforce-ema", 3, None)
    torch.testing.assert_close(sur0.state, f(x).mean())  # first call: b := mean f
    prev = torch.tensor(10.0, dtype=torch.float64)
    sur1, _, _ = grads("reinforce-ema", 3, prev)
    torch.testing.assert_close(sur1.state, est.decay * prev + (1 - est.decay) * f(x).mean())
    with pytest.raises(ValueError, match="decay"):
        estimators.ReinforceEMA(decay=1.0)


def test_decoder_parameters_get_their_plain_gradient_under_score_function():
    """A parameter of f itself (a decoder's) gets mean(grad f) from a score surrogate."""
    mu, sigma, dist = setup()
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(4)
    x = dist.sample((N,))
    torch.manual_seed(4)
    sur = estimators.get("reinforce")(dist, lambda x: w * f(x), N)
    (g_w,) = torch.autograd.grad(sur.loss, (w,))
    torch.testing.assert_close(g_w, f(x).mean())


def test_reparameterization_needs_rsample():
    for dist in (Bernoulli(probs=torch.tensor([0.3])), Categorical(probs=torch.tensor([0.2, 0.8]))):
        with pytest.raises(EstimatorError, match=r"reparameterization.*(Bernoulli|Categorical).*rsample") as info:
            estimators.get("reparameterization")(dist, lambda x: x.float().sum(-1) if x.dim() > 1 else x.float(), 2)
        assert info.value.capability


def test_score_function_works_on_discrete_distributions():
    p = torch.tensor([0.3, 0.6], requires_grad=True)
    dist = Independent(Bernoulli(probs=p), 1)
    torch.manual_seed(0)
    sur = estimators.get("reinforce-loo")(dist, lambda x: x.sum(-1), 4)
    (g,) = torch.autograd.grad(sur.loss, (p,))
    assert g.shape == p.shape and torch.isfinite(g).all()


def test_leave_one_out_needs_two_samples():
    _, _, dist = setup()
    with pytest.raises(EstimatorError, match=r"reinforce-loo.*n_samples >= 2.*n_samples=1.*Independent\(Normal\)"):
        estimators.get("reinforce-loo")(dist, f, 1)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_function_returning_wrong_shape_is_a_clear_error(name):
    _, _, dist = setup()
    with pytest.raises(EstimatorError, match=r"f must return one value per sample, shape \(5,\).*got \(5, 3\)"):
        estimators.get(name)(dist, lambda x: x**2, N)


def test_n_samples_below_one_is_rejected():
    _, _, dist = setup()
    with pytest.raises(EstimatorError, match="n_samples >= 1, got n_samples=0"):
        estimators.get("reinforce")(dist, f, 0)


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert estimators.available()[:4] == BUILTIN_NAMES == ["reparameterization", "reinforce", "reinforce-loo", "reinforce-ema"]
    message = r"'reinforse'.*Did you mean 'reinforce'.*Valid estimators: reparameterization, reinforce"
    with pytest.raises(estimators.UnknownNameError, match=message):
        estimators.get("reinforse")


def _score_cases():
    """(dist, its parameters, draws [n, *B, *E]): plain Normal, Independent over the last dim, and a loc
    broadcast along the batch (the draws' shape larger than the parameters')."""
    g = torch.Generator().manual_seed(3)
    loc = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    scale = (torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    row = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    yield Normal(loc, scale), (loc, scale)
    yield Independent(Normal(loc, scale), 1), (loc, scale)
    yield Independent(Normal(row, scale), 1), (row, scale)


@pytest.mark.parametrize("case", range(3))
def test_score_delta_is_the_normal_log_density_gradient(case):
    """estimators.scores.score_delta: value 0, gradient (weighted by any cotangent), second derivative
    and vmapped vector-Jacobian products those of torch's Normal log_prob, which it skips computing."""
    from estimators.scores import score_delta

    dist, params = list(_score_cases())[case]
    torch.manual_seed(case)
    x = dist.sample((5,))
    delta, log_prob = score_delta(dist, x), dist.log_prob(x)
    assert delta.shape == log_prob.shape and not delta.detach().any()
    w = torch.randn(log_prob.shape, dtype=torch.float64)
    got = torch.autograd.grad((w * delta).sum(), params, create_graph=True)
    want = torch.autograd.grad((w * log_prob).sum(), params, create_graph=True)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    second = [torch.autograd.grad((g * g).sum(), params, retain_graph=True) for g in (got[0], want[0])]
    for a, b in zip(*second, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    def vjp_of(fn):
        return torch.func.vmap(torch.func.vjp(lambda *p: fn(_rebuilt(dist, p), x), *params)[1])

    ws = torch.randn(2, *log_prob.shape, dtype=torch.float64)
    mine = vjp_of(score_delta)(ws)
    theirs = vjp_of(lambda d, v: d.log_prob(v))(ws)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _rebuilt(dist, params):
    base = Normal(*params, validate_args=False)
    return Independent(base, dist.reinterpreted_batch_ndims) if isinstance(dist, Independent) else base


def test_score_delta_falls_back_where_draws_carry_a_gradient():
    from estimators.scores import score_delta

    loc = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    dist = Normal(loc, torch.ones(3, dtype=torch.float64))
    x = dist.rsample((2,))  # depends on loc: the gradient of log p(x) includes the path through x
    (got,) = torch.autograd.grad(score_delta(dist, x).sum(), loc)
    lp = dist.log_prob(x)
    (want,) = torch.autograd.grad((lp - lp.detach()).sum(), loc)
    torch.testing.assert_close(got, want)


def test_measure_valued_calls_f_on_as_many_draws_as_f_of_x():
    """measure-valued evaluates f at 4 x D perturbed copies of its n draws; it hands them to f n draws a call, the
    size of f(x) that a problem sizes its chunks for (all at once, the digits VAE's decoder activations were 32x its
    chunk's and each cell twice as slow). f's values are row by row, so the estimate is the one of a single call."""
    mu, sigma, dist = setup()
    sizes: list[int] = []

    def recorded(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return f(x)

    torch.manual_seed(0)
    est = estimators.get("measure-valued")
    g_split = torch.autograd.grad(est(dist, recorded, N).loss, (mu, sigma))
    assert max(sizes) == N and sum(sizes) == N + 4 * D * N, sizes

    row_by_row = lambda x: torch.cat([f(x[i:i + 1]) for i in range(x.shape[0])])  # noqa: E731
    mu2, sigma2, dist2 = setup()
    torch.manual_seed(0)
    g_rows = torch.autograd.grad(est(dist2, row_by_row, N).loss, (mu2, sigma2))
    for a, b in zip(g_split, g_rows, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # torch.compile
def test_made_once_caches_eagerly_and_is_called_past_the_cache_under_compile():
    """estimators.base.made_once: eagerly one call per argument (the same tensor back); inside torch.compile the
    function itself, so dynamo does not warn of tracing through lru_cache (the warning reached estbench perf)."""
    import warnings

    from estimators.base import made_once

    calls: list[int] = []

    @made_once(maxsize=4)
    def grid(n: int) -> torch.Tensor:
        calls.append(n)
        return torch.arange(n)

    assert grid(3) is grid(3) and calls == [3]
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = torch.compile(lambda x: x + grid(3))(torch.ones(3, dtype=torch.long))
    assert torch.equal(out, torch.arange(3) + 1)
    assert not [w for w in caught if "lru_cache" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
def test_exact_is_the_sum_over_outcomes_and_an_f_writing_its_input_spoils_no_later_call(kind):
    """exact's gradient against the sum of p(b) f(b) over itertools.product's outcomes with the distribution's own
    log_prob; its outcomes come from a cache (estimators.discrete.outcome_grid), so an f that overwrites the
    outcomes it is handed must not change the next call's (fails if the cached grid itself is handed to f)."""
    import itertools

    gen = torch.Generator().manual_seed(5)
    classes = 2 if kind == "bernoulli" else 3
    logits = torch.randn(4, 3, *([classes] if kind == "categorical" else []), dtype=torch.float64, generator=gen)
    logits.requires_grad_(True)
    make = (lambda lg: Independent(Bernoulli(logits=lg), 1)) if kind == "bernoulli" else \
        (lambda lg: Independent(Categorical(logits=lg), 1))  # noqa: E731
    weights = torch.randn(3, dtype=torch.float64, generator=gen)

    def f(x):
        return (x.to(torch.float64) * weights).sum(-1) ** 2

    def f_writing(x):
        out = f(x)
        x.as_strided((x.shape[0], x.shape[-1]), (x.stride(0), x.stride(-1))).fill_(1)  # an expanded view's outcomes
        return out

    outcomes = torch.tensor(list(itertools.product(range(classes), repeat=3)), dtype=torch.float64)
    values = outcomes if kind == "bernoulli" else outcomes.long()
    expected = (make(logits).log_prob(values[:, None].expand(-1, 4, 3)).exp() * f(values)[:, None]).sum(0)
    (want,) = torch.autograd.grad(expected.sum(), logits)
    exact = estimators.get("exact")
    (first,) = torch.autograd.grad(exact(make(logits), f_writing, 1).loss.sum(), logits)
    (second,) = torch.autograd.grad(exact(make(logits), f, 1).loss.sum(), logits)
    torch.testing.assert_close(first, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(second, want, rtol=1e-12, atol=1e-12)
