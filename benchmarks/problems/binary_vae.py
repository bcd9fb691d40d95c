"""The VAE with binary latent variables, its ELBO gradient known exactly by enumeration.

Model (the discrete-latent VAE of NVIL, MuProp, REBAR, RELAX, ARM and DisARM, with one
hidden layer): an MLP encoder gives the logits of q(z | x), z in {0, 1}^latent, a product of
Bernoullis; the prior is Bernoulli(1/2) per unit (fixed, not learned); an MLP decoder gives
the Bernoulli logits of the pixels. The data are binarized once with a fixed seed
(benchmarks.data.binarize). Per image,

    ELBO(x) = E_{q(z|x)} [log p(x | z)] - KL(q(z | x) || p(z)),

with the KL **in closed form** for every estimator, sum_i [q_i log 2q_i + (1 - q_i) log 2(1 - q_i)]
(q_i = sigmoid(logit_i)); the estimator's job is the expectation of f(z) = log p(x | z), as in
the Gaussian VAE. So the same estimators, runner and training loop serve both VAEs.

**The exact gradient.** For latent <= ``ENUMERATION_MAX_LATENT`` (16), the expectation is a
sum over the 2^latent configurations z_m:

    E_q f = sum_m q(z_m | x) f(z_m),   log q(z_m | x) = z_m . logits(x) - sum_i softplus(logit_i(x)),

and f(z_m) = x . d_m - sum_j softplus(d_mj) with d_m = decoder(z_m): the decoder runs once per
configuration (not per configuration and image), the rest is two matrix products [B, 2^L].
``exact_elbo`` computes the per-image ELBO this way in float64, and its gradient with respect
to every encoder parameter (autograd) is the truth: rows get ``true_grad``, ``bias``, ``bias_z``,
``mse`` and ``agreement_z`` (the largest |z| over coordinates between an estimator's mean and
the exact gradient), with ``reference`` = ``exact``. Above the bound, no truth: ``agreement_z``
compares with the mean of ``disarm`` (unbiased) in the same setting, ``reference`` says so.

**Checkpoints.** ``untrained`` is the seeded initialization; ``trained`` is the model after
``checkpoint_steps`` Adam steps with the exact gradient (latent <= 16 and 2^latent x batch within
the ``exact`` estimator's bound), else with DisARM (one pair per image).

**Training curves** as for the Gaussian VAE; the test ELBO is exact (enumerated) for latent <= 16,
else the Monte Carlo ELBO with 10 draws of z ~ q per image (the ELBO is an expectation under q,
so these draws need no importance weights).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent

from estimators import Estimator

from .base import Context, Option, builtin
from .vae import ARCHITECTURES, VAE, VAEProblem, VAESetting

#: the largest latent size whose ELBO (and its gradient) is enumerated: 2^16 configurations
ENUMERATION_MAX_LATENT = 16
LOG2 = math.log(2.0)


def configurations(latent: int, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> torch.Tensor:
    """All 2^latent points of {0, 1}^latent, [2^latent, latent] (first unit the slowest)."""
    bits = torch.arange(latent - 1, -1, -1, device=device)
    codes = torch.arange(1 << latent, device=device)
    return ((codes[:, None] >> bits) & 1).to(dtype)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(logits)) || Bernoulli(1/2)) summed over the last dim, in closed form:
    sum_i q_i logit_i - softplus(logit_i) + log 2 (the negative entropy plus log 2)."""
    return (torch.sigmoid(logits) * logits - F.softplus(logits) + LOG2).sum(-1)


def outcome_log_likelihood(dec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of every image [B, X] under every outcome's decoder logits dec [M, X], as Bernoulli pixels:
    x . d - sum softplus(d), [M, B]."""
    return dec @ x.T - F.softplus(dec).sum(-1, keepdim=True)


def decoded_once(decode: Any, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
    """log p(x | z) [n, *B] where z [n, *B, ...] holds one outcome per row shared by every batch element (an
    expanded view, stride 0 over the batch, as the ``exact`` estimator passes its enumeration): ``decode``
    (outcomes [n, ...] -> logits [n, X]) runs once per outcome, not once per outcome and image. None for
    any other z."""
    if not (z.dim() >= 3 and z.shape[-2] == x.shape[0] and all(s == 0 for s in z.stride()[1:-1])):
        return None
    ll = outcome_log_likelihood(decode(z[(slice(None), *([0] * (z.dim() - 2)))]), x)  # [n, B]
    return ll.reshape(len(z), *([1] * (z.dim() - 3)), x.shape[0]).expand(z.shape[:-1])


class BinaryVAE(VAE):
    """Encoder -> logits of q(z|x) = prod_i Bernoulli(z_i); prior Bernoulli(1/2)^latent; decoder ->
    Bernoulli logits of the pixels; encoder and decoder per ``architecture`` (ARCHITECTURES)."""

    outputs_per_latent = 1
    binary = True

    @staticmethod
    def q_from(enc_out: torch.Tensor) -> Independent:
        # validate_args=False: the checks are data-dependent branches, which vmap cannot trace
        return Independent(Bernoulli(logits=enc_out, validate_args=False), 1)

    @staticmethod
    def q_and_kl(enc_out: torch.Tensor) -> tuple[Independent, torch.Tensor]:
        return BinaryVAE.q_from(enc_out), kl_to_uniform(enc_out)

    def prior_like(self, q: Independent) -> Independent:
        return Independent(Bernoulli(logits=torch.zeros_like(q.base_dist.logits), validate_args=False), 1)

    def kl(self, q: Independent) -> torch.Tensor:
        return kl_to_uniform(q.base_dist.logits)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = -latent log 2 for every z of {0, 1}^latent: [..., L] -> [...]."""
        return torch.full(z.shape[:-1], -self.latent * LOG2, dtype=z.dtype, device=z.device)

    @staticmethod
    def checkpoint_estimator(latent: int, batch: int) -> Estimator:
        """The exact gradient where it can be enumerated, else DisARM."""
        from estimators import get
        from estimators.discrete import MAX_EVALUATIONS

        if latent <= ENUMERATION_MAX_LATENT and (1 << latent) * batch <= MAX_EVALUATIONS:
            return get("exact")
        return get("disarm")

    def log_likelihood(self, x: torch.Tensor):
        """f(z) = log p(x | z), z [n, *B, L] -> [n, *B]. Where z is the same for every batch element
        (an expanded view, stride 0 over the batch, as the ``exact`` estimator passes its
        enumeration), the decoder runs once per outcome instead of once per outcome and image."""
        general = super().log_likelihood(x)

        def f(z: torch.Tensor) -> torch.Tensor:
            once = decoded_once(self.decoder, z, x)
            return general(z) if once is None else once

        return f

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The ELBO of each image [B] by enumerating every latent configuration (latent <= 16);
        differentiable in the encoder's and decoder's parameters."""
        if self.latent > ENUMERATION_MAX_LATENT:
            raise ValueError(f"exact_elbo enumerates at most latent={ENUMERATION_MAX_LATENT}, got {self.latent}")
        _, log_lik, logits, log_q = self.enumerated(x)
        return (log_q.exp() * log_lik).sum(-1) - kl_to_uniform(logits)

    def enumerated(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every latent configuration z [M, L] with log p(x | z) [B, M], the encoder's logits [B, L] and
        log q(z | x) [B, M]: the decoder runs once per configuration, the rest is two matrix products."""
        z = configurations(self.latent, x.dtype, x.device)  # [M, L]
        log_lik = outcome_log_likelihood(self.decoder(z), x).T  # [B, M]
        logits = self.encoder(x)  # [B, L]
        log_q = logits @ z.T - F.softplus(logits).sum(-1, keepdim=True)  # [B, M]
        return z, log_lik, logits, log_q

    @torch.no_grad()
    def test_elbo(self, x: torch.Tensor, n_samples: int = 10) -> torch.Tensor:
        """Exact (enumerated) where latent <= 16, else the Monte Carlo ELBO with n_samples z per image."""
        if self.latent <= ENUMERATION_MAX_LATENT:
            return self.exact_elbo(x)
        return self.elbo(x, n_samples)


class BinaryVAEProblem(VAEProblem):
    model_type = BinaryVAE
    family = "bernoulli"
    #: where the exact gradient is out of reach, agreement_z compares with this unbiased estimator's mean
    reference = "disarm"

    def true_gradient(self, setting: VAESetting, ctx: Context) -> dict[str, torch.Tensor] | None:
        """The gradient of the batch-mean ELBO with respect to the encoder's parameters, by
        enumeration in float64 (None above ENUMERATION_MAX_LATENT)."""
        if setting.latent > ENUMERATION_MAX_LATENT:
            return None
        return {"encoder": exact_gradient(type(self), setting, ctx)}

    def outcomes(self, setting: VAESetting) -> int:
        return 2**setting.latent

    def exact_objective(self, model: BinaryVAE, x: torch.Tensor, setting: VAESetting) -> torch.Tensor:
        """The objective of each image [B] by enumeration, whose encoder gradient is the truth: the ELBO."""
        return model.exact_elbo(x)


@functools.lru_cache(maxsize=8)
def exact_gradient(cls: type[BinaryVAEProblem], setting: Any, ctx: Context) -> torch.Tensor:
    """[P] in float64, the gradient of the batch mean of ``exact_objective``, in the order of the
    encoder's named parameters (the runner's order); made once per setting (every estimator's cell
    compares with it)."""
    problem = cls()
    model = problem.model(setting, ctx).to(torch.float64)
    x = problem.batch(setting, ctx).to(torch.float64)
    params = list(model.encoder.parameters())
    grads = torch.autograd.grad(problem.exact_objective(model, x, setting).mean(), params)
    return torch.cat([g.reshape(-1) for g in grads])


@dataclass(frozen=True)
class BinaryVAESetting(VAESetting):
    architecture: str = "mlp"
    binarization: str = "fixed"


class ImageBinaryVAEProblem(BinaryVAEProblem):
    """The binary VAE on a data set of images, with the papers' protocol selectable: ``architecture``
    (ARCHITECTURES) and ``binarization`` ("fixed": the images binarized once, benchmarks.data.binarize;
    "dynamic": each training batch drawn anew from the grey levels, as the DisARM, ARMS and double-CV
    papers train; the gradient cells' batch and the test set stay binarized once)."""

    axes = (*VAEProblem.axes,
            Option("architecture", str, ("mlp",), "binary VAE's encoder and decoder: mlp (one tanh layer of hidden units), "
                   "linear (none), nonlinear (two LeakyReLU layers of hidden units)", choices=ARCHITECTURES),
            Option("binarization", str, ("fixed",), "binary VAE's training images: fixed (binarized once) or dynamic "
                   "(each batch drawn anew from the grey levels)", choices=("fixed", "dynamic")))
    setting_type = BinaryVAESetting

    # a plain VAESetting (built directly, as the tests do) has the defaults
    def model_options(self, setting: BinaryVAESetting) -> dict[str, Any]:
        return {"architecture": getattr(setting, "architecture", "mlp")}

    def dynamic(self, setting: BinaryVAESetting) -> bool:
        return getattr(setting, "binarization", "fixed") == "dynamic"


@builtin
class VAEDigitsBinary(ImageBinaryVAEProblem):
    name = "vae-digits-binary"
    description = ("VAE with binary latents (Bernoulli q, prior 1/2) on the 8x8 digits, binarized; encoder "
                   "gradient exact by enumeration for latent <= 16")
    data_kind = "digits"


@builtin
class VAEMnistBinary(ImageBinaryVAEProblem):
    name = "vae-mnist-binary"
    description = "the binary-latent VAE on MNIST (binarized) read from IDX files in --data-dir DIR"
    data_kind = "mnist"
    needs_data_dir = True


@builtin
class VAEFashionMnistBinary(ImageBinaryVAEProblem):
    name = "vae-fashion-mnist-binary"
    description = "the binary-latent VAE on Fashion-MNIST (binarized) read from IDX files in --data-dir DIR"
    data_kind = "fashion-mnist"
    needs_data_dir = True


@builtin
class VAEOmniglotBinary(ImageBinaryVAEProblem):
    name = "vae-omniglot-binary"
    description = "the binary-latent VAE on Omniglot (Burda et al.'s 28x28 chardata.mat, binarized) in --data-dir DIR"
    data_kind = "omniglot"
    needs_data_dir = True
