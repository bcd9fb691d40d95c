"""Tolerances for statistical tests, derived from a chosen false-failure rate.

Following TFP's statistical_testing: a test fixes the probability ``alpha``
that it fails although the code is right, for all of its assertions together,
and splits it over them (Bonferroni). Each assertion is then a two-sided
z-test: |estimate - expected| <= z * standard error, where the standard error
comes from the samples themselves.
"""

from __future__ import annotations

from statistics import NormalDist

import torch

#: false-failure rate of one whole test (all its assertions together)
ALPHA = 1e-3


def z_bound(n_assertions: int = 1, alpha: float = ALPHA, two_sided: bool = True) -> float:
    """The z such that n_assertions z-tests fail together with probability <= alpha."""
    per = alpha / n_assertions
    return NormalDist().inv_cdf(1 - (per / 2 if two_sided else per))


def variance_and_se(g: torch.Tensor) -> tuple[float, float]:
    """Coordinate-averaged unbiased variance of rows g [R, P] and its standard error.

    q_r = mean_c (g_rc - gbar_c)^2 * R / (R - 1) has mean equal to the sample
    variance averaged over coordinates; its standard error is std(q) / sqrt(R)
    (the O(1/R) dependence through gbar is negligible at the R used here).
    """
    g = g.to(torch.float64)
    R = g.shape[0]
    q = ((g - g.mean(0)) ** 2).mean(1) * (R / (R - 1))
    return q.mean().item(), (q.std() / R**0.5).item()
