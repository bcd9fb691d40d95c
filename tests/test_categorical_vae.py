"""The categorical VAE (benchmarks.problems.categorical_vae): its enumerated ELBO and exact gradient
checked independently, and every unbiased categorical estimator held to that gradient."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import estimators
from benchmarks import problems, runner
from benchmarks.problems import Context, VAESetting
from benchmarks.problems.categorical_vae import CLASSES, category_grid, kl_to_uniform
from benchmarks.sweep import Sweep

from .statutil import z_bound

CTX = Context(dtype=torch.float64)
SMALL = VAESetting("untrained", 32, 3, 6)


@pytest.mark.slow
def test_the_closed_form_kl_and_the_enumerated_elbo_agree_with_torch_and_monte_carlo():
    problem = problems.get("vae-digits-categorical")
    model = problem.model(SMALL, CTX).to(torch.float64)
    x = problem.batch(SMALL, CTX).to(torch.float64)
    q = model.q(x)
    uniform = model.prior_like(q)
    torch.testing.assert_close(kl_to_uniform(q.base_dist.logits), torch.distributions.kl_divergence(q, uniform))
    assert category_grid(SMALL.latent, CLASSES).unique(dim=0).shape[0] == CLASSES**SMALL.latent
    exact = model.exact_elbo(x)
    torch.manual_seed(0)
    z = q.sample((200_000,))  # [m, B, D] class indices
    draws = model.log_likelihood(x)(z) - kl_to_uniform(q.base_dist.logits)
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert ((draws.mean(0) - exact).abs() / se).max() < z_bound(x.shape[0])


def test_the_exact_estimator_reproduces_the_enumerated_gradient():
    """Two independent routes to the same number: the ``exact`` estimator's sum over the grid through the problem's
    f, against the enumerated ELBO's gradient (BinaryVAE's shared exact_gradient)."""
    df = pd.DataFrame(runner.run(Sweep(problem=["vae-digits-categorical"], estimator=["exact"], n_samples=[1],
                                       replicates=32, seed=0, dtype="float64", checkpoint=["untrained"], hidden=[32],
                                       latent=[3], batch=[6], train_steps=0).validate()))
    assert df["status"].eq("ok").all() and (df["reference"] == "exact").all()
    assert df["variance"].iloc[0] == 0 and df["agreement_z"].iloc[0] < 1e-3


@pytest.mark.slow
def test_every_unbiased_categorical_estimator_matches_the_exact_gradient():
    names = [e for e in estimators.available() if estimators.get_class(e).unbiased is True and not
             estimators.get_class(e).library and estimators.get_class(e).unsupported("categorical") is None
             and e != "exact"]
    assert {"reinforce-loo", "unordered-set", "sum-and-sample", "stick-breaking-disarm"} <= set(names)
    df = pd.DataFrame(runner.run(Sweep(problem=["vae-digits-categorical"], estimator=names, n_samples=[2],
                                       replicates=2000, seed=1, dtype="float64", checkpoint=["untrained"], hidden=[32],
                                       latent=[3], batch=[6], train_steps=0).validate()))
    ok = df[df["status"] == "ok"]
    assert set(ok["estimator"]) == set(names), df[["estimator", "status", "error"]]
    coords = sum(p.numel() for p in problems.get("vae-digits-categorical").model(SMALL, CTX).encoder.parameters())
    # the largest |z| over the encoder's coordinates, and the coordinate-averaged bias z, within the bound for a
    # false-failure rate of 1e-3 over every coordinate x estimator
    bound = z_bound(coords * len(ok))
    assert (ok["reference"] == "exact").all()
    assert ok["agreement_z"].max() < bound, ok[["estimator", "agreement_z"]]
    assert ok["bias_z"].abs().max() < z_bound(len(ok)), ok[["estimator", "bias_z"]]
