"""reinforce-optimal: REINFORCE with the variance-minimizing constant baseline per coordinate."""

from __future__ import annotations

from typing import Any

import torch

from estimators import Estimator, Surrogate, evaluate, gaussian_parameters, parameter_surrogate


def per_sample_scores(dist: Any, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, event_ndims: int):
    """d log p(x_i) / d(loc, scale) for each sample, [n, *B, *E] each, by autograd through log_prob."""
    n = x.shape[0]
    with torch.enable_grad():
        loc_i = loc.detach().expand(n, *loc.shape).clone().requires_grad_(True)
        scale_i = scale.detach().expand(n, *scale.shape).clone().requires_grad_(True)
        d = torch.distributions.Normal(loc_i, scale_i, validate_args=False)
        if event_ndims:
            d = torch.distributions.Independent(d, event_ndims)
        return torch.autograd.grad(d.log_prob(x).sum(), (loc_i, scale_i))


class ReinforceOptimal(Estimator):
    """Score function with the per-coordinate optimal constant baseline, estimated leave-one-out.

    For coordinate j of a parameter (mu or sigma), with score s_ij = d log p(x_i) / d theta_j,
    Var((f - b) s_j) is smallest at b*_j = E[f s_j^2] / E[s_j^2]. Estimated without sample i:

        b_ij = sum_{k != i} f_k s_kj^2 / sum_{k != i} s_kj^2,   g_j = (1/n) sum_i (f_i - b_ij) s_ij,

    unbiased because b_ij does not depend on x_i.
    Requires: a Normal (or Independent(Normal, 1)) distribution, n >= 2.
    Greensmith, Bartlett & Baxter 2004; Mohamed et al. 2020, section 7.2.
    """

    name = "reinforce-optimal"
    description = "REINFORCE with the variance-minimizing baseline per coordinate, estimated leave-one-out"
    min_samples = 2
    supports = ("normal",)
    unbiased = True
    f_evals_per_draw = 1

    def surrogate(self, dist, f, n_samples, state=None):
        loc, scale, event_ndims = gaussian_parameters(dist, self.name)
        x = dist.sample((n_samples,))  # [n, *B, *E]
        fx = evaluate(f, x, dist, n_samples)  # [n, *B]
        fe = fx.detach().reshape(*fx.shape, *([1] * event_ndims))  # [n, *B, 1...]
        estimates = []
        for p, s in zip((loc, scale), per_sample_scores(dist, x, loc, scale, event_ndims), strict=True):
            s2 = s * s
            num = (fe * s2).sum(0, keepdim=True) - fe * s2
            den = s2.sum(0, keepdim=True) - s2
            b = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 0.0)
            estimates.append((p, ((fe - b) * s).mean(0)))
        return Surrogate(loss=parameter_surrogate(fx, estimates, len(dist.batch_shape)), f=fx.detach())
