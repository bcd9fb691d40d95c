"""reinforce-delta-cv: REINFORCE with a first-order Taylor (delta-method) control variate."""

from __future__ import annotations

import torch

from estimators import Estimator, EstimatorError, Surrogate, evaluate, gaussian_parameters, parameter_surrogate

from .optimal import per_sample_scores


class ReinforceDeltaCV(Estimator):
    """Score function with the delta-method control variate h(x) = f(m) + grad f(m)^T (x - m), m = mu:

        g = (1/n) sum_i (f(x_i) - h(x_i)) grad log p(x_i) + grad_theta E_p[h],

    where, with the expansion point m held fixed, E_p[h] = f(m) + grad f(m)^T (mu - m), so
    grad_mu E_p[h] = grad f(m) and grad_sigma E_p[h] = 0: the known expectation is added
    back and the estimate stays unbiased for any f.
    Requires: a Normal (or Independent(Normal, 1)) distribution and f differentiable at mu.
    Paisley, Blei & Jordan 2012; Mohamed et al. 2020, section 7.4.
    """

    name = "reinforce-delta-cv"
    description = "REINFORCE with a first-order Taylor control variate around the mean, expectation added back"
    supports = ("normal",)
    unbiased = True

    def surrogate(self, dist, f, n_samples, state=None):
        loc, scale, event_ndims = gaussian_parameters(dist, self.name)
        x = dist.sample((n_samples,))  # [n, *B, *E]
        fx = evaluate(f, x, dist, n_samples)  # [n, *B]
        with torch.enable_grad():
            m = loc.detach().unsqueeze(0).clone().requires_grad_(True)  # [1, *B, *E]
            fm = evaluate(f, m, dist, 1)  # [1, *B]
            if not fm.requires_grad:
                raise EstimatorError(f"estimator {self.name!r} needs f differentiable in x; f(mu) has no gradient")
            (grad_fm,) = torch.autograd.grad(fm.sum(), m)  # [1, *B, *E]
        shape = (*fx.shape, *([1] * event_ndims))
        dx = x - m.detach()
        event_dims = tuple(range(-event_ndims, 0)) if event_ndims else ()
        h = fm.detach() + ((grad_fm * dx).sum(event_dims) if event_dims else grad_fm * dx)  # [n, *B]
        w = (fx.detach() - h).reshape(shape)
        s_loc, s_scale = per_sample_scores(dist, x, loc, scale, event_ndims)
        g_loc = (w * s_loc).mean(0) + grad_fm[0]
        g_scale = (w * s_scale).mean(0)
        return Surrogate(loss=parameter_surrogate(fx, [(loc, g_loc), (scale, g_scale)], len(dist.batch_shape)),
                         f=fx.detach())
