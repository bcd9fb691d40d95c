"""Estimators that evaluate f on a set of distinct outcomes: sum-and-sample and the unordered set
estimator. Both see a factorized Bernoulli or categorical distribution (D coordinates, Independent
over the last dimension, or one variable) through its joint domain of M = classes^D outcomes,
enumerated (at most MAX_JOINT): the joint log-probability of every outcome, the top-k and
Gumbel-top-k over it. Their cost in f is what the papers count (k + n, n k evaluations); the
enumeration costs O(M) per estimate in log-probabilities, not in f.

- ``sum-and-sample``: Liu, Regier, Tripuraneni, Jordan & McAuliffe 2019 ("Rao-Blackwellized
  stochastic gradients for discrete distributions", ICML), eq. 5: C the k most probable outcomes,
  q = p(C); E f = sum_{c in C} p(c) f(c) + (1 - q) E[f(z) | z not in C], so

      g = grad sum_{c in C} p(c) f(c) + (1 - q) (1/n) sum_i (f(z_i) - b_i) grad log p(z_i),

  z_1..z_n drawn from p restricted to the complement of C (Gumbel-max with C masked), b_i the
  mean of the other f(z_j) for n >= 2 (a leave-one-out baseline among draws of the same restricted
  distribution; 0 at n = 1, the paper's plain REINFORCE). The score of p (not of p restricted) has
  mean grad log(1 - q) under the restricted draws, so the baseline's share b grad(1 - q) is added back
  and the estimate stays unbiased. C depends on theta only
  through a ranking, locally constant, so it is not differentiated. k + n evaluations of f.
  Option ``k``; k >= M sums every outcome (exact).
- ``unordered-set``: Kool, van Hoof & Welling 2020 ("Estimating gradients for discrete random
  variables by sampling without replacement", ICLR), eq. 11 and 17 with the built-in baseline: S a
  set of k distinct outcomes drawn without replacement (Gumbel-top-k), p(S) the probability of the
  unordered set (sum over its k! orders of prod_i p(s_i) / (1 - sum_{j<i} p(s_j))),
  R(S, s) = p^{D\\s}(S \\ {s}) / p(S) the leave-one-out ratio, and

      g = sum_{s in S} grad p(s) R(S, s) (f(s) - B_s),
      B_s = sum_{s' in S} p(s') R^{D\\s}(S, s') f(s'),  R^{D\\s}(S, s') = p^{D\\{s,s'}}(S \\ {s,s'}) / p^{D\\s}(S \\ {s}),
      R^{D\\s}(S, s) = 1,

  (B_s has expectation E f whatever s, which makes it a baseline, Kool et al. Theorem 4; at k = 1
  there is no other outcome to build it from, and B = 0, REINFORCE over the one draw); the value
  sum_s p(s) R(S, s) f(s) estimates E f without bias, and its gradient carries that of f itself.
  The set probabilities are sums over orders (exact, k <= MAX_SET), in float64. n independent sets
  are averaged: n k evaluations of f. Option ``k``.

Requires: a Bernoulli or categorical distribution (optionally Independent over its last dimension)
with at most MAX_JOINT joint outcomes.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.distributions import Bernoulli, Distribution

from .base import Estimator, EstimatorError, Function, Surrogate, dist_name, evaluate
from .discrete import coordinate_log_probs, discrete_parts, joint_log_probs, outcome_grid
from .options import Option, at_least
from .registry import builtin
from .uniforms import minus_log_, uniforms

#: the most joint outcomes (classes^D) the set estimators enumerate, and outcomes x batch at once
MAX_JOINT = 1 << 16
MAX_JOINT_BATCH = 1 << 24
#: the largest set unordered-set takes (its set probabilities sum over k! orders)
MAX_SET = 6


class JointDomain:
    """The joint outcomes of a factorized Bernoulli / categorical distribution: ``log_p`` [*B, M], each
    outcome's joint log-probability (differentiable in the logits), and ``values(idx)`` the outcomes at
    indices idx [..., *B] as f takes them ([..., *B, *E]: 0/1 floats or class indices)."""

    def __init__(self, dist: Distribution, name: str):
        base, logits, event_ndims = discrete_parts(dist, name)
        bernoulli = isinstance(base, Bernoulli)
        per = coordinate_log_probs(base, logits, event_ndims)  # [*B, D, C]
        d, classes = per.shape[-2], per.shape[-1]
        if classes**d > MAX_JOINT:
            raise EstimatorError(f"estimator {name!r} enumerates at most {MAX_JOINT} joint outcomes; "
                                 f"{dist_name(dist)} has {classes}^{d}", capability=True)
        batch = per.shape[:-2]
        if classes**d * batch.numel() > MAX_JOINT_BATCH:
            raise EstimatorError(f"estimator {name!r}: {classes}^{d} joint outcomes x a batch of {batch.numel()} is "
                                 f"more than {MAX_JOINT_BATCH} log-probabilities at once", capability=True)
        self.grid = outcome_grid(classes, d, logits.device)  # [M, D]
        self.log_p = joint_log_probs(per)  # [*B, M]
        self.bernoulli, self.event_ndims, self.dtype = bernoulli, event_ndims, logits.dtype
        self.size = len(self.grid)

    def values(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.grid[idx]  # [..., *B, D]
        if self.bernoulli:
            x = x.to(self.dtype)
        return x if self.event_ndims else x[..., 0]

    def log_prob_at(self, idx: torch.Tensor) -> torch.Tensor:
        """log p at indices idx [m, *B, j] -> [m, *B, j], differentiable."""
        lp = self.log_p.unsqueeze(0).expand(idx.shape[0], *self.log_p.shape)
        return lp.gather(-1, idx)


def evaluate_at(f: Function, domain: JointDomain, idx: torch.Tensor, dist: Distribution) -> torch.Tensor:
    """f at the outcomes idx [m, *B, j] -> [m, *B, j] (f called once on all m j of them)."""
    m, j = idx.shape[0], idx.shape[-1]
    x = domain.values(idx.movedim(-1, 0).reshape(j * m, *idx.shape[1:-1]))  # [j m, *B, *E]
    fx = evaluate(f, x, dist, j * m)
    return fx.reshape(j, m, *fx.shape[1:]).movedim(0, -1)


def gumbel_top(log_p: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """n independent draws of k distinct outcomes without replacement (Gumbel-top-k), [n, *B, k]."""
    # the Gumbel noise -log E, E ~ Exp(1) = -log u, finished block by block in the cache (uniforms)
    log_e = uniforms((n, *log_p.shape), log_p.dtype, log_p.device, lambda u: minus_log_(u).log_())
    return (log_p.detach() - log_e).topk(k, -1).indices


def set_probability(p: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Probability of drawing, without replacement, the unordered set whose members have probabilities
    p [..., m] (float64) from the domain with mass ``removed`` [...] taken out and renormalized:
    sum over the m! orders of prod_i p_i / (1 - removed - sum_{j<i} p_j). m = 0: 1."""
    m = p.shape[-1]
    if m == 0:
        return torch.ones_like(removed)
    orders = torch.tensor(list(itertools.permutations(range(m))), device=p.device)  # [m!, m]
    q = p[..., orders]  # [..., m!, m]
    before = q.cumsum(-1) - q
    left = (1 - removed[..., None, None] - before).clamp(min=torch.finfo(p.dtype).tiny)
    return (q / left).prod(-1).sum(-1)


def leave_one_out_ratios(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R [..., k], Rsnd [..., k, k]) of Kool et al. from the set's member probabilities p [..., k], float64:
    R_i = p^{D\\i}(S\\i) / p(S); Rsnd_ij = p^{D\\{i,j}}(S\\{i,j}) / p^{D\\i}(S\\i), Rsnd_ii = 1."""
    k = p.shape[-1]
    rest = torch.tensor([[j for j in range(k) if j != i] for i in range(k)], device=p.device, dtype=torch.long)
    without_i = set_probability(p[..., rest], p)  # [..., k]
    r = without_i / set_probability(p, torch.zeros_like(p[..., 0]))[..., None]
    if k == 1:
        return r, torch.ones_like(p[..., None])
    pairs = torch.tensor([[[m for m in range(k) if m not in (i, j)] if i != j else [m for m in range(k) if m != i][:-1]
                           for j in range(k)] for i in range(k)], device=p.device, dtype=torch.long)  # [k, k, k-2]
    removed = p[..., :, None] + p[..., None, :]  # [..., k, k]
    without_ij = set_probability(p[..., pairs], removed)
    eye = torch.eye(k, dtype=torch.bool, device=p.device)
    return r, torch.where(eye, torch.ones_like(removed), without_ij / without_i[..., None])


K_OPTION_HELP = "outcomes summed exactly (the k most probable), >= 1"


@builtin
class SumAndSample(Estimator):
    """Sum-and-sample (Liu et al. 2019): the k most probable outcomes summed exactly, n draws from the
    rest weighted by its mass. Unbiased. Requires: Bernoulli or categorical, at most MAX_JOINT outcomes."""

    name = "sum-and-sample"
    description = "sum-and-sample: k most probable outcomes summed exactly, REINFORCE on the rest (Rao-Blackwellized)"
    supports = ("bernoulli", "categorical")
    unbiased = True
    f_evals_per_draw = None  # k + n per estimate
    exact_when = "where its k summed outcomes leave at most one: the draw from the rest is then certain"
    report_axes = ("K",)
    options = (Option("k", int, (3,), K_OPTION_HELP, check=at_least(1), report=(1, 3, 8), report_quick=(3,)),)
    k: int

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        domain = JointDomain(dist, self.name)
        k = min(self.k, domain.size)
        top = domain.log_p.detach().topk(k, -1).indices.unsqueeze(0)  # [1, *B, k]
        lp_top = domain.log_prob_at(top)
        f_top = evaluate_at(f, domain, top, dist)  # [1, *B, k]
        summed = (lp_top.exp() * f_top).sum(-1)[0]  # [*B]: differentiable in p and in f
        rest = 1 - lp_top.exp().sum(-1)[0]  # 1 - q, differentiable
        if k == domain.size:  # every outcome summed: exact
            return Surrogate(loss=summed, f=f_top[0].movedim(-1, 0).detach())
        masked = domain.log_p.detach().scatter(-1, top[0], float("-inf"))
        z = gumbel_top(masked, n_samples, 1)  # [n, *B, 1], from p restricted to the complement
        lp_z = domain.log_prob_at(z)[..., 0]
        f_z = evaluate_at(f, domain, z, dist)[..., 0]  # [n, *B]
        fd = f_z.detach()
        baseline = (fd.sum(0, keepdim=True) - fd) / (n_samples - 1) if n_samples > 1 else torch.zeros_like(fd)
        sampled = (f_z + (fd - baseline) * (lp_z - lp_z.detach())).mean(0)
        # the score of p, not of p restricted to the complement, has mean grad log(1 - q) there: the baseline's
        # share of it is given back, b grad(1 - q), so that the estimate stays unbiased for any b
        back = baseline.mean(0) * (rest - rest.detach())
        loss = summed + rest.detach().clamp(min=0) * sampled + back
        return Surrogate(loss=loss, f=torch.cat([f_top[0].movedim(-1, 0), f_z]).detach())


@builtin
class UnorderedSet(Estimator):
    """The unordered set estimator with its built-in baseline (Kool et al. 2020): k outcomes drawn without
    replacement, each weighted by p(s) R(S, s). Unbiased. Requires: Bernoulli or categorical, at most
    MAX_JOINT outcomes, k <= MAX_SET."""

    name = "unordered-set"
    description = "unordered set estimator: k outcomes without replacement, leave-one-out ratios, built-in baseline"
    supports = ("bernoulli", "categorical")
    unbiased = True
    f_evals_per_draw = None  # k per set, n sets per estimate
    exact_when = "where its k outcomes drawn without replacement are all the outcomes"
    report_axes = ("K",)
    options = (Option("k", int, (4,), f"outcomes drawn without replacement per set, 1 to {MAX_SET}",
                      check=at_least(1, MAX_SET), report=(2, 4), report_quick=(4,)),)
    k: int

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        domain = JointDomain(dist, self.name)
        k = min(self.k, domain.size)
        s = gumbel_top(domain.log_p, n_samples, k)  # [n, *B, k]
        lp = domain.log_prob_at(s)
        fx = evaluate_at(f, domain, s, dist)  # [n, *B, k]
        p64 = lp.detach().to(torch.float64).exp()
        r, rsnd = leave_one_out_ratios(p64)
        fd = fx.detach().to(torch.float64)
        # B_s, [n, *B, k]; with k = 1 there is no other outcome to build it from (Kool et al.'s needs k >= 2)
        baseline = (rsnd * (p64 * fd)[..., None, :]).sum(-1) if k > 1 else torch.zeros_like(fd)
        weight = (p64 * r).to(fx.dtype)
        signal = (r * (fd - baseline)).to(fx.dtype)
        p = lp.exp()
        loss = (weight * fx + signal * (p - p.detach())).sum(-1).mean(0)
        return Surrogate(loss=loss, f=fx.movedim(-1, 0).reshape(-1, *fx.shape[1:-1]).detach())


__all__ = ["JointDomain", "SumAndSample", "UnorderedSet", "leave_one_out_ratios", "set_probability"]
