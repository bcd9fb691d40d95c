"""The VAE with categorical latent variables, its ELBO gradient exact by enumeration: the setting of
the ReinMax and unordered-set papers (latent as D variables of K classes; CLASSES = 4 here, D the
``latent`` axis).

Model: an MLP encoder gives the logits of q(z | x) = prod_d Categorical(z_d), [B, D, K]; the prior
is uniform over the K classes of each variable (fixed); the decoder reads the one-hot z, flattened
to D K inputs, and gives the Bernoulli logits of the binarized pixels (as the binary VAE). The
estimators see q as Independent(Categorical) and f(z) = log p(x | z) taking class indices
[n, *B, D] or, for the relaxations, points of the simplex [n, *B, D, K]. The KL to the uniform
prior is in closed form, sum_d sum_k q_dk log q_dk + D log K.

**The exact gradient.** Where the K^D configurations times the batch are at most
MAX_EXACT_EVALUATIONS (2^24: D = 8 with K = 4 at batch 128), every configuration is enumerated in
float64: the decoder runs once per configuration, log q(z | x) for every image and configuration
is a gather and a sum, and the gradient of the batch-mean ELBO with respect to the encoder's
parameters is the truth (``reference`` exact). Beyond, agreement_z compares with the mean of
reinforce-loo.

**Checkpoints.** ``trained``: ``checkpoint_steps`` Adam steps with the exact gradient where K^D x
batch is at most 2^20, else with Gumbel-softmax at temperature 1 (a starting point, not a measured
result). Run by name (``--problem``): the default report runs its study (``report_study``: D = 4,
batch 16, both checkpoints, training curves).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Independent

from estimators import Estimator
from estimators.options import Option, at_least

from .base import Context, builtin
from .binary_vae import decoded_once, exact_gradient, outcome_log_likelihood
from .vae import VAE, VAEProblem, VAESetting, network

#: classes of each latent variable
CLASSES = 4
#: the most configurations x images the exact gradient enumerates, and the exact checkpoint trains with
MAX_EXACT_EVALUATIONS = 1 << 24
MAX_EXACT_TRAINING = 1 << 20


def category_grid(d: int, k: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Every configuration of d variables of k classes, [k^d, d] (class indices, the first variable slowest)."""
    codes = torch.arange(k**d, device=device)
    powers = k ** torch.arange(d - 1, -1, -1, device=device)
    return (codes[:, None] // powers) % k


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Categorical(logits) || uniform) summed over the variables: logits [..., D, K] -> [...]."""
    log_q = torch.log_softmax(logits, -1)
    return (log_q.exp() * log_q).sum((-2, -1)) + logits.shape[-2] * math.log(logits.shape[-1])


class CategoricalVAE(VAE):
    """MLP encoder -> logits [.., D, K] of q(z|x); uniform prior; decoder on the flattened one-hot z."""

    binary = True
    classes = CLASSES

    def __init__(self, x_dim: int, hidden: int, latent: int):
        nn.Module.__init__(self)
        self.latent, k = latent, self.classes
        # the other VAEs' one-tanh-layer MLPs (built in the same order: the same initial weights for a seed)
        self.encoder = nn.Sequential(*network([x_dim, hidden, latent * k], "mlp"), nn.Unflatten(-1, (latent, k)))
        self.decoder = network([latent * k, hidden, x_dim], "mlp")

    @staticmethod
    def q_from(enc_out: torch.Tensor) -> Independent:
        return Independent(Categorical(logits=enc_out, validate_args=False), 1)

    @staticmethod
    def q_and_kl(enc_out: torch.Tensor) -> tuple[Independent, torch.Tensor]:
        return CategoricalVAE.q_from(enc_out), kl_to_uniform(enc_out)

    def prior_like(self, q: Independent) -> Independent:
        return self.q_from(torch.zeros_like(q.base_dist.logits))

    def kl(self, q: Independent) -> torch.Tensor:
        return kl_to_uniform(q.base_dist.logits)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = -D log K for every configuration, class indices [..., D] -> [...]."""
        return torch.full(z.shape[:-1], -self.latent * math.log(self.classes), dtype=torch.get_default_dtype(),
                          device=z.device)

    @classmethod
    def checkpoint_estimator(cls, latent: int, batch: int) -> Estimator:
        from estimators import get

        if cls.classes**latent * batch <= MAX_EXACT_TRAINING:
            return get("exact")
        return get("gumbel-softmax", temperature=1.0)

    def one_hot(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Class indices [..., D] or simplex points [..., D, K] -> the decoder's input [..., D K]."""
        if not z.is_floating_point():
            z = F.one_hot(z.long(), self.classes).to(dtype)
        return z.flatten(-2)

    def log_likelihood(self, x: torch.Tensor):
        """f(z) = log p(x | z) for class indices [n, *B, D] or simplex points [n, *B, D, K] -> [n, *B]. Where
        the indices are the same for every image (an expanded view, as the ``exact`` estimator passes its
        enumeration), the decoder runs once per configuration."""
        general = super().log_likelihood(x)

        def f(z: torch.Tensor) -> torch.Tensor:
            once = None if z.is_floating_point() else \
                decoded_once(lambda rows: self.decoder(self.one_hot(rows, x.dtype)), z, x)
            return general(self.one_hot(z, x.dtype)) if once is None else once

        return f

    def enumerated(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every configuration z [M, D] with log p(x | z) [B, M], the encoder's logits [B, D, K] and
        log q(z | x) [B, M]."""
        z = category_grid(self.latent, self.classes, x.device)
        log_lik = outcome_log_likelihood(self.decoder(self.one_hot(z, x.dtype)), x).T  # [B, M]
        logits = self.encoder(x)
        log_q = torch.log_softmax(logits, -1)[:, torch.arange(self.latent, device=x.device), z].sum(-1)  # [B, M]
        return z, log_lik, logits, log_q

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        _, log_lik, logits, log_q = self.enumerated(x)
        return (log_q.exp() * log_lik).sum(-1) - kl_to_uniform(logits)

    @torch.no_grad()
    def test_elbo(self, x: torch.Tensor, n_samples: int = 10) -> torch.Tensor:
        """Exact (enumerated) where K^D x images is within MAX_EXACT_EVALUATIONS, else the Monte Carlo ELBO."""
        if self.classes**self.latent * x.shape[0] <= MAX_EXACT_EVALUATIONS:
            return self.exact_elbo(x)
        return self.elbo(x, n_samples)


@builtin
class VAEDigitsCategorical(VAEProblem):
    name = "vae-digits-categorical"
    description = (f"VAE with categorical latents (D variables of {CLASSES} classes, uniform prior) on the 8x8 "
                   f"digits, binarized; encoder gradient exact by enumerating the {CLASSES}^D configurations")
    data_kind = "digits"
    model_type = CategoricalVAE
    family = "categorical"
    reference = "reinforce-loo"
    by_default = False
    axes = (*VAEProblem.axes[:2], Option("latent", int, (4,), f"categorical latent variables, {CLASSES} classes each",
                                         check=at_least(1)), *VAEProblem.axes[3:])
    report_study = dict(checkpoint=["untrained", "trained"], batch=[16], latent=[4], n_samples=[4], replicates=300,
                        train_steps=300)
    report_study_quick = dict(checkpoint=["untrained"], batch=[16], latent=[4], n_samples=[4], replicates=50,
                              train_steps=60)

    def true_gradient(self, setting: VAESetting, ctx: Context) -> dict[str, torch.Tensor] | None:
        if CLASSES**setting.latent * setting.batch > MAX_EXACT_EVALUATIONS:
            return None
        return {"encoder": exact_gradient(type(self), setting, ctx)}

    def outcomes(self, setting: VAESetting) -> int:
        return CLASSES**setting.latent

    def exact_objective(self, model: CategoricalVAE, x: torch.Tensor, setting: VAESetting) -> torch.Tensor:
        return model.exact_elbo(x)


__all__ = ["CategoricalVAE", "VAEDigitsCategorical", "category_grid"]
