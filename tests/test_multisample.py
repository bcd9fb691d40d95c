"""The multi-sample objective: the bound's exact truths checked independently, the estimators of
the bound on the digits VAEs, and the interface's refusals."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import estimators
from benchmarks import problems, runner
from benchmarks.problems import Context
from benchmarks.problems.binary_vae import configurations
from benchmarks.problems.multisample import BernoulliMultiSample, GaussianIWAE, IWAESetting, MultiSampleSetting
from benchmarks.problems.multisample_vae import VAEBoundSetting, exact_bound
from benchmarks.sweep import Sweep
from estimators import Bound

from .statutil import z_bound

CTX = Context(dtype=torch.float64)


def test_bound_value_is_log_mean_exp():
    lw = torch.tensor([[[0.0], [math.log(3.0)]]], dtype=torch.float64)  # [n=1, K=2, B=1]
    assert Bound.value(lw).item() == pytest.approx(math.log(2.0))


def test_bernoulli_multisample_truth_matches_a_plain_monte_carlo_of_the_bound():
    """The enumerated bound against 200,000 draws of K = 3 samples (z-test, false-failure rate 1e-3)."""
    s = MultiSampleSetting(theta=(0.4, -1.1), t=0.3, dim=2, K=3)
    value, _ = BernoulliMultiSample().exact(s)
    gen = torch.Generator().manual_seed(0)
    p = torch.sigmoid(torch.tensor([0.4, -1.1], dtype=torch.float64))
    b = (torch.rand((200_000, 3, 2), generator=gen, dtype=torch.float64) < p).to(torch.float64)
    lw = ((b - 0.3) ** 2).sum(-1)
    draws = torch.logsumexp(lw, 1) - math.log(3)
    assert abs(draws.mean().item() - value.item()) <= z_bound() * draws.std().item() / math.sqrt(len(draws))


def test_bernoulli_multisample_gradient_matches_finite_differences():
    s = MultiSampleSetting(theta=(0.4, -1.1), t=0.3, dim=2, K=3)
    _, grad = BernoulliMultiSample().exact(s)
    h = 1e-6
    for j in range(2):
        up, down = list(s.theta), list(s.theta)
        up[j] += h
        down[j] -= h
        fd = (BernoulliMultiSample().exact(MultiSampleSetting(tuple(up), 0.3, 2, 3))[0]
              - BernoulliMultiSample().exact(MultiSampleSetting(tuple(down), 0.3, 2, 3))[0]) / (2 * h)
        assert grad[j].item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-9)


def test_gaussian_iwae_quadrature_agrees_with_the_closed_form_at_k1_and_with_monte_carlo_at_k3():
    p = GaussianIWAE()
    one = p.exact(IWAESetting(mu=0.3, sigma=0.8, a=1.0, dim=1, K=1))
    assert one[1].item() == pytest.approx(0.7) and one[2].item() == pytest.approx(1 / 0.8 - 0.8)
    value, g_mu, g_sigma = p.exact(IWAESetting(mu=0.3, sigma=0.8, a=1.0, dim=1, K=3))
    gen = torch.Generator().manual_seed(1)
    x = 0.3 + 0.8 * torch.randn((400_000, 3), generator=gen, dtype=torch.float64)
    lw = -0.5 * (x - 1.0) ** 2 - torch.distributions.Normal(0.3, 0.8).log_prob(x)
    draws = torch.logsumexp(lw, 1) - math.log(3)
    assert abs(draws.mean().item() - value.item()) <= z_bound() * draws.std().item() / math.sqrt(len(draws))
    # the bound grows with K towards log Z = log sqrt(2 pi): L_1 < L_3 < log Z
    assert one[0].item() < value.item() < 0.5 * math.log(2 * math.pi)
    # two coordinates: the quadrature over dim x K = 4 variables against Monte Carlo, and K = 1's closed
    # form against the same quadrature code (forced through it)
    s2 = IWAESetting(mu=-0.2, sigma=1.3, a=0.5, dim=2, K=2)
    value2, g_mu2, _ = p.exact(s2)
    x = -0.2 + 1.3 * torch.randn((400_000, 2, 2), generator=gen, dtype=torch.float64)
    lw = (-0.5 * (x - 0.5) ** 2 - torch.distributions.Normal(-0.2, 1.3).log_prob(x)).sum(-1)
    draws = torch.logsumexp(lw, 1) - math.log(2)
    assert abs(draws.mean().item() - value2.item()) <= z_bound() * draws.std().item() / math.sqrt(len(draws))
    assert torch.allclose(g_mu2[0], g_mu2[1])  # the two coordinates are exchangeable
    from benchmarks.problems.multisample import _iwae_quadrature

    closed = p.exact(IWAESetting(mu=0.3, sigma=0.8, a=1.0, dim=2, K=1))
    quad = _iwae_quadrature(IWAESetting(mu=0.3, sigma=0.8, a=1.0, dim=2, K=1))
    assert all(torch.allclose(c, q, atol=1e-10) for c, q in zip(closed, quad, strict=True))


@pytest.mark.slow
def test_exact_bound_at_k1_is_the_enumerated_elbo_and_grows_with_k():
    problem = problems.get("vae-digits-binary-multisample")
    s = VAEBoundSetting("untrained", 32, 3, 8, 1)
    model = problem.model(s, CTX).to(torch.float64)
    x = problem.batch(s, CTX).to(torch.float64)
    assert torch.allclose(exact_bound(model, x, 1), model.exact_elbo(x), atol=1e-10, rtol=0)
    b2, b3 = exact_bound(model, x, 2), exact_bound(model, x, 3)
    assert (b2 > model.exact_elbo(x)).all() and (b3 > b2).all()
    z = configurations(3)  # log p(x) by enumeration bounds every L_K from above
    log_px = torch.logsumexp(model.log_joint(x)(z[:, None, :].expand(len(z), len(x), 3)), 0)
    assert (b3 < log_px).all()


@pytest.mark.parametrize("k", [2, 4])
def test_every_unbiased_bound_estimator_matches_the_exact_gradient_on_the_binary_vae(k):
    """latent 4 (16 configurations, 16^K tuples enumerated), hidden 32, batch 8, R = 2000, float64:
    the largest |z| over the encoder's coordinates within the bound for a false-failure rate of 1e-3."""
    names = [e for e in estimators.available() if estimators.get_class(e).unbiased is True
             and estimators.MULTI_SAMPLE in estimators.get_class(e).objectives
             and estimators.get_class(e).unsupported("bernoulli", estimators.MULTI_SAMPLE) is None]
    rows = runner.run(Sweep(problem=["vae-digits-binary-multisample"], estimator=names, n_samples=[1], replicates=2000,
                            seed=3, dtype="float64", checkpoint=["untrained"], hidden=[32], latent=[4], batch=[8],
                            K=[k], train_steps=0))  # gradients only: no training curves
    assert {r["estimator"] for r in rows} == set(names) and {r["status"] for r in rows} == {"ok"}
    coords = sum(p.numel() for p in problems.get("vae-digits-binary-multisample").model(
        VAEBoundSetting("untrained", 32, 4, 8, k), CTX).encoder.parameters())
    bound = z_bound(coords * len(rows))
    for r in rows:
        assert r["reference"] == "exact"
        assert r["agreement_z"] < bound, (r["estimator"], r["agreement_z"], bound)


def test_beyond_the_enumeration_the_binary_bound_is_compared_with_vimco():
    s = VAEBoundSetting("untrained", 32, 8, 8, 3)  # 2^24 tuples
    assert problems.get("vae-digits-binary-multisample").true_gradient(s, CTX) is None
    assert problems.get("vae-digits-binary-multisample").reference == "vimco"


def test_an_expectation_estimator_is_skipped_on_a_bound_and_a_bound_estimator_on_an_expectation():
    rows = runner.run(Sweep(problem=["bernoulli-multisample", "bernoulli-quadratic"], estimator=["disarm", "vimco"],
                            replicates=20, K=[2]))
    status = {(r["problem"], r["estimator"]): (r["status"], r["error"]) for r in rows}
    assert status[("bernoulli-multisample", "disarm")][0] == "skipped"
    assert "the problem's is multi-sample" in status[("bernoulli-multisample", "disarm")][1]
    assert status[("bernoulli-quadratic", "vimco")][0] == "skipped"
    assert status[("bernoulli-multisample", "vimco")][0] == "ok"


def test_dreg_needs_an_importance_weight():
    dist = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(3, 2), torch.ones(3, 2)), 1)
    bound = Bound(lambda x: -(x**2).sum(-1), 4, minus_log_q=False)
    with pytest.raises(estimators.EstimatorError, match="needs a log-weight log p - log q"):
        estimators.get("dreg")(dist, bound, 1)


def test_a_problem_declaring_the_bound_without_an_axis_k_is_refused():
    from benchmarks.problems.base import PROBLEMS

    class NoK(BernoulliMultiSample):
        name = "no-k"
        axes = BernoulliMultiSample.axes[:3]

    with pytest.raises(estimators.PluginError, match="no axis K"):
        PROBLEMS.validate(NoK, "test")


def test_local_disarm_without_the_direct_part_is_caught_biased():
    """The google-research/disarm encoder loss for local-disarm, as read, keeps only the local learning
    signal: the log-weight's -log q(z|x) is not differentiated at the draws. Written that way (log q's
    parameters held fixed inside l), the encoder gradient of the bound is biased where l holds log q,
    and the exactness check above catches it."""
    from estimators.multisample import LocalDisARM

    class FixedQ(Bound):
        def log_weight(self, dist, x, q=None):
            base = dist.base_dist
            held = torch.distributions.Independent(torch.distributions.Bernoulli(logits=base.logits.detach()), 1)
            return super().log_weight(dist, x, held)

    class ScoreOnly(LocalDisARM):
        name = "local-disarm-score-only"

        def bound_surrogate(self, dist, bound, n_samples, state=None):
            return super().bound_surrogate(dist, FixedQ(bound.log_p, bound.K, bound.minus_log_q), n_samples, state)

    import estbench

    df = estbench.run("vae-digits-binary-multisample", [ScoreOnly], n_samples=[1], replicates=2000, seed=3,
                      dtype="float64", checkpoint=["untrained"], hidden=[32], latent=[4], batch=[8], K=[4], train_steps=0)
    coords = sum(p.numel() for p in problems.get("vae-digits-binary-multisample").model(
        VAEBoundSetting("untrained", 32, 4, 8, 4), CTX).encoder.parameters())
    assert df["agreement_z"].iloc[0] > z_bound(coords)


def test_vimco_and_reinforce_are_unbiased_on_a_categorical_bound():
    """A categorical bound (3 classes, K = 3, l(c) = (c - 1.2)^2 / 2, 27 joint outcomes enumerated in float64):
    the mean of 200,000 estimates of each within the z-bound of the exact gradient (false-failure rate 1e-3
    over both estimators and the three logits)."""
    import itertools

    logits0 = torch.tensor([0.3, -0.5, 0.0], dtype=torch.float64)

    def log_w(c):
        return (c.to(torch.float64) - 1.2) ** 2 / 2

    theta = logits0.clone().requires_grad_(True)
    value = 0.0
    for cs in itertools.product(range(3), repeat=3):
        c = torch.tensor(cs)
        p = torch.distributions.Categorical(logits=theta).log_prob(c).sum().exp()
        value = value + p * (torch.logsumexp(log_w(c), 0) - math.log(3))
    (truth,) = torch.autograd.grad(value, theta)
    torch.manual_seed(0)
    r = 200_000
    for name in ("vimco", "reinforce"):
        leaf = logits0.expand(r, 3).clone().requires_grad_(True)
        sur = estimators.get(name)(torch.distributions.Categorical(logits=leaf), Bound(log_w, 3, minus_log_q=False), 1)
        (g,) = torch.autograd.grad(sur.loss.sum(), leaf)
        z = (g.mean(0) - truth) / (g.std(0) / math.sqrt(r))
        assert z.abs().max().item() < z_bound(6), (name, z)


@pytest.mark.slow
def test_the_monte_carlo_reference_agrees_with_the_quadrature_and_carries_its_error_into_the_bias_z():
    """gaussian-iwae beyond its exact truth: the reference (module docstring) against the quadrature at a
    setting where both exist, within the z-bound of its own standard error (four coordinates); and a run at
    K = 16 gives each row the reference's name, a finite bias z, and no flag for iwae and dreg."""
    from benchmarks.problems.multisample import _iwae_quadrature, _iwae_reference
    from benchmarks.schema import MONTE_CARLO_REFERENCE

    s = IWAESetting(mu=-0.2, sigma=1.3, a=0.5, dim=2, K=2)
    (m, sg), (se_m, se_s) = _iwae_reference(s)
    _, q_mu, q_sigma = _iwae_quadrature(s)
    z = torch.cat([(m - q_mu) / se_m, (sg - q_sigma) / se_s]).abs().max().item()
    assert z <= z_bound(4), z
    p = GaussianIWAE()
    far = IWAESetting(mu=0.0, sigma=1.0, a=1.0, dim=1, K=16)
    assert p.exact(far) is None and p.true_gradient_se(far, CTX) is not None
    assert p.true_gradient_se(s, CTX) is None  # exact there
    df = pd.DataFrame(runner.run(Sweep(problem=["gaussian-iwae"], estimator=["iwae", "dreg"], n_samples=[1], replicates=4000,
                                       seed=2, dtype="float64", K=[16], dim=[1], a=[1.0]).validate()))
    assert (df["reference"] == MONTE_CARLO_REFERENCE).all() and df["bias_z"].notna().all()
    assert df["bias_z"].abs().max() <= z_bound(len(df)), df[["estimator", "parameter", "bias_z"]]


def test_dreg_where_the_target_is_q_is_exact_not_flagged_for_the_quadratures_roundoff():
    """At a = mu = 0, sigma = 1 the target is q: the bound is log Z at every K, its gradient 0, and dreg's
    estimates are exactly 0 (every normalized weight equal, dl/dx = 0). The quadrature gives 0 up to float64
    roundoff (1e-17); that roundoff must not make an exact estimator infinitely biased."""
    df = pd.DataFrame(runner.run(Sweep(problem=["gaussian-iwae"], estimator=["dreg"], n_samples=[1], replicates=64,
                                       seed=0, dtype="float64", K=[4], dim=[1], a=[0.0], mu=[0.0],
                                       sigma=[1.0]).validate()))
    assert (df["reference"] == "exact").all() and (df["variance"] == 0).all()
    assert (df["bias_z"] == 0).all(), df[["parameter", "bias", "bias_z"]]
