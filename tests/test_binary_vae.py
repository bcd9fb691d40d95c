"""The VAE with binary latents: binarized data, the closed-form KL, the exact ELBO and its gradient
by enumeration, the estimators against it, and training."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Independent, kl_divergence

import estimators
from benchmarks import problems, runner
from benchmarks.data import binarize, load_digits
from benchmarks.problems import BinaryVAE, Context, VAESetting
from benchmarks.problems.binary_vae import ENUMERATION_MAX_LATENT, configurations, kl_to_uniform
from benchmarks.problems.vae import train
from benchmarks.sweep import Sweep

from .statutil import z_bound

TINY = VAESetting(checkpoint="untrained", hidden=8, latent=3, batch=6)
SMALL = VAESetting(checkpoint="untrained", hidden=16, latent=4, batch=16)
UNBIASED = ["reinforce", "reinforce-loo", "reinforce-ema", "arm", "disarm", "rebar", "relax"]


def tiny_model(latent: int = 3, seed: int = 0) -> tuple[BinaryVAE, torch.Tensor]:
    data = binarize(load_digits())
    torch.manual_seed(seed)
    return BinaryVAE(data.dim, hidden=8, latent=latent).double(), data.train[:6].double()


def test_binarized_digits_are_fixed_binary_draws_of_the_grey_levels():
    grey, data = load_digits(), binarize(load_digits())
    assert set(data.train.unique().tolist()) == {0.0, 1.0} and data.test.shape == grey.test.shape
    assert torch.equal(data.train, binarize(load_digits()).train)  # the same on every call (fixed seed)
    assert (data.train[grey.train == 0] == 0).all() and (data.train[grey.train == 1] == 1).all()
    # each pixel is a Bernoulli(grey level) draw: the mean over all pixels, z-test
    p = grey.train.double()
    err = (data.train.double() - p).sum() / math.sqrt((p * (1 - p)).sum())
    assert abs(err) <= z_bound(), err


def test_closed_form_kl_equals_torch_distributions_kl():
    logits = torch.randn(5, 7, dtype=torch.float64) * 3
    want = kl_divergence(Bernoulli(logits=logits), Bernoulli(probs=torch.full_like(logits, 0.5))).sum(-1)
    torch.testing.assert_close(kl_to_uniform(logits), want, rtol=1e-12, atol=1e-12)


def test_exact_elbo_equals_a_plain_sum_over_configurations():
    """exact_elbo's matrix products against a loop over the 2^3 configurations with torch.distributions."""
    model, x = tiny_model()
    q = Independent(Bernoulli(logits=model.encoder(x)), 1)
    prior = Independent(Bernoulli(probs=torch.full((3,), 0.5, dtype=torch.float64)), 1)
    want = torch.zeros(len(x), dtype=torch.float64)
    for bits in itertools.product((0.0, 1.0), repeat=3):
        z = torch.tensor(bits, dtype=torch.float64).expand(len(x), 3)
        log_lik = Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(x)
        want += q.log_prob(z).exp() * (log_lik + prior.log_prob(z) - q.log_prob(z))
    torch.testing.assert_close(model.exact_elbo(x), want, rtol=1e-12, atol=1e-12)
    assert configurations(3).tolist() == [list(b) for b in itertools.product((0.0, 1.0), repeat=3)]


def test_exact_gradient_matches_finite_differences():
    """At latent 3 and a tiny network, the problem's exact gradient equals a float64 central difference of
    the enumerated ELBO in every encoder coordinate. Step h = 1e-5: truncation error h^2/6 |f'''| ~ 1e-11,
    rounding eps |ELBO| / h ~ 2e-16 * 50 / 1e-5 = 1e-9; the tolerance 1e-7 is 100 times that."""
    problem = problems.get("vae-digits-binary")
    ctx = Context(dtype=torch.float64, seed=2)
    truth = problem.true_gradient(TINY, ctx)["encoder"]
    model, x = problem.model(TINY, ctx), problem.batch(TINY, ctx)
    params = list(model.encoder.parameters())
    assert truth.shape == (sum(p.numel() for p in params),) and truth.abs().max() > 1e-3
    h, fd = 1e-5, []
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                keep = flat[i].item()
                flat[i] = keep + h
                up = model.exact_elbo(x).mean().item()
                flat[i] = keep - h
                down = model.exact_elbo(x).mean().item()
                flat[i] = keep
                fd.append((up - down) / (2 * h))
    torch.testing.assert_close(truth, torch.tensor(fd, dtype=torch.float64), rtol=0, atol=1e-7)


def test_decoding_each_enumerated_outcome_once_equals_decoding_every_copy():
    model, x = tiny_model()
    grid = configurations(3)  # [8, 3]
    shared = grid[:, None, None, :].expand(8, 2, len(x), 3)  # stride 0 over the batch: the shortcut
    f = model.log_likelihood(x)
    torch.testing.assert_close(f(shared), f(shared.contiguous()), rtol=1e-12, atol=1e-12)


def test_each_replicate_of_the_exact_estimator_is_the_exact_gradient():
    """The runner's vectorized chunk with the exact estimator, float64: every replicate equals the
    enumerated gradient (checks the chunk, the parameter order and the truth together)."""
    problem = problems.get("vae-digits-binary")
    ctx = Context(dtype=torch.float64, seed=1)
    prep = problem.prepare(SMALL, ctx)
    g = problem.chunk(estimators.get("exact"), SMALL, prep, 1, 3, None, ctx).grads["encoder"]
    truth = problem.true_gradient(SMALL, ctx)["encoder"]
    for r in range(3):
        torch.testing.assert_close(g[r], truth, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def estimator_rows():
    """Every estimator that applies to Bernoulli latents, at both checkpoints, R = 2000, float64."""
    sweep = Sweep(problem=["vae-digits-binary"], estimator=[*UNBIASED, "gumbel-softmax", "straight-through", "exact"],
                  hidden=[SMALL.hidden], latent=[SMALL.latent], batch=[SMALL.batch], n_samples=[4],
                  replicates=2000, seed=4, checkpoint_steps=300, train_steps=0, dtype="float64")
    return runner.run(sweep)


@pytest.mark.slow
def test_unbiased_estimators_agree_with_the_exact_gradient(estimator_rows):
    """Coordinate by coordinate (agreement_z: the largest |z| over the encoder's coordinates) and
    coordinate-averaged (bias_z), with a Bonferroni bound over every coordinate of every cell."""
    rows = [r for r in estimator_rows if r["estimator"] in UNBIASED]
    assert len(rows) == 2 * len(UNBIASED) and {r["status"] for r in rows} == {"ok"}
    assert {r["reference"] for r in rows} == {"exact"}
    n_params = 64 * 16 + 16 + 16 * 4 + 4
    bound = z_bound(n_assertions=len(rows) * n_params)
    for r in rows:
        assert r["agreement_z"] <= bound, (r["estimator"], r["checkpoint"], r["agreement_z"], bound)
        assert abs(r["bias_z"]) <= z_bound(n_assertions=len(rows)), (r["estimator"], r["bias_z"])
    # exact: every estimate the same up to float64 rounding (64 ulps of gradients below 1 in each coordinate)
    exact = [r for r in estimator_rows if r["estimator"] == "exact"]
    assert max(r["total_variance"] for r in exact) <= n_params * (64 * 2.0**-53) ** 2
    assert max(r["agreement_z"] for r in exact) < 1 and max(abs(r["bias_z"]) for r in exact) < 1


@pytest.mark.slow
def test_relaxed_estimators_at_temperature_one_are_shown_biased(estimator_rows):
    rows = [r for r in estimator_rows if r["estimator"] in ("gumbel-softmax", "straight-through")]
    assert len(rows) == 4 and all(r["estimator_options"] == "temperature=1.0" for r in rows)
    bound = z_bound(n_assertions=len(rows) * (64 * 16 + 16 + 16 * 4 + 4))
    for r in rows:
        assert r["agreement_z"] > 2 * bound, (r["estimator"], r["checkpoint"], r["agreement_z"])


def test_above_the_enumeration_bound_the_reference_is_disarm():
    latent = ENUMERATION_MAX_LATENT + 1
    problem = problems.get("vae-digits-binary")
    assert problem.true_gradient(VAESetting("untrained", 4, latent, 2), Context()) is None
    sweep = Sweep(problem=["vae-digits-binary"], estimator=["reinforce-loo", "disarm"], checkpoint=["untrained"],
                  hidden=[4], latent=[latent], batch=[2], n_samples=[4], replicates=200, train_steps=0)
    rows = {r["estimator"]: r for r in runner.run(sweep)}
    assert math.isnan(rows["reinforce-loo"]["true_grad"])
    assert rows["reinforce-loo"]["reference"] == "mean of disarm" and rows["reinforce-loo"]["agreement_z"] >= 0
    # the test ELBO of a large latent is a Monte Carlo estimate, finite
    model = problem.model(VAESetting("untrained", 4, latent, 2), Context())
    assert torch.isfinite(model.test_elbo(problem.dataset(Context()).test[:5])).all()


@pytest.mark.slow
def test_training_with_the_exact_gradient_beats_reinforce_at_the_default_settings():
    """The default setting (hidden 256, latent 8, batch 128, n_samples 4) and training length (1000 steps):
    the exact gradient's test ELBO (exact, enumerated, over the 300 test images) ends higher than
    plain REINFORCE's."""
    problem = problems.get("vae-digits-binary")
    setting = problem.setting_type(*(a.default[0] for a in problem.axes))
    assert (setting.hidden, setting.latent, setting.batch) == (256, 8, 128)
    ctx = Context(train_steps=1000)
    end = {}
    for name in ("exact", "reinforce"):
        curve = problem.curves(estimators.get(name), setting, 4, ctx)
        assert curve[-1]["step"] == 1000 and curve[-1]["status"] == "ok", curve[-1]
        end[name] = curve[-1]["elbo_test"]
    assert end["exact"] > end["reinforce"] + 1.0, end


def test_training_elbo_improves_with_exact():
    data = binarize(load_digits())
    torch.manual_seed(0)
    model = BinaryVAE(data.dim, hidden=64, latent=4)
    curve = train(model, data, estimators.get("exact"), steps=200, batch=64, n_samples=1, seed=0, eval_every=100)
    assert curve[-1]["elbo_test"] - curve[0]["elbo_test"] > 5.0, curve


def test_vae_mnist_binary_reads_the_idx_files_and_binarizes_them(tmp_path, capsys):
    from estbench.cli import main

    from .test_vae import write_idx

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 6, 6)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 6, 6)))
    data = problems.get("vae-mnist-binary").dataset(Context(data_dir=str(tmp_path)))
    assert data.train.shape == (40, 36) and set(data.train.unique().tolist()) == {0.0, 1.0}
    out = tmp_path / "r.csv"
    args = ["run", "--problem", "vae-mnist-binary", "--estimator", "disarm", "exact", "--hidden", "8", "--latent", "3",
            "--batch", "4", "--replicates", "20", "--checkpoint-steps", "5", "--train-steps", "4", "--out", str(out),
            "--quiet"]
    assert main(args + ["--data-dir", str(tmp_path / "data")]) == 2  # a missing folder: one line, no work
    assert "no such directory" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--data-dir", str(tmp_path)]) == 0
    import pandas as pd

    rows = pd.read_csv(out)
    assert len(rows) == 4 and set(rows["status"]) == {"ok"} and set(rows["reference"]) == {"exact"}
    assert set(pd.read_csv(runner.curves_path(out))["estimator"]) == {"disarm", "exact"}


def test_the_papers_latent_size_runs_without_a_truth():
    """latent 200 (the papers' size): exact does not apply (2^200 outcomes) and is skipped, the rest run."""
    sweep = Sweep(problem=["vae-digits-binary"], estimator=["disarm", "reinforce-loo", "exact"], hidden=[8],
                  latent=[200], batch=[4], n_samples=[2], replicates=20, checkpoint_steps=3, train_steps=0)
    rows = {(r["estimator"], r["checkpoint"]): r for r in runner.run(sweep)}
    assert {k: r["status"] for k, r in rows.items()} == {
        ("disarm", "untrained"): "ok", ("reinforce-loo", "untrained"): "ok", ("exact", "untrained"): "skipped",
        ("disarm", "trained"): "ok", ("reinforce-loo", "trained"): "ok", ("exact", "trained"): "skipped"}
    assert rows[("reinforce-loo", "trained")]["reference"] == "mean of disarm"
