"""The VAE problem: ELBO, vectorized encoder gradients, agreement, training, data loading."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

import estimators
from benchmarks import problems, runner
from benchmarks.data import DataError, load_digits, load_mnist, read_idx_images
from benchmarks.problems import VAE, Context, VAESetting
from benchmarks.problems.vae import train
from benchmarks.sweep import Sweep
from estbench.cli import main

from .statutil import z_bound

BUILTIN_NAMES = [n for n, c in estimators.ESTIMATORS.classes().items() if c.__module__ == "estimators.builtin"]

SMALL = VAESetting(checkpoint="untrained", hidden=16, latent=2, batch=16)


def small_model(seed: int = 0) -> tuple[VAE, torch.Tensor]:
    data = load_digits()
    torch.manual_seed(seed)
    model = VAE(data.dim, hidden=32, latent=4).double()
    return model, data.train[:64].double()


def test_digits_are_shipped_scaled_and_split():
    d = load_digits()
    assert d.train.shape == (1497, 64) and d.test.shape == (300, 64)
    assert d.train.min() >= 0 and d.train.max() <= 1 and d.train.max() == 1
    again = load_digits()
    assert torch.equal(d.test, again.test)  # fixed split


def test_digits_read_from_the_shipped_file_are_scikit_learns_and_its_loader_stands_in(monkeypatch):
    """digits_pixels reads scikit-learn's file without importing it: the same array as its load_digits; and where
    the file is not found, load_digits itself gives them."""
    import importlib.util

    from sklearn.datasets import load_digits as sk_load_digits

    from benchmarks.data import digits_pixels

    want = sk_load_digits().data
    assert np.array_equal(digits_pixels(), want)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert np.array_equal(digits_pixels(), want)


def test_vae_tanh_is_within_a_few_ulp_of_tanh_and_differentiable_twice():
    """The VAE's Tanh in eager float32 on the CPU: 2 sigmoid(2x) - 1, its derivative tanh's kernel on the
    output. Against tanh in float64: sigmoid with relative error <= 4u (u = 2^-24: exp, an add, a divide),
    doubled exactly, minus 1 (exact or one more rounding): |error| <= 9u < 10u. The derivative 1 - y^2:
    y off by < 10u, |d(1 - y^2)/dy| <= 2, two roundings: < 48u. The second derivative -2y (1 - y^2) (REBAR
    and RELAX differentiate through the decoder twice): |d/dy| <= 4, so y's error gives < 40u, the
    roundings a few u more: < 48u. In float64 it is torch.tanh itself."""
    from benchmarks.problems.activations import TANH_BLOCK, Tanh

    u = 2.0**-24
    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.tensor([0.0, 1e-30, -1e-30, 1e-6, 40.0, -40.0])])
    x = x.requires_grad_(True)
    y = Tanh()(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    truth = torch.tanh(x.detach().double())
    assert (y.detach().double() - truth).abs().max().item() < 10 * u
    assert (g.detach().double() - (1 - truth**2)).abs().max().item() < 48 * u
    assert (h.double() - (-2 * truth * (1 - truth**2))).abs().max().item() < 48 * u
    assert not torch.equal(y.detach(), torch.tanh(x.detach()))  # the sigmoid form, not torch.tanh
    # a tensor larger than a block gives, element for element, what blocks of it give
    big = torch.randn(3 * TANH_BLOCK + 5)
    assert torch.equal(Tanh()(big), torch.cat([Tanh()(part) for part in big.split(TANH_BLOCK)]))
    x64 = torch.randn(1000, dtype=torch.float64)
    assert torch.equal(Tanh()(x64), torch.tanh(x64))


def test_vae_tanh_under_vmap_gives_the_looped_gradients():
    """The encoder's vector-Jacobian products are vmapped (torch.func): through the Tanh they equal one
    autograd call per cotangent, also for hidden activations larger than a block."""
    from torch.func import functional_call, vjp, vmap

    from benchmarks.problems.activations import TANH_BLOCK, Tanh

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 256), Tanh(), torch.nn.Linear(256, 2))
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = torch.randn(TANH_BLOCK // 256 + 7, 3)
    cotangents = torch.randn(4, len(x), 2)
    (batched,) = vmap(vjp(lambda p: functional_call(net, p, (x,)), params)[1])(cotangents)
    for i, c in enumerate(cotangents):
        looped = torch.autograd.grad(net(x), list(net.parameters()), c)
        for name, grad in zip(params, looped, strict=True):
            torch.testing.assert_close(batched[name][i], grad)
    assert vmap(Tanh())(torch.randn(2, TANH_BLOCK + 1)).shape == (2, TANH_BLOCK + 1)


def test_kl_term_matches_monte_carlo_kl():
    """Closed-form KL(q || p) per image vs the mean of log q(z) - log p(z), z ~ q (z-test per image)."""
    model, x = small_model()
    S = 20_000
    with torch.no_grad():
        q = model.q(x)
        z = q.sample((S,))  # [S, B, L]
        log_ratio = q.log_prob(z) - model.prior_like(q).log_prob(z)  # [S, B]
        closed = model.kl(q)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(S)
    z_max = ((mc - closed).abs() / se).max().item()
    assert z_max <= z_bound(n_assertions=x.shape[0]), z_max


def test_kl_term_equals_torch_distributions_kl():
    """The written-out KL equals torch.distributions.kl_divergence (exact up to float64 rounding)."""
    model, x = small_model()
    model = model.double()
    with torch.no_grad():
        q = model.q(x.double())
        expected = torch.distributions.kl_divergence(q, model.prior_like(q))
        got = model.kl(q)
        q2, from_split = type(model).q_and_kl(model.encoder(x.double()))
    assert got.shape == expected.shape == from_split.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(from_split, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q2.base_dist.loc, q.base_dist.loc, rtol=0, atol=0)
    torch.testing.assert_close(q2.base_dist.scale, q.base_dist.scale, rtol=0, atol=0)


@pytest.mark.parametrize("n", [1, 3])  # n = 1 takes the data as the target without expanding them
def test_log_likelihood_equals_bernoulli_log_prob(n):
    """f(z) = log p(x | z), written with the function Bernoulli.log_prob calls, equals it."""
    model, x = small_model()
    z = torch.randn(n, x.shape[0], model.latent, dtype=x.dtype)
    with torch.no_grad():
        expected = torch.distributions.Bernoulli(logits=model.decoder(z), validate_args=False).log_prob(x).sum(-1)
        got = model.log_likelihood(x)(z)
    torch.testing.assert_close(got, expected)


def test_elbo_lies_below_importance_weighted_bound():
    """Burda et al. 2016: E[IWAE_100] >= ELBO. One-sided z-test on the batch mean of the per-image gap."""
    model, x = small_model()
    torch.manual_seed(1)
    gap = model.iwae(x, k=100) - model.elbo(x, n_samples=1000)  # [B]
    se = gap.std() / math.sqrt(len(gap))
    assert gap.mean() > z_bound(1, two_sided=False) * se, (gap.mean().item(), se.item())


class MeanEstimator(estimators.Estimator):
    """A deterministic 'estimator' (f at the mean of q): every replicate's gradient is the same
    and equals plain autograd through the whole model, which checks the vectorized chain exactly."""

    name = "test-at-the-mean"

    def surrogate(self, dist, f, n_samples, state=None):
        x = dist.mean.expand(n_samples, *dist.mean.shape)
        fx = f(x)
        return estimators.Surrogate(loss=fx.mean(0), f=fx.detach())


def test_vectorized_encoder_gradient_equals_plain_autograd():
    problem = problems.get("vae-digits")
    ctx = Context(dtype=torch.float64, seed=3)
    prep = problem.prepare(SMALL, ctx)
    out = problem.chunk(MeanEstimator(), SMALL, prep, 2, 3, None, ctx)
    g = out.grads["encoder"]  # [3, P]
    assert g.shape == (3, prep.n_params)
    model = prep.model
    q = model.q(prep.x)
    elbo = (model.log_likelihood(prep.x)(q.mean[None]).mean(0) - model.kl(q)).mean()
    want = torch.cat([p.reshape(-1) for p in torch.autograd.grad(elbo, list(model.encoder.parameters()))])
    for r in range(3):
        torch.testing.assert_close(g[r], want)


def test_all_estimators_agree_on_the_mean_encoder_gradient():
    """Seeded z-test: every estimator's mean gradient equals the pathwise one, coordinate by coordinate."""
    sweep = Sweep(problem=["vae-digits"], estimator=BUILTIN_NAMES, checkpoint=["untrained"],
                  hidden=[SMALL.hidden], latent=[SMALL.latent], batch=[SMALL.batch], n_samples=[4],
                  replicates=3000, seed=5, train_steps=0, dtype="float64")
    rows = runner.run(sweep)
    assert {r["status"] for r in rows} == {"ok"}
    n_params = 64 * 16 + 16 + 16 * 4 + 4
    others = [r for r in rows if r["estimator"] != "reparameterization"]
    z = z_bound(n_assertions=len(others) * n_params)
    for r in others:
        assert r["agreement_z"] <= z, (r["estimator"], r["agreement_z"], z)
    # and the score-function estimators are the noisy ones, by orders of magnitude
    var = {r["estimator"]: r["total_variance"] for r in rows}
    assert var["reinforce"] > 100 * var["reparameterization"]


def test_pathwise_training_improves_test_elbo():
    data = load_digits()
    torch.manual_seed(0)
    model = VAE(data.dim, hidden=256, latent=8)
    curve = train(model, data, estimators.get("reparameterization"), steps=300, batch=128, n_samples=1,
                  seed=0, eval_every=100)
    first, last = curve[0]["elbo_test"], curve[-1]["elbo_test"]
    assert [p["step"] for p in curve] == [0, 100, 200, 300]
    assert last - first > 10.0, (first, last)  # about -45 -> -26 nats per image (README)
    assert curve[-1]["status"] == "ok"


class NonreparameterizedNormal(Normal):
    """Pyro's test fake: a Normal that does not offer rsample."""

    has_rsample = False


def test_reparameterization_of_a_latent_without_rsample_is_a_clear_error():
    model, x = small_model()
    enc = model.encoder(x)
    mu, logvar = enc.chunk(2, -1)
    q = Independent(NonreparameterizedNormal(mu, torch.exp(0.5 * logvar)), 1)
    with pytest.raises(estimators.EstimatorError, match="reparameterization.*Independent\\(NonreparameterizedNormal\\).*rsample"):
        estimators.get("reparameterization")(q, model.log_likelihood(x), 2)
    sur = estimators.get("reinforce")(q, model.log_likelihood(x), 2)  # the score function still works
    sur.loss.sum().backward()
    assert model.encoder[0].weight.grad is not None


# -- MNIST IDX files ----------------------------------------------------------

def write_idx(path, images: np.ndarray, compress: bool = False, magic: int = 2051) -> None:
    n, rows, cols = images.shape
    raw = struct.pack(">iiii", magic, n, rows, cols) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 6, 6)), compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 6, 6)))
    return tmp_path


def test_idx_reader_reads_plain_and_gzip(mnist_dir):
    d = load_mnist(mnist_dir)
    assert d.train.shape == (40, 36) and d.test.shape == (10, 36) and d.shape == (6, 6)
    raw = read_idx_images(mnist_dir / "t10k-images-idx3-ubyte")
    torch.testing.assert_close(d.test, torch.from_numpy(raw.reshape(10, -1).astype(np.float32) / 255))


def test_idx_errors_name_the_file(tmp_path, mnist_dir):
    bad = tmp_path / "bad"
    write_idx(bad, np.zeros((2, 3, 3)), magic=2049)
    with pytest.raises(DataError, match=r"bad: not an IDX image file \(magic number 2049"):
        read_idx_images(bad)
    bad.write_bytes((mnist_dir / "t10k-images-idx3-ubyte").read_bytes()[:-5])
    with pytest.raises(DataError, match="bad: header says 10 images of 6x6"):
        read_idx_images(bad)
    (mnist_dir / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing MNIST file .*t10k-images-idx3-ubyte"):
        load_mnist(mnist_dir)


def test_vae_mnist_through_the_cli(tmp_path, mnist_dir, capsys):
    out = tmp_path / "r.csv"
    args = ["run", "--problem", "vae-mnist", "--estimator", "reinforce", "reparameterization", "--hidden", "8",
            "--latent", "2", "--batch", "4", "--replicates", "20", "--checkpoint-steps", "5", "--train-steps", "4",
            "--out", str(out), "--quiet"]
    assert main(args + ["--data-dir", str(mnist_dir)]) == 0
    text = out.read_text()
    assert text.count("vae-mnist") == 4 and ",failed," not in text
    assert runner.curves_path(out).exists()
    assert main(args) == 2
    assert "vae-mnist needs --data-dir DIR" in capsys.readouterr().err
    (mnist_dir / "t10k-images-idx3-ubyte").unlink()
    assert main(args + ["--data-dir", str(mnist_dir)]) == 2
    assert "missing MNIST file" in capsys.readouterr().err
