"""Straight-through estimators of 2021-2023: f at an exact one-hot draw D, the gradient through a
surrogate s(theta) whose value is cancelled, y = D + s - s.detach(). Each is biased; they differ in
the Jacobian ds/dtheta that stands in for the draw's.

Notation: logits theta [..., C] of a categorical variable (C classes); a Bernoulli(sigmoid(theta))
is the two-class categorical with logits (0, theta), its sample b the one-hot's second entry. f sees
the draw as a categorical problem's f sees a relaxed sample (a point of the simplex, [..., C]) and a
Bernoulli problem's f its 0/1 values.

- ``gumbel-rao``: Paulus, Maddison & Krause 2021 ("Rao-Blackwellizing the straight-through
  Gumbel-softmax gradient estimator", ICLR), eq. 7: s = (1/M) sum_m softmax((theta + G_m) / tau)
  with G_1..G_M standard Gumbels drawn conditionally on argmax(theta + G) = D (the Gumbel-max trick
  run backwards: the top value is logsumexp(theta) - log E_D, every other one a Gumbel truncated
  below it, -log(E_i exp(-theta_i) + E_D exp(-logsumexp theta)), E ~ Exp(1)). At M = 1 it has the
  distribution of Gumbel straight-through at the same temperature; larger M lowers its variance,
  never its bias. Options ``temperature``, ``M``.
- ``gst``: Fan, Sun, Ding, Lin & Ma 2022 ("Training discrete deep generative models via gapped
  straight-through estimator", ICML), the deterministic GST of the authors' code (chijames/GST):
  s = softmax((theta + m1 - m2) / tau), m1 = (max theta - theta_D) D lifts the drawn class to the
  largest logit, m2 = max(theta + gap - max theta, 0) (1 - D) pushes every other class at least
  ``gap`` below it (m1, m2 held fixed). Options ``temperature``, ``gap``.
- ``reinmax``: Liu, Liu, Gao, Chen & Han 2023 ("Bridging discrete and backpropagation:
  straight-through and beyond", NeurIPS), Algorithm 2 and the authors' code (microsoft/ReinMax):
  the second-order (Heun) correction of straight-through. With pi_0 = softmax(theta) and
  pi_1 = (D + softmax(theta / tau)) / 2, the gradient in theta is
  J(pi_1) 2 g - J(pi_0) g / 2, J(pi) = diag(pi) - pi pi^T the softmax Jacobian at pi, g = df/dD;
  written forward as s = 2 softmax(log pi_1 - theta + theta) - pi_0 / 2 (the first softmax's shift
  held fixed). Option ``temperature`` (>= 1: the authors' code refuses less).

Each evaluates f once per draw. Requires: a Bernoulli or categorical distribution (optionally
Independent over its last dimension) and an f defined on the simplex (categorical) or at reals
between 0 and 1 (Bernoulli) that is differentiable there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Bernoulli, Distribution

from .base import Estimator, Function, Surrogate, draw, evaluate
from .discrete import TEMPERATURE, discrete_parts
from .options import Option, at_least, positive
from .registry import builtin
from .uniforms import UNIFORM_STEP, codes_into_, standard_exponential, uniform_buffer

#: the Gumbel temperature of gumbel-rao and gst: the relaxations' option, swept by the default report at three values
ST_TEMPERATURE = Option(TEMPERATURE.name, TEMPERATURE.type, TEMPERATURE.default, TEMPERATURE.help,
                        check=TEMPERATURE.check, report=(0.3, 1.0, 3.0), report_quick=(1.0,))


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension; over two classes through one sigmoid (torch's softmax kernel is
    slow on rows of two: measured 5-10x on a CPU at a Bernoulli's 2-class view)."""
    if x.shape[-1] == 2:
        p1 = torch.sigmoid(x[..., 1] - x[..., 0])
        return torch.stack([1 - p1, p1], -1)
    return torch.softmax(x, -1)


def one_hot_draw(logits: torch.Tensor, n_samples: int) -> torch.Tensor:
    """n one-hot draws from Categorical(logits), [n, *logits.shape], no gradient: the first class whose
    cumulative probability exceeds u ~ U(0, 1) (on a CPU several times faster than torch.multinomial)."""
    probs = torch.softmax(logits.detach(), -1)
    u = torch.rand((n_samples, *logits.shape[:-1], 1), dtype=logits.dtype, device=logits.device)
    classes = (probs.cumsum(-1) < u).sum(-1).clamp(max=logits.shape[-1] - 1)
    return torch.nn.functional.one_hot(classes, logits.shape[-1]).to(logits.dtype)


def _truncation(logits: torch.Tensor, d: torch.Tensor, m: int) -> tuple[torch.Tensor, ...]:
    """What the M conditional Gumbels given argmax(theta + G) = d (one-hot [n, ..., C]) are made of, no gradient:
    (E_i / p_i + E_d [M, n, ..., C], its drawn class's entries to be overwritten; E_d [M, n, ..., 1], the drawn
    class's index, log Z), E ~ Exp(1), computed in place (one pass each over the [M, n, ..., C] draws)."""
    theta = logits.detach()
    log_z = torch.logsumexp(theta, -1, keepdim=True)
    e = standard_exponential((m, *d.shape), d.dtype, d.device, codes=True)  # E_i ~ Exp(1)
    drawn = d.argmax(-1, keepdim=True).expand(m, *d.shape[:-1], 1)  # the drawn class's index, [M, n, ..., 1]
    e_d = e.gather(-1, drawn)
    # 1 / p_i = exp(log Z - theta_i) (inf where p_i underflows: that class's Gumbel is -inf, its weight 0)
    return e.mul_(torch.exp(log_z - theta)).add_(e_d), e_d, drawn, log_z


def conditional_gumbels(logits: torch.Tensor, d: torch.Tensor, m: int) -> torch.Tensor:
    """M draws of theta + G, G standard Gumbel given argmax(theta + G) = d (one-hot [n, ..., C]):
    [M, n, ..., C], no gradient."""
    terms, e_d, drawn, log_z = _truncation(logits, d, m)
    top = log_z - torch.log(e_d)  # the maximum, Gumbel(logsumexp theta), whichever class holds it
    # each other class: a Gumbel(theta_i) truncated below top, -log(E_i exp(-theta_i) + exp(-top)), written as
    # log Z - log(E_i / p_i + E_d)
    return terms.log_().neg_().add_(log_z).scatter_(-1, drawn, top)


def conditional_softmax(logits: torch.Tensor, d: torch.Tensor, m: int, temperature: float) -> torch.Tensor:
    """softmax((theta + G_m) / tau) at the M conditional Gumbels of ``conditional_gumbels`` (the same draws),
    [M, n, ..., C], no gradient. At tau = 1 without a log or exp per number: exp(theta_i + G_i - log Z) is
    1 / (E_i / p_i + E_d) for a class not drawn and 1 / E_d for the drawn one, normalised."""
    if temperature != 1.0:
        return softmax(conditional_gumbels(logits, d, m).div_(temperature))
    terms, e_d, drawn, _ = _truncation(logits, d, m)
    w = terms.reciprocal_().scatter_(-1, drawn, e_d.reciprocal())
    return w.div_(w.sum(-1, keepdim=True))


class MeanRelaxation(torch.autograd.Function):
    """The mean over M of relaxations S_m = softmax((theta + G_m) / tau), given as [M, n, ..., C] without a graph,
    as a function of the logits theta: value mean_m S_m; vector-Jacobian product with g [n, ..., C]
    (1 / tau) mean_m (S_m g - S_m (S_m . g)), summed over the draws to theta's shape. Eager, this is the softmax's
    own backward without the graph of M relaxed copies (two passes over them fewer)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, relaxations: torch.Tensor, temperature: float) -> torch.Tensor:
        ctx.save_for_backward(relaxations)
        ctx.temperature, ctx.shape = temperature, logits.shape
        return relaxations.mean(0)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (s,) = ctx.saved_tensors
        m, c = s.shape[0], s.shape[-1]
        s, g_rows = s.reshape(m, -1, c), g.reshape(-1, c)  # as rows of C (broadcasting over singleton dims is slow)
        dot = torch.linalg.vecdot(s, g_rows).unsqueeze(-1)  # S_m . g, [M, rows, 1]
        vjp = s.mean(0).mul_(g_rows)
        for k in range(m):
            vjp.addcmul_(s[k], dot[k], value=-1 / m)
        return vjp.div_(ctx.temperature).view(g.shape).sum_to_size(ctx.shape), None, None


#: how many random numbers gumbel-rao's Bernoulli point draws at a time (a block of its M conditional draws)
GUMBEL_BLOCK = 1 << 19


class _StraightThrough(Estimator):
    """f at the one-hot draw D, the gradient through ``point(logits, D)`` (subclasses)."""

    supports = ("bernoulli", "categorical")
    unbiased = False
    f_evals_per_draw = 1
    report_axes = ("power",)
    temperature: float

    def point(self, logits: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bernoulli_point(self, theta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The surrogate's value at b = 1 for a Bernoulli with logits theta and draws b [n, *B, *E]: the
        two-class view's second entry (subclasses may write it in closed form)."""
        return self.point(torch.stack([torch.zeros_like(theta), theta], -1), torch.stack([1 - b, b], -1))[..., 1]

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        base, logits, _ = discrete_parts(dist, self.name)
        if isinstance(base, Bernoulli):  # the two-class categorical with logits (0, theta), written in b
            d = draw(dist, (n_samples,))  # [n, *B, *E]
            s = self.bernoulli_point(logits, d)
        else:
            d = one_hot_draw(logits, n_samples)  # [n, *B, *E, C]
            s = self.point(logits, d)
        y = d + s - s.detach()
        fx = evaluate(f, y, dist, n_samples)
        return Surrogate(loss=fx.mean(0), f=fx.detach())


@builtin
class GumbelRao(_StraightThrough):
    """Gumbel-Rao (Paulus, Maddison & Krause 2021): straight-through Gumbel-softmax with the
    relaxation's Jacobian averaged over M Gumbels drawn given the hard sample; biased.
    Requires: Bernoulli or categorical, f differentiable between outcomes."""

    name = "gumbel-rao"
    description = "Gumbel-Rao: straight-through with the Jacobian averaged over M conditional Gumbels; biased"
    options = (ST_TEMPERATURE, Option("M", int, (10,), "conditional Gumbel draws averaged per sample, >= 1",
                                   check=at_least(1)))
    M: int

    def point(self, logits: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            relaxations = conditional_softmax(logits, d, self.M, self.temperature)
        if torch.compiler.is_compiling():  # the same Jacobian written in plain ops, which the compiler fuses (tracing
            delta = logits - logits.detach()  # an autograd Function instantiates it, which warns in torch 2.13)
            dot = (relaxations * delta).sum(-1, keepdim=True)
            return relaxations.mean(0) + (relaxations * (delta - dot)).mean(0) / self.temperature
        return MeanRelaxation.apply(logits, relaxations, self.temperature)

    def bernoulli_point(self, theta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # over two classes G_1 - G_0 is logistic noise L, and argmax = b is theta + L > 0 iff b = 1: L = logit(v),
        # v uniform on (1 - p, 1) where b = 1, on (0, 1 - p) where b = 0 (one uniform per Gumbel pair)
        t = theta.detach()
        q = torch.sigmoid(-t)
        width, start = torch.where(b.bool(), 1 - q, q), b * q  # [n, *B, *E]: v = start + u width
        # at tau = 1, sigma(theta + logit v) = v / (v + (1 - v) e^-theta), no exp or log per draw; compiled, the general
        # form (the branch on the logits' range would break the graph, and the compiled kernel fuses the logit)
        closed = self.temperature == 1.0 and not torch.compiler.is_compiling() and t.abs().max() < 60
        # in float32 eager, the uniforms come two per 64-bit draw of the generator (estimators.uniforms): u = 0.5 + code
        # step, so v = start + u width = mid + code (width step)
        codes = b.dtype == torch.float32 and not torch.compiler.is_compiling()
        with torch.no_grad():  # the M relaxed points and their derivatives sigma' / tau, in place, without a graph
            c = torch.exp(-t)
            c1 = 1 - c  # the logits hold a row per replicate: computed once, not per block
            total, squares = torch.zeros_like(b), torch.zeros_like(b)
            # the M draws a block at a time, each block of about GUMBEL_BLOCK numbers (the buffers stay in cache and
            # are allocated once per chunk), in the order of one [M, *b.shape] draw; each pass writes into a buffer
            block = max(1, min(self.M, GUMBEL_BLOCK // max(1, b.numel())))
            v, spare = (torch.empty((block, *b.shape), dtype=b.dtype, device=b.device) for _ in range(2))
            if codes:
                words = uniform_buffer(v.numel(), b.device)
                mid, step = start + width / 2, width * UNIFORM_STEP
            for first in range(0, self.M, block):
                k = min(block, self.M - first)
                vk = v[:k]
                if codes:
                    torch.addcmul(mid, codes_into_(vk, words), step, out=vk)
                else:
                    torch.addcmul(start, spare[:k].uniform_(), width, out=vk)  # v = start + u width
                if closed:
                    vk.div_(torch.addcmul(c, vk, c1, out=spare[:k]))
                else:
                    vk.clamp_(torch.finfo(b.dtype).tiny, 1 - torch.finfo(b.dtype).eps).logit_()
                    vk.add_(t).div_(self.temperature).sigmoid_()
                if k == 1:  # a block of one draw: accumulate it directly (a sum over one row is a copy)
                    total.add_(vk[0])
                    squares.addcmul_(vk[0], vk[0])
                else:
                    total.add_(vk.sum(0))
                    squares.add_(vk.mul_(vk).sum(0))
            value = total.div_(self.M)
            slope = (value - squares.div_(self.M)).div_(self.temperature)
        return value + (theta - t) * slope  # the mean's value, and its derivative in theta


@builtin
class GST(_StraightThrough):
    """Gapped straight-through (Fan et al. 2022): the drawn class lifted to the largest logit, the
    others pushed ``gap`` below it, softmax at ``temperature`` as the surrogate; biased.
    Requires: Bernoulli or categorical, f differentiable between outcomes."""

    name = "gst"
    description = "gapped straight-through: softmax of logits moved so the drawn class leads by a gap; biased"
    options = (ST_TEMPERATURE, Option("gap", float, (1.0,), "how far every other logit is pushed below the drawn "
                                   "class's, > 0", check=positive))
    gap: float

    def point(self, logits: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        theta = logits.detach()
        top = theta.max(-1, keepdim=True).values
        lift = (top - (theta * d).sum(-1, keepdim=True)) * d
        push = (theta + self.gap - top).clamp(min=0) * (1 - d)
        return softmax((logits + lift - push) / self.temperature)


@builtin
class ReinMax(_StraightThrough):
    """ReinMax (Liu et al. 2023): straight-through with Heun's second-order correction; biased.
    Requires: Bernoulli or categorical, f differentiable between outcomes."""

    name = "reinmax"
    description = "ReinMax: second-order (Heun) straight-through, 2 J(pi_1) - J(pi_0)/2; biased"
    options = (Option("temperature", float, (1.0,), "temperature tau of softmax(theta / tau) in pi_1, >= 1 (the "
                      "authors' code refuses less)", check=at_least(1.0), report=(1.0, 2.0, 4.0),
                      report_quick=(1.0, 2.0)),)

    def point(self, logits: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        pi0 = softmax(logits)
        pi1 = (d + softmax(logits.detach() / self.temperature)) / 2
        pi1 = softmax((pi1.log() - logits).detach() + logits)  # value pi_1, Jacobian J(pi_1)
        return 2 * pi1 - pi0 / 2


__all__ = ["GST", "GumbelRao", "MeanRelaxation", "ReinMax", "conditional_gumbels", "conditional_softmax", "one_hot_draw",
           "softmax"]
