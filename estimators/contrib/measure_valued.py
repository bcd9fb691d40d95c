"""measure-valued: the weak (measure-valued) derivative of a Gaussian, with coupling."""

from __future__ import annotations

import math

import torch
from torch.distributions import Chi2, Exponential

from estimators import Estimator, Surrogate, evaluate, gaussian_parameters, parameter_surrogate

#: bound on the elements of one batch of perturbed samples [m, n, *B, D]
BLOCK_ELEMENTS = 1 << 22


def _rayleigh(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """W ~ Rayleigh(1), i.e. Weibull(scale=sqrt(2), concentration=2): density w exp(-w^2 / 2), w >= 0, drawn as the
    square root of an Exponential(rate 1/2) (chi^2 with 2 degrees of freedom). torch's Weibull is a transformed
    distribution whose construction broadcasts shapes through torch._refs, whose first use imports sympy (0.5 s),
    and it drew at about half this speed."""
    return Exponential(torch.tensor(0.5, dtype=like.dtype, device=like.device)).sample(shape).sqrt()


def _double_sided_maxwell(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """M with density m^2 exp(-m^2 / 2) / sqrt(2 pi): a random sign times sqrt(chi^2_3)."""
    radius = Chi2(torch.tensor(3.0, dtype=like.dtype, device=like.device)).sample(shape).sqrt()
    sign = torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1
    return sign * radius


class MeasureValued(Estimator):
    """Measure-valued derivative of x ~ N(mu, sigma^2), coordinate by coordinate (Mohamed et al. 2020, sec. 6):

        d/dmu_j    E f = 1 / (sigma_j sqrt(2 pi)) E[ f(x with x_j = mu_j + sigma_j W) - f(x with x_j = mu_j - sigma_j W) ]
        d/dsigma_j E f = 1 / sigma_j              E[ f(x with x_j = mu_j + sigma_j M) - f(x with x_j = mu_j + sigma_j M U) ]

    W ~ Rayleigh (Weibull(sqrt 2, 2); the square root of an Exponential(1/2)); M ~ double-sided Maxwell; U ~ Uniform(0, 1): so
    M U ~ N(0, 1) is the negative part's sample. Coupling: the positive and negative parts share
    W (resp. M) and every other coordinate x_{-j}, which keeps their difference small.
    Needs only values of f: 4 * dim evaluations per sample.
    Requires: a Normal (or Independent(Normal, 1)) distribution.
    Pflug 1989; Heidergott & Vazquez-Abad 2000; Mohamed et al. 2020, section 6.3.
    """

    name = "measure-valued"
    description = "measure-valued derivative (Weibull / double-sided Maxwell parts, coupled); values of f only"
    supports = ("normal",)
    unbiased = True
    f_evals_per_draw = None  # 1 + 4 x dim per sample: depends on the setting
    exact_when = ("its mean's gradient where f is even about the mean: the mirrored points mu +- sigma W give equal f, "
                  "each estimate 0 (cos at mu = 0, the quadratic at mu = k)")

    def surrogate(self, dist, f, n_samples, state=None):
        loc, scale, event_ndims = gaussian_parameters(dist, self.name)
        x = dist.sample((n_samples,))  # [n, *B, *E]
        fx = evaluate(f, x, dist, n_samples)  # [n, *B]
        loc_d, scale_d = loc.detach(), scale.detach()
        if event_ndims == 0:  # independent batch elements: perturb each element in place
            g_loc, g_scale = self._one_block(f, dist, x.unsqueeze(-1), loc_d.unsqueeze(-1), scale_d.unsqueeze(-1),
                                             0, 1, n_samples, squeeze=True)
            g_loc, g_scale = g_loc.squeeze(-1), g_scale.squeeze(-1)
        else:
            dim = x.shape[-1]
            per = max(1, BLOCK_ELEMENTS // max(1, x.numel()))
            parts = [self._one_block(f, dist, x, loc_d, scale_d, j0, min(per, dim - j0), n_samples, squeeze=False)
                     for j0 in range(0, dim, per)]
            g_loc = torch.cat([p[0] for p in parts], -1)
            g_scale = torch.cat([p[1] for p in parts], -1)
        loss = parameter_surrogate(fx, [(loc, g_loc), (scale, g_scale)], len(dist.batch_shape))
        return Surrogate(loss=loss, f=fx.detach())

    @staticmethod
    def _one_block(f, dist, x, loc, scale, j0: int, m: int, n: int, squeeze: bool):
        """Estimates for coordinates j0..j0+m-1; x [n, *B, D], loc/scale [*B, D] -> ([*B, m], [*B, m])."""
        cols = torch.arange(j0, j0 + m, device=x.device)
        mu = loc[..., cols].movedim(-1, 0).unsqueeze(1)  # [m, 1, *B]
        sd = scale[..., cols].movedim(-1, 0).unsqueeze(1)
        noise_shape = torch.Size((m, *x.shape[:-1]))  # [m, n, *B]
        w = _rayleigh(noise_shape, x)
        mx = _double_sided_maxwell(noise_shape, x)
        u = torch.rand(noise_shape, dtype=x.dtype, device=x.device)
        values = torch.stack([mu + sd * w, mu - sd * w, mu + sd * mx, mu + sd * mx * u])  # [4, m, n, *B]

        xs = x.unsqueeze(0).unsqueeze(0).expand(4, m, *x.shape).clone()  # [4, m, n, *B, D]
        rows = torch.arange(m, device=x.device)
        xs[:, rows, ..., cols] = values.movedim(1, 0)  # the indexed view is [m, 4, n, *B]
        flat = xs.reshape(4 * m * n, *x.shape[1:])
        flat = flat.squeeze(-1) if squeeze else flat
        with torch.no_grad():  # values only: the estimates enter the surrogate detached (parameter_surrogate)
            # f sees n draws a call, as many as in f(x): a problem sizes its chunks for that, and 4 x m times as many
            # at once (the digits VAE's decoder activations 32x its chunk's, 256 MB) made each cell twice as slow
            fv = torch.cat([f(piece) for piece in flat.split(n)])
        fv = fv.reshape(4, m, n, *x.shape[1:-1])  # [4, m, n, *B]
        sd0 = sd.squeeze(1)  # [m, *B]
        g_loc = (fv[0] - fv[1]).mean(1) / (sd0 * math.sqrt(2 * math.pi))
        g_scale = (fv[2] - fv[3]).mean(1) / sd0
        return g_loc.movedim(0, -1), g_scale.movedim(0, -1)
