"""The variational autoencoder of Kingma & Welling (2014) as a benchmark problem.

Model: an MLP encoder gives the mean and log-variance of a diagonal Gaussian
q(z | x); prior p(z) = N(0, I); an MLP decoder gives Bernoulli logits over the
pixels. Per image,

    ELBO(x) = E_{q(z|x)} [log p(x | z)] - KL(q(z | x) || p(z)),

with the KL in closed form. The encoder
returns a *distribution*; the estimator decides how to differentiate the
expectation, with f(z) = log p(x | z). So the same estimator objects serve the
toy problems and the VAE. Pixel values in [0, 1] are used as Bernoulli
targets, as is usual for the VAE on grey-level images.

What is measured (per estimator, ``estbench run --problem vae-digits``):

1. **Gradient variance** of the ELBO averaged over a fixed batch of training
   images, with respect to all encoder parameters, at two checkpoints: the
   untrained model and the model after ``checkpoint_steps`` Adam steps with the
   pathwise estimator (made once per run, seeded). No closed form exists: the
   reference is the pathwise estimator's mean, and ``agreement_z`` is the
   largest |z| over coordinates between an estimator's mean and it.

   Vectorization: the encoder is deterministic given x, so its outputs
   (mu, log-variance) [B, 2L] are computed once and expanded per replicate to
   [r, B, 2L] leaves; one autograd call through the estimator's surrogate and
   the decoder gives each replicate's gradient with respect to them, and a
   vmapped vector-Jacobian product of the encoder (torch.func.vjp + vmap)
   carries the r cotangents to the encoder parameters. No loop over replicates.

2. **Training curves**: each estimator trains a fresh model (same seed, same
   number of steps, Adam), recording the training ELBO of each step and the
   held-out test ELBO (Monte Carlo, several z per image) against step and wall
   time. A run that produces a non-finite loss is marked ``diverged`` and one
   whose test ELBO improves by less than 1 nat per image is ``stalled``; both
   are kept.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, Normal
from torch.func import functional_call, vjp, vmap

from estimators import Estimator
from estimators.options import Option, at_least

from ..data import Dataset, binarize, load
from . import checkpoints
from .activations import Tanh
from .base import Chunk, Context, Problem, builtin, surrogate
from .counting import counted
from .training import train


@dataclass(frozen=True)
class VAESetting:
    checkpoint: str  # "untrained" or "trained"
    hidden: int
    latent: int
    batch: int


#: the encoder and decoder (the binary VAE's option ``architecture``): "mlp", one hidden layer of ``hidden`` tanh
#: units each; "linear", none (the papers' linear model: logits affine in the pixels, pixels' logits affine in
#: z); "nonlinear", two hidden layers of ``hidden`` units each with LeakyReLU(0.3), as the DisARM authors' code
#: (google-research/disarm, experiment_launcher_singlelayer.py) builds the papers' nonlinear model
ARCHITECTURES = ("mlp", "linear", "nonlinear")


def network(sizes: list[int], architecture: str) -> nn.Sequential:
    """Layers from sizes[0] to sizes[-1] for ``architecture``: hidden layers between them per ARCHITECTURES."""
    first, hidden, last = sizes
    if architecture == "linear":
        return nn.Sequential(nn.Linear(first, last))
    if architecture == "nonlinear":
        return nn.Sequential(nn.Linear(first, hidden), nn.LeakyReLU(0.3), nn.Linear(hidden, hidden), nn.LeakyReLU(0.3),
                             nn.Linear(hidden, last))
    return nn.Sequential(nn.Linear(first, hidden), Tanh(), nn.Linear(hidden, last))


class VAE(nn.Module):
    """MLP encoder -> diagonal Gaussian q(z|x); MLP decoder -> Bernoulli logits."""

    #: encoder outputs per latent unit (mean and log-variance)
    outputs_per_latent = 2

    def __init__(self, x_dim: int, hidden: int, latent: int, architecture: str = "mlp"):
        super().__init__()
        self.latent = latent
        self.encoder = network([x_dim, hidden, self.outputs_per_latent * latent], architecture)
        self.decoder = network([latent, hidden, x_dim], architecture)

    @staticmethod
    def q_from(enc_out: torch.Tensor) -> Independent:
        """q(z|x) from encoder outputs [..., 2L] (mean, log-variance)."""
        return VAE._q(*enc_out.chunk(2, dim=-1))

    def q(self, x: torch.Tensor) -> Independent:  # x: [B, D]
        return self.q_from(self.encoder(x))

    def prior_like(self, q: Independent) -> Independent:
        base = q.base_dist
        return Independent(Normal(torch.zeros_like(base.loc), torch.ones_like(base.scale), validate_args=False), 1)

    def kl(self, q: Independent) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form, summed over the latent: [*B].

        Written out rather than torch.distributions.kl_divergence, whose dispatch for
        Independent costs a third of a small training step and breaks torch.compile's graph;
        tests check it against kl_divergence and a Monte Carlo estimate."""
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        return 0.5 * (mu * mu + sigma * sigma - 1.0 - 2.0 * sigma.log()).sum(-1)

    @staticmethod
    def q_and_kl(enc_out: torch.Tensor) -> tuple[Independent, torch.Tensor]:
        """q_from(enc_out) and the same KL as kl(q), [...], from one split of the encoder
        outputs: a training step's autograd graph then has one split node, as the hand-written
        loop has. The KL is taken in the log-variance: there is no log(sigma) to differentiate
        (measured 1.6x faster, fwd + bwd, than kl(q) on a batch of 128), as in the classic
        hand-written VAE."""
        mu, logvar = enc_out.chunk(2, dim=-1)
        return VAE._q(mu, logvar), -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(-1)

    #: whether the model's data are binarized (benchmarks.data.binarize)
    binary = False

    @staticmethod
    def checkpoint_estimator(latent: int, batch: int) -> Estimator:
        """The estimator that trains the "trained" checkpoint: the pathwise one."""
        from estimators import Reparameterization

        return Reparameterization()

    @staticmethod
    def _q(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
        # validate_args=False: the checks are data-dependent branches, which vmap cannot trace
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)

    def log_likelihood(self, x: torch.Tensor):
        """f(z) = log p(x | z): z [n, *B, L] -> [n, *B], for data x [B_data, D]."""

        def f(z: torch.Tensor) -> torch.Tensor:
            # the decoder sees one 2-D batch (nn.Linear on [n, B, L] adds a reshape pair per layer)
            logits = self.decoder(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], x.shape[-1])  # [n, *B, D]
            # = Bernoulli(logits=logits).log_prob(x).sum(-1), the function it calls, without building a
            # distribution per call (a test checks they agree); the data broadcast, not copied per sample
            return -F.binary_cross_entropy_with_logits(logits, x.expand(logits.shape), reduction="none").sum(-1)

        return f

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), N(0, I): [..., L] -> [...]."""
        return -0.5 * (z * z).sum(-1) - 0.5 * self.latent * math.log(2 * math.pi)

    def log_joint(self, x: torch.Tensor):
        """l's numerator for the K-sample bound: z [n, *B, L] -> log p(x | z) + log p(z), [n, *B]."""
        log_lik = self.log_likelihood(x)
        return lambda z: log_lik(z) + self.log_prior(z)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, n_samples: int = 10) -> torch.Tensor:
        """Monte Carlo ELBO per image [B], averaging n_samples z per image."""
        q = self.q(x)
        z = q.sample((n_samples,))
        return self.log_likelihood(x)(z).mean(0) - self.kl(q)

    @torch.no_grad()
    def test_elbo(self, x: torch.Tensor, n_samples: int = 10) -> torch.Tensor:
        """The ELBO per image [B] that training curves report for held-out images (here the
        Monte Carlo ELBO of ``elbo``)."""
        return self.elbo(x, n_samples)

    @torch.no_grad()
    def iwae(self, x: torch.Tensor, k: int = 100) -> torch.Tensor:
        """Importance-weighted bound with k samples per image [B] (Burda et al. 2016)."""
        q = self.q(x)
        z = q.sample((k,))  # [k, B, L]
        prior = self.prior_like(q)
        log_w = self.log_likelihood(x)(z) + prior.log_prob(z) - q.log_prob(z)
        return torch.logsumexp(log_w, 0) - math.log(k)


def _dataset(kind: str, data_dir: str | None, binary: bool = False) -> Dataset:
    """The data set (binarized, for the binary VAEs), read once per process; a changed data
    directory is read again."""
    stamp = None
    if kind != "digits" and data_dir is not None and Path(data_dir).is_dir():
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in Path(data_dir).iterdir()))
    return _load_dataset(kind, data_dir, stamp, binary)


@functools.lru_cache(maxsize=4)
def _load_dataset(kind: str, data_dir: str | None, stamp: Any, binary: bool) -> Dataset:
    data = load(kind, data_dir)
    return binarize(data) if binary else data


@functools.lru_cache(maxsize=8)
def _checkpoint(model_type: type[VAE], kind: str, data_dir: str | None, hidden: int, latent: int, batch: int,
                steps: int, seed: int, options: tuple = (), dynamic: bool = False) -> dict:
    """Weights of the trained checkpoint (made once per process, or once per run where its processes share
    them: benchmarks.problems.checkpoints; seeded), trained with ``model_type.checkpoint_estimator``;
    ``options``: the model's own, (name, value) pairs; ``dynamic``: each training batch binarized anew from
    the grey levels."""

    def make() -> dict:
        data = _dataset(kind, data_dir, model_type.binary)
        torch.manual_seed(seed)
        model = model_type(data.dim, hidden, latent, **dict(options))
        train(model, data, model_type.checkpoint_estimator(latent, batch), steps, batch, n_samples=1, seed=seed,
              grey=_dataset(kind, data_dir).train if dynamic else None)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    what = (model_type.__module__, model_type.__qualname__, kind, data_dir, hidden, latent, batch, steps, seed, options,
            dynamic)
    return checkpoints.made_once(what, make)


@dataclass
class Prepared:
    model: VAE
    x: torch.Tensor  # the fixed batch [B, D]
    enc_out: torch.Tensor  # encoder outputs [B, 2L], detached
    params: dict[str, torch.Tensor]  # the encoder's parameters, detached
    n_params: int

    def encoder_vjp(self) -> Any:
        """cotangent [B, 2L] -> ({name: grad},) at the fixed batch. Made where it is used
        (one encoder forward per chunk) so that torch.compile traces it whole."""
        return vjp(lambda p: functional_call(self.model.encoder, p, (self.x,)), self.params)[1]


class VAEProblem(Problem):
    groups = ("encoder",)
    trains = True
    kind = "model"
    family = "normal"
    axes = (
        Option("checkpoint", str, ("untrained", "trained"), "where the encoder-gradient variance is measured",
               choices=("untrained", "trained")),
        Option("hidden", int, (256,), "hidden width of encoder and decoder", check=at_least(1)),
        Option("latent", int, (8,), "latent size", check=at_least(1)),
        Option("batch", int, (128,), "images per ELBO estimate", check=at_least(1)),
    )
    setting_type = VAESetting
    data_kind: str
    model_type: type[VAE] = VAE

    def check(self, ctx: Context) -> None:
        """Read the data now, so a missing or malformed file is reported before any work."""
        self.dataset(ctx)

    def curve_setting(self, setting: VAESetting) -> VAESetting:
        return replace(setting, checkpoint="untrained")

    def model_options(self, setting: VAESetting) -> dict[str, Any]:
        """What the model type takes besides (data dim, hidden, latent): none here."""
        return {}

    def dynamic(self, setting: VAESetting) -> bool:
        """Whether training binarizes each batch anew (the papers' dynamic binarization): not here."""
        return False

    def dataset(self, sweep_or_ctx: Any) -> Dataset:
        return _dataset(self.data_kind, getattr(sweep_or_ctx, "data_dir", None), self.model_type.binary)

    def model(self, setting: VAESetting, ctx: Context) -> VAE:
        """The model at a checkpoint, seeded from the run's seed."""
        data = self.dataset(ctx)
        torch.manual_seed(ctx.seed)
        options = self.model_options(setting)
        model = self.model_type(data.dim, setting.hidden, setting.latent, **options)
        if setting.checkpoint == "trained":
            model.load_state_dict(_checkpoint(self.model_type, self.data_kind, ctx.data_dir, setting.hidden, setting.latent,
                                              setting.batch, ctx.checkpoint_steps, ctx.seed, tuple(options.items()),
                                              self.dynamic(setting)))
        return model.to(dtype=ctx.dtype, device=ctx.device)

    def batch(self, setting: VAESetting, ctx: Context) -> torch.Tensor:
        """The fixed batch of training images whose ELBO gradient is measured (seeded), [B, D]."""
        data = self.dataset(ctx)
        gen = torch.Generator().manual_seed(ctx.seed)
        idx = torch.randperm(len(data.train), generator=gen)[: setting.batch]
        return data.train[idx].to(dtype=ctx.dtype, device=ctx.device)

    def prepare(self, setting: VAESetting, ctx: Context) -> Prepared:
        model = self.model(setting, ctx)
        model.decoder.requires_grad_(False)
        x = self.batch(setting, ctx)
        params = {k: v.detach() for k, v in model.encoder.named_parameters()}
        with torch.no_grad():
            enc_out = model.encoder(x)
        n_params = sum(p.numel() for p in params.values())
        return Prepared(model, x, enc_out, params, n_params)

    def chunk_size(self, setting: VAESetting, n_samples: int) -> int:
        # the decoder's hidden activations [n, r, B, hidden] at about 2^21 elements (8 MB): larger
        # chunks spill out of the caches (measured: docs/performance.md, how replicates are vectorized)
        return max(1, (1 << 21) // (n_samples * setting.batch * setting.hidden))

    def warmup_replicates(self, setting: VAESetting) -> int:
        # one replicate is already a batch of images, each with its own draws: about 128 images per
        # warm-up call (REBAR and RELAX learn their control variate on 9 of them, 20 steps each)
        return max(1, 128 // setting.batch)

    def replicate_bytes(self, setting: VAESetting, n_samples: int, ctx: Context) -> int:
        # per sample and image: the decoder's activations and their gradients (hidden, pixels),
        # the latent draws; about 4 tensors of each kept for backward
        itemsize = torch.empty((), dtype=ctx.dtype).element_size()
        x_dim = self.dataset(ctx).dim
        return itemsize * n_samples * setting.batch * 4 * (setting.hidden + x_dim + setting.latent)

    def context_columns(self, ctx: Context) -> dict[str, Any]:
        return {"checkpoint_steps": ctx.checkpoint_steps, "train_steps": ctx.train_steps}

    def per_image(self, estimator: Estimator, setting: Any, prep: Prepared, out: torch.Tensor, n_samples: int,
                  state: Any) -> tuple[torch.Tensor, Any]:
        """(the surrogate of the objective per replicate and image [r, B], the estimator's state) from
        the encoder outputs ``out`` [r, B, 2L]: the ELBO, the estimator handling E log p(x | z), the KL
        in closed form."""
        q, kl = type(prep.model).q_and_kl(out)
        sur = surrogate(estimator, q, counted(prep.model.log_likelihood(prep.x), out.shape[0] * setting.batch),
                        n_samples, state, kl.shape, "one value per replicate and image")
        return sur.loss - kl, sur.state

    def chunk(self, estimator: Estimator, setting: VAESetting, prep: Prepared, n_samples: int,
              replicates: int, state: Any, ctx: Context) -> Chunk:
        out = prep.enc_out.expand(replicates, *prep.enc_out.shape).clone().requires_grad_(True)  # [r, B, 2L]
        values, new_state = self.per_image(estimator, setting, prep, out, n_samples, state)
        elbo = values.mean(-1)  # [r]: averaged over the batch
        (g_out,) = torch.autograd.grad(elbo.sum(), out)  # [r, B, 2L]
        (grads,) = vmap(prep.encoder_vjp())(g_out)  # {name: [r, *shape]}
        flat = torch.cat([g.reshape(replicates, -1) for g in grads.values()], dim=1)  # [r, P]
        return Chunk(grads={"encoder": flat}, state=new_state)

    def curves(self, estimator: Estimator, setting: VAESetting, n_samples: int, ctx: Context) -> list[dict[str, Any]]:
        """Training curve of ``estimator`` from the untrained model (see module docstring)."""
        model = self.model(self.curve_setting(setting), ctx)
        grey = _dataset(self.data_kind, ctx.data_dir).train if self.dynamic(setting) else None
        return train(model, self.dataset(ctx), estimator, ctx.train_steps, setting.batch, n_samples,
                     seed=ctx.seed, eval_every=max(1, ctx.train_steps // 20), eval_max=1000, grey=grey)


@builtin
class VAEDigits(VAEProblem):
    name = "vae-digits"
    description = "Kingma & Welling VAE on scikit-learn's 8x8 digits (shipped, offline); encoder gradient"
    data_kind = "digits"


@builtin
class VAEMnist(VAEProblem):
    name = "vae-mnist"
    description = "the same VAE on MNIST read from IDX files in --data-dir DIR"
    data_kind = "mnist"
    needs_data_dir = True
