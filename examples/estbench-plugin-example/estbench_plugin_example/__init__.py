"""An installable estbench plugin (see the README's tutorial)."""

import torch

from estimators import Estimator, Surrogate, evaluate, score_surrogate


class ReinforceMedian(Estimator):
    """REINFORCE with a leave-one-out median baseline: b_i = median of f over the other samples.

    b_i does not depend on x_i, so the estimate is unbiased. Requires: n_samples >= 2.
    """

    name = "reinforce-median"
    description = "REINFORCE with a leave-one-out median baseline"
    min_samples = 2

    def surrogate(self, dist, f, n_samples, state=None):
        x = dist.sample((n_samples,))  # [n, *batch, *event]; no gradient through x
        fx = evaluate(f, x, dist, n_samples)  # [n, *batch], shape checked
        fd = fx.detach()
        baseline = torch.stack([torch.cat([fd[:i], fd[i + 1 :]]).median(0).values for i in range(n_samples)])
        return Surrogate(loss=score_surrogate(fx, dist.log_prob(x), baseline), f=fd)
