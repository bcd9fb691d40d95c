"""Discrete toy problems with exact truth: Bernoulli and categorical variables.

No pathwise gradient exists here; the truth comes from a closed form or from enumerating
every outcome in float64, never from sampling.

bernoulli-quadratic   b_d ~ Bernoulli(sigmoid(theta_d)), d = 1..dim,
                      f(b) = sum_d (b_d - t)^2  (the toy of the REBAR, RELAX and DisARM papers)
    E f = sum_d [t^2 + p_d (1 - 2t)],  dE/dtheta_d = (1 - 2t) p_d (1 - p_d),  p_d = sigmoid(theta_d)

bernoulli-coupled     b_d ~ Bernoulli(sigmoid(theta_d)), f(b) = b^T W b + c^T b, W symmetric and c
                      drawn from N(0, 1) by a seeded generator (axis w_seed): the coordinates
                      interact, so the truth is computed by enumerating all 2^dim outcomes
                      (dim <= 20) in float64 and differentiating the exact expectation.

categorical-quadratic c_d ~ Categorical(logits_d) over K classes, d = 1..dim, logits_dk =
                      theta (k / (K - 1) - 1), so that the last class's logit is 0 (the reference
                      class): the parameters are the other K - 1 logits of each coordinate (all K
                      would sum every score-function estimate's coordinates to exactly 0).
                      f(c) = sum_d (c_d / (K - 1) - t)^2. With v_k = (k / (K - 1) - t)^2:
                      E f = sum_d sum_k p_dk v_k,  dE/dlogit_dj = p_dj (v_j - sum_k p_dk v_k), j < K - 1.

Relaxed estimators (gumbel-softmax, straight-through) evaluate f at points between the
outcomes: for Bernoulli variables f takes b in [0, 1]^dim; for categorical ones f also takes a
point of the simplex per coordinate, shape [..., dim, K] (a one-hot vector is an outcome).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.distributions import Bernoulli, Categorical, Independent

from estimators import Estimator
from estimators.discrete import outcome_digits
from estimators.options import Option, at_least, between, finite

from .base import Chunk, Context, Problem, SettingError, builtin, surrogate
from .counting import counted

#: the largest dim whose 2^dim outcomes bernoulli-coupled enumerates (2^20 x 20 float64: 160 MB)
MAX_ENUMERATED_DIM = 20


def coordinate_vector(value: float | tuple[float, ...], dim: int, ctx: Context) -> torch.Tensor:
    if isinstance(value, tuple):
        return torch.tensor(value, dtype=ctx.dtype, device=ctx.device)
    return torch.full((dim,), value, dtype=ctx.dtype, device=ctx.device)


def _text(value: float | tuple[float, ...]) -> float | str:
    return ";".join(repr(v) for v in value) if isinstance(value, tuple) else value


class DiscreteProblem(Problem):
    """A discrete toy: a distribution over integer outcomes, parameters are logits."""

    kind = "toy"
    groups = ("theta",)
    family = "bernoulli"
    #: no pathwise estimator applies: ratios divide by the score function with a leave-one-out baseline
    reference = "reinforce-loo"

    def validate(self, s: Any) -> None:
        theta = getattr(s, "theta", None)
        if isinstance(theta, tuple) and len(theta) != s.dim:
            raise SettingError(f"theta has {len(theta)} per-coordinate values but dim={s.dim}; "
                               f"give one value per coordinate, or a single number")

    def columns(self, s: Any) -> dict[str, Any]:
        return {k: _text(v) for k, v in vars(s).items()}

    def chunk_size(self, s: Any, n_samples: int) -> int:
        return max(1, (1 << 20) // (n_samples * s.dim * getattr(s, "K", 2)))

    def replicate_bytes(self, s: Any, n_samples: int, ctx: Context) -> int:
        itemsize = torch.empty((), dtype=ctx.dtype).element_size()
        return itemsize * s.dim * getattr(s, "K", 2) * (12 * n_samples + 4)

    def outcomes(self, s: Any) -> int:
        return getattr(s, "K", 2) ** s.dim

    def value_scale(self, s: Any, ctx: Context) -> float:
        """The largest |f| over 256 seeded random outcomes and the two constant ones, in float64."""
        classes = getattr(s, "K", 2)
        draws = torch.randint(0, classes, (256, s.dim), generator=torch.Generator().manual_seed(0))
        draws = torch.cat([draws, torch.zeros(1, s.dim, dtype=draws.dtype), torch.full((1, s.dim), classes - 1)])
        f = self.f(s, dataclasses.replace(ctx, dtype=torch.float64, device="cpu"))
        return f(draws.to(torch.float64)).abs().max().item()

    def leaf(self, s: Any, replicates: int, ctx: Context) -> torch.Tensor:
        """The logits, [r, dim] (or [r, dim, K]), a leaf per replicate."""
        return coordinate_vector(s.theta, s.dim, ctx).expand(replicates, s.dim).clone().requires_grad_(True)

    def distribution(self, logits: torch.Tensor) -> torch.distributions.Distribution:
        return Independent(Bernoulli(logits=logits, validate_args=False), 1)

    def f(self, s: Any, ctx: Context):
        raise NotImplementedError

    @staticmethod
    def probabilities(s: Any) -> torch.Tensor:
        """sigmoid(theta) of every coordinate of a Bernoulli setting, [dim], float64 (for closed-form truths)."""
        return torch.sigmoid(coordinate_vector(s.theta, s.dim, Context(dtype=torch.float64)))

    def target(self, s: Any, ctx: Context, replicates: int) -> Any:
        """What the estimators are handed: f, counted (a multi-sample problem: its Bound)."""
        return counted(self.f(s, ctx), replicates)

    def chunk(self, estimator: Estimator, s: Any, prepared: Any, n_samples: int, replicates: int, state: Any,
              ctx: Context) -> Chunk:
        logits = self.leaf(s, replicates, ctx)
        sur = surrogate(estimator, self.distribution(logits), self.target(s, ctx, replicates), n_samples, state,
                        (replicates,))
        (g,) = torch.autograd.grad(sur.loss.sum(), (logits,), allow_unused=True)
        g = torch.zeros_like(logits) if g is None else g
        return Chunk(grads={"theta": g.reshape(replicates, -1)}, state=sur.state)


@dataclass(frozen=True)
class BernoulliSetting:
    theta: float | tuple[float, ...]
    t: float
    dim: int


@builtin
class BernoulliQuadratic(DiscreteProblem):
    name = "bernoulli-quadratic"
    description = "b ~ Bernoulli(sigmoid(theta)), f(b) = sum (b - t)^2 (REBAR/RELAX/DisARM toy); closed-form truth"
    report_base: ClassVar[dict[str, Any]] = {"theta": 1.0, "dim": 4}  # at theta 0 DisARM is exact, at dim 1 the set estimators
    axes = (
        Option("theta", float, (0.0,), "logit of every coordinate (a sweep file may give one per coordinate)",
               check=finite, per_coordinate=True, report=(-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
               report_quick=(-2.0, 0.0, 2.0)),
        Option("t", float, (0.45,), "target of the Bernoulli toy f(b) = sum (b - t)^2, |t| <= 1000 (f in float32)",
               check=between(-1e3, 1e3),
               report=(0.0, 0.1, 0.25, 0.4, 0.45, 0.49), report_quick=(0.1, 0.45, 0.49)),
        Option("dim", int, (1,), "dimension, >= 1", check=at_least(1)),
    )
    setting_type = BernoulliSetting

    def f(self, s: BernoulliSetting, ctx: Context):
        t = s.t

        def f(b: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [...]
            return ((b - t) ** 2).sum(-1)

        return f

    def true_gradient(self, s: BernoulliSetting, ctx: Context) -> dict[str, torch.Tensor]:
        p = self.probabilities(s)
        return {"theta": (1 - 2 * s.t) * p * (1 - p)}

    def expectation(self, s: BernoulliSetting) -> float:
        p = self.probabilities(s)
        return float((s.t**2 + p * (1 - 2 * s.t)).sum())


@dataclass(frozen=True)
class CoupledSetting:
    theta: float | tuple[float, ...]
    dim: int
    w_seed: int


def coupling(dim: int, w_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [dim, dim] symmetric, c [dim]) of bernoulli-coupled, float64, from their seed."""
    gen = torch.Generator().manual_seed(w_seed)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    c = torch.randn(dim, generator=gen, dtype=torch.float64)
    return (a + a.T) / 2, c


def outcomes(dim: int, classes: int = 2) -> torch.Tensor:
    """Every outcome of ``dim`` variables with ``classes`` values each, [classes^dim, dim], float64, in
    itertools.product's order (estimators.discrete.outcome_digits, not its cache: bernoulli-multisample's 2^20
    outcomes of 20 variables are 168 MB; made in tensors, not through itertools, which took 4 s)."""
    return outcome_digits(classes, dim).to(torch.float64)


@builtin
class BernoulliCoupled(DiscreteProblem):
    name = "bernoulli-coupled"
    description = ("b ~ Bernoulli(sigmoid(theta)), f(b) = b^T W b + c^T b, W and c seeded (w_seed); "
                   "truth by enumerating all 2^dim outcomes")
    axes = (
        Option("theta", float, (0.0,), "logit of every coordinate (a sweep file may give one per coordinate)",
               check=finite, per_coordinate=True),
        Option("dim", int, (8,), f"dimension, 1 to {MAX_ENUMERATED_DIM} (enumerated)",
               check=at_least(1, MAX_ENUMERATED_DIM)),
        Option("w_seed", int, (0,), "seed of the coupling W and c of bernoulli-coupled", check=at_least(0)),
    )
    setting_type = CoupledSetting

    def f(self, s: CoupledSetting, ctx: Context):
        w, c = (x.to(dtype=ctx.dtype, device=ctx.device) for x in coupling(s.dim, s.w_seed))

        def f(b: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [...]
            return ((b @ w) * b).sum(-1) + b @ c

        return f

    def exact(self, s: CoupledSetting) -> tuple[torch.Tensor, torch.Tensor]:
        """(E f, dE/dtheta [dim]) by enumerating all 2^dim outcomes in float64."""
        theta = coordinate_vector(s.theta, s.dim, Context(dtype=torch.float64)).requires_grad_(True)
        b = outcomes(s.dim)  # [2^dim, dim]
        log_p = Independent(Bernoulli(logits=theta), 1).log_prob(b)  # [2^dim]
        value = (log_p.exp() * self.f(s, Context(dtype=torch.float64))(b)).sum()
        (grad,) = torch.autograd.grad(value, theta)
        return value.detach(), grad

    def true_gradient(self, s: CoupledSetting, ctx: Context) -> dict[str, torch.Tensor]:
        return {"theta": self.exact(s)[1]}


@dataclass(frozen=True)
class CategoricalSetting:
    theta: float
    t: float
    K: int
    dim: int


@builtin
class CategoricalQuadratic(DiscreteProblem):
    name = "categorical-quadratic"
    family = "categorical"
    description = ("c ~ Categorical(logits theta (k/(K-1) - 1)) in each of dim coordinates, f(c) = sum (c/(K-1) - t)^2; "
                   "closed-form truth")
    report_base: ClassVar[dict[str, Any]] = {"K": 10}  # at K 4 sum-and-sample (k 3) and unordered-set (k 4) are exact
    axes = (
        Option("theta", float, (0.0,), "logit slope: logit of class k is theta (k / (K - 1) - 1)", check=finite),
        Option("t", float, (0.45,), "target of the toy f = sum (c/(K-1) - t)^2, |t| <= 1000 (f in float32)",
               check=between(-1e3, 1e3)),
        Option("K", int, (4,), "classes of each categorical variable, 2 to 1000", check=at_least(2, 1000),
               report=(2, 10, 100, 1000), report_quick=(10, 100)),
        Option("dim", int, (1,), "dimension, >= 1", check=at_least(1)),
    )
    setting_type = CategoricalSetting

    @staticmethod
    def logits(s: CategoricalSetting, dtype: torch.dtype, device: Any = "cpu") -> torch.Tensor:
        """All K logits of a coordinate, [K], the last 0."""
        return s.theta * (torch.arange(s.K, dtype=dtype, device=device) / (s.K - 1) - 1)

    def leaf(self, s: CategoricalSetting, replicates: int, ctx: Context) -> torch.Tensor:
        """The free logits (all but the reference class's), [r, dim, K - 1]."""
        free = self.logits(s, ctx.dtype, ctx.device)[:-1]
        return free.expand(replicates, s.dim, s.K - 1).clone().requires_grad_(True)

    def distribution(self, free: torch.Tensor) -> torch.distributions.Distribution:
        logits = torch.cat([free, torch.zeros_like(free[..., :1])], dim=-1)
        return Independent(Categorical(logits=logits, validate_args=False), 1)

    def values(self, s: CategoricalSetting, dtype: torch.dtype, device: Any = "cpu") -> torch.Tensor:
        """v_k = (k / (K - 1) - t)^2, [K]."""
        return (torch.arange(s.K, dtype=dtype, device=device) / (s.K - 1) - s.t) ** 2

    def f(self, s: CategoricalSetting, ctx: Context):
        v = self.values(s, ctx.dtype, ctx.device)

        def f(c: torch.Tensor) -> torch.Tensor:
            if c.is_floating_point() and c.shape[-1] == s.K and c.dim() >= 2 and c.shape[-2] == s.dim:
                return (c @ v).sum(-1)  # a point of the simplex per coordinate: [..., dim, K] -> [...]
            return v[c.long()].sum(-1)  # class indices: [..., dim] -> [...]

        return f

    def true_gradient(self, s: CategoricalSetting, ctx: Context) -> dict[str, torch.Tensor]:
        v = self.values(s, torch.float64)
        p = torch.softmax(self.logits(s, torch.float64), -1)
        g = (p * (v - (p * v).sum()))[:-1]
        return {"theta": g.expand(s.dim, s.K - 1).reshape(-1)}

    def expectation(self, s: CategoricalSetting) -> float:
        v = self.values(s, torch.float64)
        p = torch.softmax(self.logits(s, torch.float64), -1)
        return float(s.dim * (p * v).sum())


@dataclass(frozen=True)
class PolynomialSetting:
    theta: float | tuple[float, ...]
    t: float
    power: float
    dim: int


@builtin
class BernoulliPolynomial(DiscreteProblem):
    """The ReinMax paper's polynomial programming toy (Liu et al. 2023, sec. 6): f(b) = mean_j |b_j - t|^p.
    On the outcomes f is linear in b, E f = mean_j [sigma_j (1 - t)^p + (1 - sigma_j) t^p], so its gradient is
    closed form, (1/dim) sigma_j (1 - sigma_j) ((1 - t)^p - t^p); but the derivative of |y - t|^p at y = 0, 1,
    which the straight-through family uses, is the chord's slope only at p = 2: there ReinMax (second-order
    accurate) is exact, at p = 1.5 and 3 it is biased."""

    name = "bernoulli-polynomial"
    description = ("b ~ Bernoulli(sigmoid(theta)) in 128 coordinates, f(b) = mean |b - t|^p (ReinMax's polynomial "
                   "toy); closed-form truth")
    axes = (
        Option("theta", float, (0.0,), "logit of every coordinate (a sweep file may give one per coordinate)",
               check=finite, per_coordinate=True),
        Option("t", float, (0.45,), "target of the polynomial f(b) = mean |b - t|^p, strictly between 0 and 1",
               check=lambda v: None if 0 < v < 1 else "must be strictly between 0 and 1"),
        Option("power", float, (1.5,), "the power p of f(b) = mean |b - t|^p, >= 1", check=at_least(1.0),
               report=(1.5, 2.0, 3.0), report_quick=(1.5, 3.0)),
        Option("dim", int, (128,), "dimension, >= 1", check=at_least(1)),
    )
    setting_type = PolynomialSetting

    def f(self, s: PolynomialSetting, ctx: Context):
        t, power = s.t, s.power

        def f(b: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [...]
            # at a relaxed b exactly at t (a float32 draw can land there) |x|^p's second derivative is infinite
            # and autograd's is NaN (REBAR and RELAX differentiate twice while learning): there the value and
            # both derivatives are taken as 0, through a safe base (the double-where idiom, with masks: x + 1 = 1
            # where x = 0, and a factor 0 there; elsewhere x + 0 and a factor 1 are exact). Masks and not
            # torch.where: where's derivatives are where operations too, the dearest part of RELAX's learning.
            # |base| as base times its detached sign: the same value and first derivative, bit for bit, and a
            # second derivative of plain products (abs's goes through a Python reference for add in torch 2.13,
            # 0.6 ms a call, and its first use imports torch._dynamo, 2 s)
            x = b - t
            kept = (x != 0).to(x.dtype)
            base = x + (1 - kept)
            return ((base * base.detach().sign()).pow(power) * kept).mean(-1)

        return f

    def true_gradient(self, s: PolynomialSetting, ctx: Context) -> dict[str, torch.Tensor]:
        p = self.probabilities(s)
        return {"theta": p * (1 - p) * ((1 - s.t) ** s.power - s.t**s.power) / s.dim}

    def expectation(self, s: PolynomialSetting) -> float:
        p = self.probabilities(s)
        return float((p * (1 - s.t) ** s.power + (1 - p) * s.t**s.power).mean())


__all__ = ["BernoulliCoupled", "BernoulliPolynomial", "BernoulliQuadratic", "CategoricalQuadratic", "DiscreteProblem",
           "coupling", "outcomes"]
