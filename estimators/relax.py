"""REBAR and RELAX: score function with a learned, reparameterizable control variate (Bernoulli).

Notation (Tucker et al. 2017, Grathwohl et al. 2018; the duvenaud/relax code): logits theta,
p = sigmoid(theta); u, v ~ U(0, 1); z = theta + log u - log(1 - u) (so b = H(z) = 1[z > 0] is a
draw of Bernoulli(p)); z~ ~ p(z | b), reparameterized: v' = v (1 - p) if b = 0, v' = v p + 1 - p
if b = 1, z~ = theta + log v' - log(1 - v'). With a control variate c(z),

    g = [f(b) - c(z~)] grad log p(b) + grad c(z) - grad c(z~)

is unbiased for any c. REBAR: c(z) = eta f(sigmoid(z / lambda)); RELAX: c(z) = eta f(sigmoid(z / lambda))
+ r(z), r a small network (one tanh layer of 16 units). 3 evaluations of f per draw.

The control variate's parameters (eta, log lambda, and r's weights) are learned by minimizing
the estimate's second moment sum_i g_i^2 (its variance, since E g does not depend on them),
with Adam (learning rate 0.01): ``LEARN_STEPS`` steps on the draws of each of the first
``warmup_calls - 1`` calls of the runner's warm-up (``Estimator.warmup_calls``, 10); then they
are frozen, so the estimates measured are those of a fixed control variate. The state
threaded from call to call holds them. A learning step uses the first ``LEARN_DRAWS`` of each
batch element's n draws (all of them where n is smaller): the draws are independent, so the second
moment of their mean and of one draw's term have the same minimizer, and a cell of n = 32 learns
from the same number of draws as one of n = 4 instead of spending 97% of its time learning. A
learning call's steps share its logits and draws, so z, z~ and their derivatives in the logits are
computed once per call (``learning_parts``) and each step differentiates only c at z and z~
(``learning_gradient``): the same g as differentiating the surrogate in the logits, in fewer operations. c is
evaluated at z and z~ in one call of f on the 2n points (here and in the surrogate): half the operations of two
calls, which on a small toy are the cost (the toys' warm-up 1.2-1.3x faster, bernoulli-polynomial's and the
binary VAE's, whose cost is the arithmetic, 1.0-1.1x).
Parameters of f itself (a decoder's weights) get mean_i grad f(b_i), as with every estimator, plus the gradient
of mean_i [c(z_i) - c(z~_i)] (zero in expectation, since z and z~ have the same marginal): the surrogate's terms
as written, and as Tucker et al.'s REBAR code differentiates them for the generative model's variables.
Requires: a Bernoulli distribution, optionally Independent over its last dimension.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Bernoulli, Distribution

from .base import Estimator, Function, Surrogate, evaluate
from .discrete import discrete_parts
from .registry import builtin

#: Adam steps on each learning call's draws (the control variate learns during all warm-up calls
#: but the last, Estimator.warmup_calls)
LEARN_STEPS = 20
#: draws per batch element a learning step uses (at most; the first of the call's draws)
LEARN_DRAWS = 4
LEARNING_RATE = 0.01
HIDDEN = 16
_EPS = 1e-6


def _adam(params: list[torch.Tensor], grads: tuple[torch.Tensor | None, ...], state: dict[str, Any]) -> list[torch.Tensor]:
    """One Adam step (torch.optim.Adam's update, eps added to the bias-corrected root) on detached copies: the
    new parameters returned, the new moments put in ``state`` (new tensors: an earlier state keeps its own).
    As one multi-tensor (``_foreach``) operation per stage, the way torch.optim's own foreach Adam does it: a
    learning step's parameters are a few small tensors, so the per-operation overhead is the cost."""
    b1, b2 = 0.9, 0.999
    state["t"] += 1
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    state["m"] = torch._foreach_lerp(state["m"], grads, 1 - b1)  # b1 m + (1 - b1) g
    state["v"] = torch._foreach_mul(state["v"], b2)
    torch._foreach_addcmul_(state["v"], grads, grads, 1 - b2)
    denom = torch._foreach_sqrt(state["v"])
    torch._foreach_div_(denom, (1 - b2 ** state["t"]) ** 0.5)
    torch._foreach_add_(denom, 1e-8)
    return torch._foreach_addcdiv([p.detach() for p in params], state["m"], denom, -LEARNING_RATE / (1 - b1 ** state["t"]))


@builtin
class Rebar(Estimator):
    """REBAR (Tucker et al. 2017): c(z) = eta f(sigmoid(z / lambda)), eta and lambda learned during the
    warm-up by minimizing the estimate's variance, then frozen. Requires: Bernoulli."""

    name = "rebar"
    description = "REBAR: score function with the control variate eta f(sigmoid(z/lambda)), learned then frozen (Bernoulli)"
    stateful = True
    supports = ("bernoulli",)
    unbiased = True
    f_evals_per_draw = 3

    def init_params(self, dim: int, like: torch.Tensor) -> list[torch.Tensor]:
        # eta = 1, lambda = 0.5 (the papers' starting temperature)
        return [torch.ones((), dtype=like.dtype, device=like.device),
                torch.full((), -0.6931471805599453, dtype=like.dtype, device=like.device)]

    def control(self, params: list[torch.Tensor], f: Function, z: torch.Tensor, dist: Distribution,
                n: int) -> torch.Tensor:
        eta, log_lam = params[0], params[1]
        return eta * evaluate(f, torch.sigmoid(z / log_lam.exp()), dist, n)

    def _draws(self, logits: torch.Tensor, n: int):
        shape = (n, *logits.shape)
        u = torch.rand(shape, dtype=logits.dtype, device=logits.device).clamp(_EPS, 1 - _EPS)
        v = torch.rand(shape, dtype=logits.dtype, device=logits.device).clamp(_EPS, 1 - _EPS)
        return u, v

    @staticmethod
    def _points(logits: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(z, b = H(z), z~) for logits [*B, *E] (or one copy per draw) and uniforms u, v [n, *B, *E]."""
        p = torch.sigmoid(logits)
        z = logits + torch.log(u) - torch.log1p(-u)
        b = (z > 0).to(logits.dtype).detach()
        v_cond = torch.where(b > 0, v * p + (1 - p), v * (1 - p)).clamp(_EPS, 1 - _EPS)
        return z, b, logits + torch.log(v_cond) - torch.log1p(-v_cond)

    def _terms(self, params, dist, f, n, logits, event_ndims, u, v, fb):
        """The surrogate L(theta) whose gradient in the logits is g (per batch element, [*B]), the control
        variate's parameters fixed."""
        z, b, z_cond = self._points(logits, u, v)
        c_z, c_cond = self.control(params, f, torch.cat([z, z_cond]), dist, 2 * n).split(n)  # [n, *B] each
        log_p = Bernoulli(logits=logits, validate_args=False).log_prob(b)  # [n, *B, *E]
        if event_ndims:
            log_p = log_p.sum(-1)
        return ((fb - c_cond.detach()) * log_p + c_z - c_cond).mean(0)

    def learning_parts(self, logits: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the steps of one learning call share, the logits and draws being fixed and only the control
        variate's parameters changing: (z, z~, d log p(b) / d theta, d z~ / d theta), each [n, *B, *E] and per
        draw (z_i and z~_i depend on theta_i alone; d z / d theta is 1)."""
        with torch.enable_grad():
            theta = logits.detach().expand(u.shape).requires_grad_(True)  # the logits, one copy per draw
            z, b, z_cond = self._points(theta, u, v)
            log_p = Bernoulli(logits=theta, validate_args=False).log_prob(b)
            (score,) = torch.autograd.grad(log_p.sum(), theta)
            (dz_cond,) = torch.autograd.grad(z_cond.sum(), theta)
        return z.detach(), z_cond.detach(), score, dz_cond

    def learning_gradient(self, params: list[torch.Tensor], dist: Distribution, f: Function, n: int,
                          parts: tuple[torch.Tensor, ...], fb: torch.Tensor, event_ndims: int) -> torch.Tensor:
        """The estimate g [*B, *E] as a function of the control variate's parameters: the mean over the n draws
        of [f(b) - c(z~)] d log p(b) + c'(z) - c'(z~) d z~ / d theta, with c' the gradient of c at the point;
        the same as differentiating the surrogate in theta, without differentiating what the steps share."""
        z, z_cond, score, dz_cond = parts
        points = torch.cat([z, z_cond]).detach().requires_grad_(True)  # this step's leaf: z and z~, [2n, *B, *E]
        c = self.control(params, f, points, dist, 2 * n)  # [2n, *B]
        (d,) = torch.autograd.grad(c.sum(), points, create_graph=True)
        (d_z, d_cond), c_cond = d.split(n), c[n:]
        weight = (fb - c_cond).reshape(*c_cond.shape, *([1] * event_ndims))
        return (weight * score + d_z - d_cond * dz_cond).mean(0)

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        _, logits, event_ndims = discrete_parts(dist, self.name, (Bernoulli,))
        if state is None:
            params = self.init_params(logits.shape[-1] if event_ndims else 1, logits)
            state = {"params": params, "calls": 0, "t": 0, "m": [torch.zeros_like(q) for q in params],
                     "v": [torch.zeros_like(q) for q in params]}
        u, v = self._draws(logits.detach(), n_samples)
        b = ((logits.detach() + torch.log(u) - torch.log1p(-u)) > 0).to(logits.dtype)
        fb = evaluate(f, b, dist, n_samples)  # [n, *B]
        if state["calls"] < self.warmup_calls - 1:
            state = {**state, "m": list(state["m"]), "v": list(state["v"])}
            m = min(n_samples, LEARN_DRAWS)
            parts = self.learning_parts(logits, u[:m], v[:m])
            with torch.enable_grad():
                for _ in range(LEARN_STEPS):
                    params = [q.detach().requires_grad_(True) for q in state["params"]]
                    g = self.learning_gradient(params, dist, f, m, parts, fb[:m].detach(), event_ndims)
                    second_moment = (g * g).sum() / max(1, g.shape[0] if g.dim() else 1)
                    state["params"] = _adam(params, torch.autograd.grad(second_moment, params, allow_unused=True),
                                            state)
        params = [q.detach() for q in state["params"]]
        surrogate = self._terms(params, dist, f, n_samples, logits, event_ndims, u, v, fb.detach())
        loss = surrogate - surrogate.detach() + fb.mean(0)  # value: the Monte Carlo average of f
        return Surrogate(loss=loss, f=fb.detach(), state={**state, "params": params, "calls": state["calls"] + 1})


@builtin
class Relax(Rebar):
    """RELAX (Grathwohl et al. 2018): c(z) = eta f(sigmoid(z / lambda)) + r(z), r a one-layer tanh
    network, all learned during the warm-up by minimizing the estimate's variance, then frozen.
    Requires: Bernoulli."""

    name = "relax"
    description = "RELAX: REBAR's control variate plus a learned network r(z), learned then frozen (Bernoulli)"

    def init_params(self, dim: int, like: torch.Tensor) -> list[torch.Tensor]:
        w1 = torch.randn(dim, HIDDEN, dtype=like.dtype, device=like.device) * (1.0 / dim) ** 0.5
        b1 = torch.zeros(HIDDEN, dtype=like.dtype, device=like.device)
        w2 = torch.zeros(HIDDEN, dtype=like.dtype, device=like.device)  # r starts at 0: REBAR's control variate
        return [*super().init_params(dim, like), w1, b1, w2]

    def control(self, params, f, z, dist, n):
        w1, b1, w2 = params[2:]
        x = z if z.shape[-1] == w1.shape[0] and dist.event_shape else z.unsqueeze(-1)
        r = torch.tanh(x @ w1 + b1) @ w2  # [n, *B]
        return super().control(params, f, z, dist, n) + r

