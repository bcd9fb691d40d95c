"""Estimators for discrete distributions: Bernoulli and categorical variables.

Notation: logits theta (the parameters of Bernoulli(sigmoid(theta)) or Categorical(softmax(theta))),
n draws per estimate, f evaluated at outcomes b (or, for the relaxed estimators, at points
between them). Each returns a surrogate whose gradient with respect to the logits is the
estimate g below (estimators.base.parameter_surrogate; relaxed ones are pathwise).

- ``arm``: Yin & Zhou 2019. u ~ U(0, 1)^d, b = 1[u < sigmoid(theta)], b' = 1[1 - u < sigmoid(theta)]
  (an antithetic pair, each marginally Bernoulli(sigmoid(theta))):
  g = (f(b') - f(b)) (u - 1/2). Unbiased. 2 evaluations of f per draw.
- ``disarm``: Dong, Mnih & Tucker 2020, eq. 6 (the google-research/disarm code): the same pair,
  g_i = 1/2 (f(b) - f(b')) (-1)^{b'_i} 1[b_i != b'_i] sigmoid(|theta_i|). Unbiased; ARM
  Rao-Blackwellized over u given the pair. 2 evaluations of f per draw.
- ``gumbel-softmax``: Jang et al. 2017, Maddison et al. 2017 (Concrete): z = sigmoid((theta + L) / tau)
  with L logistic noise (Bernoulli), or z = softmax((theta + G) / tau) with G Gumbel noise
  (categorical); g = grad_theta f(z), f evaluated at the relaxed z. Biased for any tau > 0.
- ``straight-through``: Gumbel straight-through: f evaluated at the hard sample H(z) (an exact
  draw), the gradient taken through the relaxed z as if H were the identity. Biased.
- ``exact``: the expectation itself, sum over every outcome of p(b) f(b), differentiated exactly
  (up to 2^20 outcomes). Zero variance; 2^d (K^d) evaluations of f. The reference of the
  discrete problems.

Requires: a Bernoulli (arm, disarm) or a Bernoulli or categorical distribution, optionally
wrapped in Independent over its last dimension.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Bernoulli, Categorical, Distribution

from .base import Estimator, EstimatorError, Function, Surrogate, dist_name, evaluate, made_once, parameter_surrogate, unwrap
from .options import Option, positive
from .registry import builtin

#: the most outcomes ``exact`` enumerates, and the most evaluations of f (outcomes x batch) per call
MAX_OUTCOMES = 1 << 20
MAX_EVALUATIONS = 1 << 24

TEMPERATURE = Option("temperature", float, (1.0,), "temperature tau of the Gumbel-softmax (Concrete) relaxation, > 0",
                     check=positive, report=(0.1, 0.3, 1.0, 3.0), report_quick=(0.3, 1.0))


def discrete_parts(dist: Distribution, estimator: str, kinds: tuple[type, ...] = (Bernoulli, Categorical)):
    """(base distribution, logits [*B, *E] (categorical: [*B, *E, K]), event dims) of a Bernoulli
    or categorical distribution, seeing through Independent; a capability EstimatorError otherwise."""
    base, event_ndims = unwrap(dist)
    if type(base) not in kinds or event_ndims > 1:
        allowed = " or ".join(k.__name__ for k in kinds)
        raise EstimatorError(f"estimator {estimator!r} needs a {allowed} distribution (optionally Independent over "
                             f"its last dimension), got {dist_name(dist)}", capability=True)
    return base, base.logits, event_ndims


def outcome_digits(classes: int, d: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """All classes^d outcomes of d coordinates, [M, d] int64, in itertools.product's order (the first
    coordinate the slowest): the digits of 0 .. classes^d - 1 in base ``classes`` (bit operations for two)."""
    codes, places = torch.arange(classes**d, device=device)[:, None], torch.arange(d - 1, -1, -1, device=device)
    return (codes >> places) & 1 if classes == 2 else codes // classes**places % classes


@made_once(maxsize=32)
def outcome_grid(classes: int, d: int, device: torch.device) -> torch.Tensor:
    """outcome_digits, made once per (classes, d, device) and not written to."""
    return outcome_digits(classes, d, device)


def coordinate_log_probs(base: Distribution, logits: torch.Tensor, event_ndims: int) -> torch.Tensor:
    """log p of every class of every coordinate, [*B, D, C] (a Bernoulli's classes 0 and 1; D = 1 without
    an event dimension), differentiable in the logits."""
    per = torch.stack([torch.nn.functional.logsigmoid(-logits), torch.nn.functional.logsigmoid(logits)], -1) \
        if isinstance(base, Bernoulli) else torch.log_softmax(logits, -1)  # [*B, *E, C]
    return per if event_ndims else per.unsqueeze(-2)


def joint_log_probs(per: torch.Tensor) -> torch.Tensor:
    """The joint log p of every outcome of outcome_grid's order, [*B, C^D], from coordinate_log_probs [*B, D, C].

    sum_d per[..., d, grid[m, d]] as an outer sum, coordinate by coordinate (the first the slowest, as in the
    grid): D broadcast adds of [*B, C^d, C], whose backward is sums, instead of a gather of [*B, M, D] (whose
    backward, an index_put of M x D entries per batch element, cost a binary VAE's training step more than its
    own matmuls) or the distribution's log_prob at [M, *B, D] expanded outcomes (D times the elements, each a
    log-sigmoid)."""
    log_p = per[..., 0, :]
    for j in range(1, per.shape[-2]):
        log_p = (log_p[..., :, None] + per[..., j, None, :]).flatten(-2)
    return log_p


def _per_draw(fx: torch.Tensor, event_ndims: int) -> torch.Tensor:
    """f values [n, *B] broadcast over the event dimensions, [n, *B, 1...]."""
    return fx.reshape(*fx.shape, *([1] * event_ndims))


def antithetic_pair(theta: torch.Tensor, sample_shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """(u, b, b') of ARM's antithetic pair for logits ``theta`` (detached): u ~ U(0, 1) of shape
    [*sample_shape, *theta.shape], b = 1[u < sigmoid(theta)], b' = 1[1 - u < sigmoid(theta)]."""
    u = torch.rand((*sample_shape, *theta.shape), dtype=theta.dtype, device=theta.device)
    p = torch.sigmoid(theta)
    return u, (u < p).to(theta.dtype), ((1 - u) < p).to(theta.dtype)


def disarm_gradient(b1: torch.Tensor, b2: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
                    logits: torch.Tensor) -> torch.Tensor:
    """DisARM's estimate in the logits from one pair: 1/2 (f(b) - f(b')) (-1)^{b'} 1[b != b'] sigmoid(|theta|)."""
    sign = 1 - 2 * b2  # (-1)^{b'}
    return 0.5 * (f1 - f2) * sign * (b1 != b2).to(logits.dtype) * torch.sigmoid(logits.abs())


class _AntitheticBernoulli(Estimator):
    """ARM and DisARM share the antithetic pair; subclasses give the per-draw gradient."""

    supports = ("bernoulli",)
    unbiased = True
    f_evals_per_draw = 2

    def pair_gradient(self, u: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
                      logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        _, logits, event_ndims = discrete_parts(dist, self.name, (Bernoulli,))
        theta = logits.detach()
        u, b1, b2 = antithetic_pair(theta, (n_samples,))  # [n, *B, *E]
        f1, f2 = evaluate(f, b1, dist, n_samples), evaluate(f, b2, dist, n_samples)  # [n, *B]
        g = self.pair_gradient(u, b1, b2, _per_draw(f1.detach(), event_ndims), _per_draw(f2.detach(), event_ndims),
                               theta).mean(0)  # [*B, *E]
        fx = (f1 + f2) / 2  # each of the pair is a draw of b: the value is the Monte Carlo average of f
        loss = parameter_surrogate(fx, [(logits, g)], len(dist.batch_shape))
        return Surrogate(loss=loss, f=torch.cat([f1, f2]).detach())


@builtin
class ARM(_AntitheticBernoulli):
    """ARM (Yin & Zhou 2019): g = (f(b') - f(b)) (u - 1/2), b = 1[u < sigmoid(theta)],
    b' = 1[1 - u < sigmoid(theta)]. Requires: Bernoulli."""

    name = "arm"
    description = "ARM: antithetic pair b = 1[u < p], b' = 1[1-u < p], g = (f(b') - f(b))(u - 1/2) (Bernoulli)"

    def pair_gradient(self, u, b1, b2, f1, f2, logits):
        return (f2 - f1) * (u - 0.5)


@builtin
class DisARM(_AntitheticBernoulli):
    """DisARM (Dong, Mnih & Tucker 2020, eq. 6): g_i = 1/2 (f(b) - f(b')) (-1)^{b'_i}
    1[b_i != b'_i] sigmoid(|theta_i|), the same pair as ARM. Requires: Bernoulli."""

    name = "disarm"
    description = "DisARM: ARM's pair, g_i = (f(b) - f(b'))/2 (-1)^b'_i 1[b_i != b'_i] sigmoid(|theta_i|) (Bernoulli)"
    exact_when = "on one Bernoulli at p = 1/2 (theta = 0): its pair is always (b, 1 - b), each estimate (f(1) - f(0)) / 4"

    def pair_gradient(self, u, b1, b2, f1, f2, logits):
        return disarm_gradient(b1, b2, f1, f2, logits)


#: the widest range of a row of logits for which ``suffix_logsumexp`` sums exp(theta - max) directly: every term
#: then stays a normal number (float32's smallest normal is e^-87, float64's e^-708)
DIRECT_SPREAD = {torch.float32: 60.0, torch.float64: 600.0}


def suffix_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp(theta_{j..K}) for each j, [..., K], differentiable. Where each row's logits span less than
    DIRECT_SPREAD: max + log of the reversed cumulative sum of exp(theta - max) (on a CPU, forward and backward
    took a fifth of torch.logcumsumexp's time at [4000, 1, 100], within 1e-6 of it in float32); otherwise,
    and compiled, torch.logcumsumexp."""
    limit = DIRECT_SPREAD.get(logits.dtype)
    if limit is not None and not torch.compiler.is_compiling():
        theta = logits.detach()
        top = theta.amax(-1, keepdim=True)
        if bool((top - theta.amin(-1, keepdim=True)).max() < limit):
            return (logits - top).exp().flip(-1).cumsum(-1).flip(-1).log() + top
    return torch.logcumsumexp(logits.flip(-1), -1).flip(-1)


@builtin
class StickBreakingDisARM(Estimator):
    """DisARM on the stick-breaking Bernoullis of a categorical (Dong, Mnih & Tucker 2021, "Coupled gradient
    estimators for discrete latent variables", NeurIPS, sec. 3): class c of K is the first of K - 1
    independent Bernoullis b_j ~ Bernoulli(sigmoid(eta_j)) that is 1 (the last class if none), with
    eta_j = theta_j - logsumexp(theta_{j+1..K}) (then P(c = j) = softmax(theta)_j); DisARM's pair on the
    b's, its estimate in eta, carried to theta by the chain rule. Unbiased. 2 evaluations of f per draw.
    Requires: categorical (optionally Independent over its last dimension)."""

    name = "stick-breaking-disarm"
    description = "DisARM on a categorical's stick-breaking Bernoullis (antithetic categorical)"
    supports = ("categorical",)
    unbiased = True
    f_evals_per_draw = 2
    report_axes = ("K",)

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        _, logits, event_ndims = discrete_parts(dist, self.name, (Categorical,))
        tail = suffix_logsumexp(logits)  # logsumexp(theta_{j..K})
        eta = logits[..., :-1] - tail[..., 1:]  # [*B, *E, K - 1]
        _, b1, b2 = antithetic_pair(eta.detach(), (n_samples,))

        def classes(b: torch.Tensor) -> torch.Tensor:  # the first stick that is 1, else the last class
            return (b.cumsum(-1) == 0).sum(-1)

        f1, f2 = evaluate(f, classes(b1), dist, n_samples), evaluate(f, classes(b2), dist, n_samples)  # [n, *B]
        per = _per_draw(f1.detach(), event_ndims + 1), _per_draw(f2.detach(), event_ndims + 1)
        g = disarm_gradient(b1, b2, *per, eta.detach()).mean(0)  # [*B, *E, K - 1], in eta
        loss = parameter_surrogate((f1 + f2) / 2, [(eta, g)], len(dist.batch_shape))
        return Surrogate(loss=loss, f=torch.cat([f1, f2]).detach())


def _relaxed(dist: Distribution, name: str, n_samples: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(relaxed sample z, hard sample H(z)) for a Bernoulli or categorical distribution; z is
    differentiable in the logits, H(z) is an exact draw."""
    base, logits, _ = discrete_parts(dist, name)
    u = torch.rand((n_samples, *logits.shape), dtype=logits.dtype, device=logits.device).clamp(1e-12, 1 - 1e-12)
    if isinstance(base, Bernoulli):
        z = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / temperature)
        return z, (z > 0.5).to(z.dtype)
    z = torch.softmax((logits - torch.log(-torch.log(u))) / temperature, dim=-1)
    hard = torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
    return z, hard


class _Relaxation(Estimator):
    """A Gumbel relaxation at a temperature: f at the point ``at(z, hard)``, the gradient through it;
    biased. Requires: Bernoulli or categorical; subclasses choose the point."""

    supports = ("bernoulli", "categorical")
    unbiased = False
    f_evals_per_draw = 1
    options = (TEMPERATURE,)
    temperature: float

    def at(self, z: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        z, hard = _relaxed(dist, self.name, n_samples, self.temperature)
        fx = evaluate(f, self.at(z, hard), dist, n_samples)
        return Surrogate(loss=fx.mean(0), f=fx.detach())


@builtin
class GumbelSoftmax(_Relaxation):
    """Gumbel-softmax / Concrete (Jang et al. 2017, Maddison et al. 2017): g = grad f(z) at the
    relaxed sample z; biased. Requires: Bernoulli or categorical; f defined between outcomes
    (categorical: on the simplex, [..., K])."""

    name = "gumbel-softmax"
    description = "Gumbel-softmax (Concrete): f at the relaxed sample, pathwise gradient; biased"

    def at(self, z: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return z


@builtin
class StraightThrough(_Relaxation):
    """Gumbel straight-through: f at the hard sample H(z) (an exact draw), the gradient through the
    relaxed z (H taken as the identity backward); biased. Requires: Bernoulli or categorical."""

    name = "straight-through"
    description = "Gumbel straight-through: f at the hard sample, gradient through the relaxation; biased"

    def at(self, z: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard + z - z.detach()


@builtin
class Exact(Estimator):
    """The exact gradient: E f = sum over every outcome b of p(b) f(b), differentiated. Zero
    variance. Requires: Bernoulli or categorical with at most 2^20 outcomes per estimate."""

    name = "exact"
    description = "exact expectation by enumerating every outcome (at most 2^20); zero variance"
    exact_when = "always: it sums p(b) f(b) over every outcome"
    supports = ("bernoulli", "categorical")
    unbiased = True
    f_evals_per_draw = None  # 2^d (K^d) per estimate, whatever n
    #: enumerates up to this many outcomes (more: a skipped row); benchmarks.plan checks its memory as for one draw
    #: per outcome before a run
    enumerates = MAX_OUTCOMES

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        base, logits, event_ndims = discrete_parts(dist, self.name)
        classes = 2 if isinstance(base, Bernoulli) else logits.shape[-1]
        d = dist.event_shape[0] if event_ndims else 1
        if classes**d > MAX_OUTCOMES:
            raise EstimatorError(f"estimator 'exact' enumerates at most {MAX_OUTCOMES} outcomes; {dist_name(dist)} has "
                                 f"{classes}^{d}", capability=True)
        if classes**d * dist.batch_shape.numel() > MAX_EVALUATIONS:
            raise EstimatorError(f"estimator 'exact': {classes}^{d} outcomes x a batch of {dist.batch_shape.numel()} is "
                                 f"more than {MAX_EVALUATIONS} evaluations of f at once", capability=True)
        # a copy of the cached grid: f may write to what it is given
        grid = outcome_grid(classes, d, logits.device).to(logits.dtype if isinstance(base, Bernoulli) else torch.long,
                                                          copy=True)  # [M, d]
        if not event_ndims:
            grid = grid[:, 0]
        batch = dist.batch_shape
        # the same outcomes for every batch element: an expanded view (stride 0 over the batch), which
        # an f may use to evaluate each outcome once (the binary VAE's decoder does)
        x = grid.reshape(len(grid), *([1] * len(batch)), *dist.event_shape).expand(len(grid), *batch, *dist.event_shape)
        fx = evaluate(f, x, dist, len(grid))  # [M, *B]
        log_p = joint_log_probs(coordinate_log_probs(base, logits, event_ndims)).movedim(-1, 0)  # [M, *B]
        loss = (log_p.exp() * fx).sum(0)
        return Surrogate(loss=loss, f=fx.detach())

