"""The digits VAEs, Gaussian and binary, on the K-sample importance-weighted bound (objective
"multi-sample"; Burda et al. 2016):

    L_K(x) = E log (1/K) sum_k p(x, z_k) / q(z_k | x),   z_1..z_K ~ q(z | x) iid,

averaged over the fixed batch; the estimators receive estimators.Bound(log p(x, z), K) and the
encoder's q. Run by name (``--problem``): not in the default run; the default report runs each one's
study (``report_study``: the untrained checkpoint, batch 16, a few K; the binary one trains at each K). At K = 1
the bound is the ELBO with its KL estimated by Monte Carlo inside the log-weight (the expectation
problems vae-digits and vae-digits-binary take the KL in closed form).
The checkpoints are the expectation problems' (benchmarks.problems.vae); measured is the gradient
of the batch-mean bound with respect to the encoder's parameters, at both.

vae-digits-multisample         Gaussian latents. No exact gradient: agreement_z compares with the
                               mean of dreg (unbiased) in the same setting.
vae-digits-binary-multisample  Bernoulli latents. The gradient exact where the (2^latent)^K joint
                               configurations number at most 2^20 (latent 4 and K 4, latent 8 and
                               K 2): every tuple's bound weighted by its probability under q, in
                               float64, differentiated; above that, the mean of vimco.

Training curves: each estimator of the bound trains on the K-sample bound (elbo_train is that bound);
an estimator the problem names in ``elbo_companions`` (reinforce-loo for the binary VAE) trains beside
them on the ELBO with n_samples x K draws per image, the same log-weight evaluations per step (its rows
say ``objective`` expectation). The test curve is the test ELBO, the yardstick every curve shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from estimators import EXPECTATION, MULTI_SAMPLE, Bound, Estimator
from estimators.options import Option, at_least

from ..stats import VARIANCE_BATCH
from .base import Context, builtin, surrogate
from .binary_vae import ENUMERATION_MAX_LATENT, BinaryVAE, BinaryVAEProblem, exact_gradient
from .counting import counted
from .multisample import K_AXIS
from .training import train
from .vae import Prepared, VAEProblem

#: the most joint configurations (2^latent)^K whose bound the exact gradient enumerates
MAX_JOINT_CONFIGURATIONS = 1 << 20
#: tuples of configurations per step of the enumeration (memory: batch x this x K float64)
TUPLES_PER_STEP = 1 << 12


@dataclass(frozen=True)
class VAEBoundSetting:
    checkpoint: str
    hidden: int
    latent: int
    batch: int
    K: int


class _BoundVAE:
    """The K-sample bound on a VAE problem's model (a mixin before the VAE problem class)."""

    objective = MULTI_SAMPLE
    setting_type = VAEBoundSetting
    #: estimators of expectations whose training curves run beside the bound's: on the ELBO of the same model,
    #: with as many draws per image as the bound's K (curves only; their variance cells are skipped rows)
    elbo_companions: tuple[str, ...] = ()
    #: run by name (--problem): at K = 16 a cell costs about 8x the ELBO's, so the default run and report leave
    #: them out
    by_default = False

    def per_image(self, estimator: Estimator, setting: Any, prep: Prepared, out: torch.Tensor, n_samples: int,
                     state: Any) -> tuple[torch.Tensor, Any]:
        q = prep.model.q_from(out)
        bound = Bound(counted(prep.model.log_joint(prep.x), out.shape[0] * setting.batch), setting.K)
        sur = surrogate(estimator, q, bound, n_samples, state, out.shape[:-1], "one value per replicate and image")
        return sur.loss, sur.state

    def curve_setting(self, setting: VAEBoundSetting) -> VAEBoundSetting:
        return VAEBoundSetting("untrained", setting.hidden, setting.latent, setting.batch, setting.K)

    def chunk_size(self, setting: VAEBoundSetting, n_samples: int) -> int:
        # the decoder's activations of all K draws at about 2^21 elements, but a whole batch of the variance's
        # batch means at least (benchmarks.stats: without one, a cell has no interval)
        return max(VARIANCE_BATCH, (1 << 21) // (n_samples * setting.K * setting.batch * setting.hidden))

    def replicate_bytes(self, setting: VAEBoundSetting, n_samples: int, ctx: Context) -> int:
        return super().replicate_bytes(setting, n_samples * setting.K, ctx) + 8 * setting.K**2 * setting.batch

    def curve_objective(self, estimator: type[Estimator]) -> str:
        return EXPECTATION if estimator.name in self.elbo_companions else MULTI_SAMPLE

    def curve_unsupported(self, estimator: type[Estimator], setting: VAEBoundSetting, n_samples: int) -> str | None:
        if estimator.name in self.elbo_companions:  # on the ELBO with the bound's K draws per sample
            return estimator.unsupported(self.family, EXPECTATION, n_samples * setting.K)
        return estimator.unsupported(self.family, MULTI_SAMPLE, n_samples, K=setting.K)

    def curves(self, estimator: Estimator, setting: VAEBoundSetting, n_samples: int, ctx: Context) -> list[dict]:
        """Training curve on the K-sample bound; an ELBO companion (``elbo_companions``) trains on the
        single-sample ELBO instead, with n_samples x K draws per image: as many log-weight evaluations per
        step as the bound's estimators, so that the curves compare at equal cost."""
        model = self.model(self.curve_setting(setting), ctx)
        on_bound = type(estimator).name not in self.elbo_companions
        return train(model, self.dataset(ctx), estimator, ctx.train_steps, setting.batch,
                     n_samples if on_bound else n_samples * setting.K, seed=ctx.seed,
                     eval_every=max(1, ctx.train_steps // 20), eval_max=1000, K=setting.K if on_bound else None)


@builtin
class VAEDigitsMultiSample(_BoundVAE, VAEProblem):
    name = "vae-digits-multisample"
    description = ("the digits VAE on the K-sample importance-weighted bound (--K); encoder gradient compared "
                   "with the mean of dreg")
    data_kind = "digits"
    reference = "dreg"
    axes = (*VAEProblem.axes, K_AXIS)
    report_study = dict(checkpoint=["untrained"], batch=[16], K=[1, 4, 16, 64], n_samples=[1], replicates=200,
                        train_steps=0)
    report_study_quick = dict(checkpoint=["untrained"], batch=[16], K=[1, 16], n_samples=[1], replicates=100,
                              train_steps=0)


@builtin
class VAEDigitsBinaryMultiSample(_BoundVAE, BinaryVAEProblem):
    name = "vae-digits-binary-multisample"
    description = ("the binary-latent digits VAE on the K-sample bound (--K); encoder gradient exact by "
                   "enumerating the (2^latent)^K joint configurations where at most 2^20, else the mean of vimco")
    data_kind = "digits"
    reference = "vimco"
    elbo_companions = ("reinforce-loo",)
    report_study = dict(checkpoint=["untrained"], batch=[16], latent=[4], K=[1, 2, 4], n_samples=[1], replicates=300,
                        train_steps=300)
    report_study_quick = dict(checkpoint=["untrained"], batch=[16], latent=[4], K=[2, 4], n_samples=[1],
                              replicates=50, train_steps=60)
    axes = (*BinaryVAEProblem.axes[:2], Option("latent", int, (4,), "latent size", check=at_least(1)),
            *BinaryVAEProblem.axes[3:], K_AXIS)

    def true_gradient(self, setting: VAEBoundSetting, ctx: Context) -> dict[str, torch.Tensor] | None:
        if setting.latent > ENUMERATION_MAX_LATENT or (1 << setting.latent) ** setting.K > MAX_JOINT_CONFIGURATIONS:
            return None
        return {"encoder": exact_gradient(type(self), setting, ctx)}

    def exact_objective(self, model: BinaryVAE, x: torch.Tensor, setting: VAEBoundSetting) -> torch.Tensor:
        return exact_bound(model, x, setting.K)


def exact_bound(model: BinaryVAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """The K-sample bound of each image [B] by enumerating every tuple of K latent configurations,
    differentiable in the encoder's and decoder's parameters. The tuples go TUPLES_PER_STEP at a time;
    each step's gradient is taken at once, so memory stays at one step's."""
    z, log_lik, _, log_q = model.enumerated(x)  # [M, L], [B, M], -, [B, M]
    log_w = log_lik + model.log_prior(z) - log_q  # [B, M]
    m = z.shape[0]
    lw, lq = log_w.detach().requires_grad_(True), log_q.detach().requires_grad_(True)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    g_w, g_q = torch.zeros_like(lw), torch.zeros_like(lq)
    for start in range(0, m**k, TUPLES_PER_STEP):
        codes = torch.arange(start, min(start + TUPLES_PER_STEP, m**k), device=x.device)
        idx = torch.stack([(codes // m**j) % m for j in range(k)], -1)  # [T, K]
        part = ((lq[:, idx].sum(-1)).exp() * (torch.logsumexp(lw[:, idx], -1) - math.log(k))).sum(-1)  # [B]
        dw, dq = torch.autograd.grad(part.sum(), (lw, lq))
        g_w, g_q, total = g_w + dw, g_q + dq, total + part.detach()
    # value: the enumerated bound; gradient: carried from log_w and log_q to the parameters
    return total + (g_w * (log_w - log_w.detach())).sum(-1) + (g_q * (log_q - log_q.detach())).sum(-1)


__all__ = ["VAEBoundSetting", "VAEDigitsBinaryMultiSample", "VAEDigitsMultiSample", "exact_bound"]
