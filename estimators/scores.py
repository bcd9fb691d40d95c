"""log p(x) - its value: zero, with the gradient of log p(x) in the distribution's parameters (the
score), for the score-function estimators' surrogates. A Normal's score is written out in its backward
instead of differentiating torch.distributions' log-density, whose forward and backward are about twenty
passes over the draws (REINFORCE's eager time: docs/performance.md)."""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Bernoulli, Distribution, Normal

from .base import unwrap


class _NormalScore(torch.autograd.Function):
    """Zero per draw ([n, *B] from x [n, *B, *E]); backward the Normal score summed over the event dims:
    d log p / d loc = (x - loc) / scale^2, d log p / d scale = ((x - loc)^2 / scale^2 - 1) / scale.
    Differentiable again (plain ops on the saved inputs)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(loc: torch.Tensor, scale: torch.Tensor, x: torch.Tensor, event_ndims: int) -> torch.Tensor:
        return x.new_zeros(x.shape[: x.dim() - event_ndims])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        loc, scale, x, event_ndims = inputs
        ctx.save_for_backward(loc, scale, x)
        ctx.event_ndims = event_ndims

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        loc, scale, x = ctx.saved_tensors
        w = grad.reshape(*grad.shape, *([1] * ctx.event_ndims))  # [n, *B, 1...]
        inv = scale.reciprocal()
        z = (x - loc) * inv  # standardized draws
        g_loc = z * inv * w  # (x - loc) / scale^2, weighted
        g_scale = torch.addcmul(inv * -w, z, g_loc) if ctx.needs_input_grad[1] else None  # (z^2 - 1) / scale
        # summed over the dimensions loc and scale were broadcast along (sum_to_size: g itself where none)
        return (g_loc.sum_to_size(loc.shape) if ctx.needs_input_grad[0] else None,
                None if g_scale is None else g_scale.sum_to_size(scale.shape), None, None)


def score_delta(dist: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log p(x) - its value, [n, *B] for draws x [n, *B, *E] that carry no gradient: value 0, gradient
    grad log p(x) in the distribution's parameters. For a Normal (optionally Independent) in eager code,
    the score is computed in the backward directly; otherwise (any other family, a compiled graph, which
    fuses log_prob's passes, or draws that carry a gradient) it is ``log_prob(x) - log_prob(x).detach()``."""
    base, event_ndims = unwrap(dist)
    if type(base) is Normal and not x.requires_grad and not torch.compiler.is_compiling():
        return _NormalScore.apply(base.loc, base.scale, x, event_ndims)
    log_prob = dist.log_prob(x)
    return log_prob - log_prob.detach()


def score_term(signal: torch.Tensor, dist: Distribution, x: torch.Tensor) -> torch.Tensor:
    """sum over axis 1 of signal_k (log p(x_k) - its value), [n, K, *B] -> [n, *B]: value 0, gradient
    sum_k signal_k grad log p(x_k) (``signal`` detached; x [n, K, *B, *E]). A Bernoulli's score in its
    logits, x - sigmoid(logits), is written out rather than differentiated through log_prob (the
    multi-sample estimators' eager time: docs/performance.md); any other family's comes from score_delta."""
    signal = signal.detach()
    base, event_ndims = unwrap(dist)
    if type(base) is Bernoulli:
        logits = base.logits  # [*B, *E]
        per = signal.reshape(*signal.shape, *([1] * event_ndims))
        g = (per * (x - torch.sigmoid(logits.detach()))).sum(1)  # [n, *B, *E]
        term = g * (logits - logits.detach())
        return term.reshape(*term.shape[: 1 + len(dist.batch_shape)], -1).sum(-1)
    return (signal * score_delta(dist, x)).sum(1)
