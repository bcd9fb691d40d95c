"""The estimator interface, stated once.

Every estimator answers one question: given a distribution ``p_theta`` whose
parameters carry gradients, a batched function ``f`` and a number of samples
``n``, build a **surrogate objective** whose value is the Monte Carlo estimate
of ``E_{x ~ p_theta}[f(x)]`` and whose gradient (through autograd, to whatever
the distribution's parameters depend on) is an unbiased estimate of
``grad_theta E_{x ~ p_theta}[f(x)]``.

Shapes at the boundary::

    dist            batch_shape B, event_shape E
    f(x)            x: [n, *B, *E]  ->  [n, *B]    (one value per sample)
    surrogate.loss  [*B]                            (mean over the n samples)
    surrogate.f     [n, *B]                         (the values of f, detached)

Independent batch elements give independent estimates: summing ``loss`` over the batch and calling ``backward()``
on parameters expanded per batch element yields one gradient estimate per element. That is how the runner draws R
replicates at once, and how the same estimator object serves an encoder whose outputs parameterize ``q(z | x)``.

The surrogate idea is Pyro's (Schulman et al. 2015, "Gradient Estimation Using Stochastic Computation Graphs"): the
score term ``(f - b).detach() * log p`` is written as ``(f - b).detach() * (log p - (log p).detach())`` so the value
of the loss stays equal to the plain Monte Carlo average of ``f``.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.distributions import Distribution

from .options import Option, OptionError, declared

Function = Callable[[torch.Tensor], torch.Tensor]


class EstimatorError(ValueError):
    """An estimator cannot be used as asked (wrong distribution, too few samples...).

    ``capability`` is True when the estimator simply does not apply to this
    distribution or sample size (the runner then marks the cell 'skipped'),
    False for a genuine error such as f returning the wrong shape.
    """

    def __init__(self, message: str, capability: bool = False):
        super().__init__(message)
        self.capability = capability


def made_once(maxsize: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """functools.lru_cache for the constant tensors an estimator makes from plain arguments (an outcome grid,
    quadrature nodes), not written to; inside torch.compile the function is called past the cache (dynamo traces
    through lru_cache anyway, and warns that it does) so that the tensors are made in the graph."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args: Any) -> Any:
            return fn(*args) if torch.compiler.is_compiling() else cached(*args)

        return call

    return wrap


@dataclass
class Surrogate:
    """What an estimator returns.

    loss:  [*B] surrogate objective; value = MC average of f, gradient = estimate.
    f:     [n, *B] values of f at the samples, detached (for diagnostics).
    state: the estimator's new state (None for stateless estimators).
    """

    loss: torch.Tensor
    f: torch.Tensor
    state: Any = None


def dist_name(dist: Distribution) -> str:
    """A readable name for a distribution, seeing through Independent."""
    name = type(dist).__name__
    base = getattr(dist, "base_dist", None)
    if base is not None:
        name = f"{name}({type(base).__name__})"
    return name


#: the distribution families estimators and problems declare (``Estimator.supports``,
#: ``Problem.family``); ``ANY`` in ``supports``: every family with a differentiable log_prob
FAMILIES: dict[type, str] = {
    torch.distributions.Normal: "normal",
    torch.distributions.Bernoulli: "bernoulli",
    torch.distributions.Categorical: "categorical",
}
ANY = "any"
#: the families whose samples no estimator can differentiate through (has_rsample is False)
NOT_REPARAMETERIZABLE = frozenset({"bernoulli", "categorical"})
#: the objective kinds a problem declares and an estimator supports (``Problem.objective``,
#: ``Estimator.objectives``): E f(x) over one draw's distribution, and the K-sample importance-weighted
#: bound E log (1/K) sum_k exp(l(x_k)) (a ``Bound`` passed where f is)
EXPECTATION = "expectation"
MULTI_SAMPLE = "multi-sample"
OBJECTIVES = (EXPECTATION, MULTI_SAMPLE)


@dataclass(frozen=True)
class Bound:
    """The K-sample importance-weighted bound (Burda, Grosse & Salakhutdinov 2016), the objective of
    a problem that declares MULTI_SAMPLE:

        L_K = E log (1/K) sum_k exp(l(x_k)),   x_1, ..., x_K ~ p_theta independently,

    with the log-weight l(x) = log_p(x) - log p_theta(x) (``minus_log_q``: a VAE's
    log p(x, z) - log q(z | x), where theta enters l directly as well as through the draw) or
    l(x) = log_p(x). ``log_p`` takes samples as an f does: [m, *B, *E] -> [m, *B]. An estimator
    receives it in place of f, in :meth:`Estimator.bound_surrogate`."""

    log_p: Function
    K: int
    minus_log_q: bool = True

    def log_weight(self, dist: Distribution, x: torch.Tensor, q: Distribution | None = None) -> torch.Tensor:
        """l at draws x [n, K, *B, *E] -> [n, K, *B]; ``q``: the distribution whose log_prob is
        subtracted (default ``dist``; DReG passes one with its parameters detached)."""
        n, k = x.shape[:2]
        flat = evaluate(self.log_p, x.reshape(n * k, *x.shape[2:]), dist, n * k)
        lw = flat.reshape(n, k, *flat.shape[1:])
        if self.minus_log_q:
            lw = lw - (dist if q is None else q).log_prob(x)
        return lw

    @staticmethod
    def value(log_w: torch.Tensor) -> torch.Tensor:
        """log (1/K) sum_k exp(l_k): [n, K, *B] -> [n, *B]."""
        return torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])


def unwrap(dist: Distribution) -> tuple[Distribution, int]:
    """(base distribution, event dims that Independent reinterprets): the one place that sees
    through ``Independent``."""
    if isinstance(dist, torch.distributions.Independent):
        return dist.base_dist, dist.reinterpreted_batch_ndims
    return dist, 0


def family_of(dist: Distribution) -> str:
    """The family name of a distribution (FAMILIES; its class name, lower case, for any other),
    optionally wrapped in Independent."""
    base, _ = unwrap(dist)
    return FAMILIES.get(type(base), type(base).__name__.lower())


class Estimator(abc.ABC):
    """Base class of every estimator, built in or plugin.

    Subclasses set ``name`` (a stable string, the public key used by the
    command line and the results table), ``description`` (one line) and
    implement :meth:`surrogate`. Capabilities are declared, not inferred
    from classes:

    ``requires_rsample``  the estimator differentiates through samples and
                          needs ``dist.has_rsample`` (pathwise estimators);
    ``min_samples``       smallest number of samples per estimate;
    ``stateful``          the estimator carries state between calls (e.g. a
                          moving-average baseline); the runner warms it up.
    ``replaces``          a plugin that means to take the name of an installed
                          plugin estimator (e.g. ``measure-valued``) sets this to
                          True; without it the clash is an error.
    ``supports``          the distribution families it serves (``"normal"``,
                          ``"bernoulli"``, ``"categorical"``; ``ANY``: every family
                          whose log_prob is differentiable). The runner skips, with
                          the reason, a problem whose ``family`` is not among them.
    ``objectives``        the objective kinds it estimates: ``"expectation"`` (E f, in
                          :meth:`surrogate`) and ``"multi-sample"`` (a :class:`Bound`, in
                          :meth:`bound_surrogate`); each declared kind's method is implemented.
    ``min_K``             multi-sample: the fewest samples K in the bound it needs (VIMCO: 2).
    ``unbiased``          True: E[estimate] is the true gradient for every setting it
                          supports (the test suite then holds it against exact truth
                          on every problem it supports); False: biased on purpose (a
                          relaxation), and the report must flag it somewhere; None:
                          not declared (neither test runs).
    ``f_evals_per_draw``  evaluations of f per draw (per sample), or None where it
                          depends on the setting (the runner counts it either way).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    requires_rsample: ClassVar[bool] = False
    min_samples: ClassVar[int] = 1
    stateful: ClassVar[bool] = False
    replaces: ClassVar[bool] = False
    #: how it computes its replicates where a reader should know (an adapter that loops); every row's ``estimator_note``
    note: ClassVar[str] = ""
    #: it computes its replicates one at a time (an adapter that runs a library's method as a user's loop would), so
    #: its cost grows with R: ``estbench report --quick`` gives it QUICK_LOOP_REPLICATES (benchmarks.sweep)
    loop: ClassVar[bool] = False
    #: for an estimator that another library ships (an adapter): estbench's own implementation of the same
    #: method, or several names separated by spaces, the first that ran on a problem being the one (Pyro's
    #: ELBOs are pathwise on a Normal and the score function on a Bernoulli); recorded as ``counterpart``
    counterpart: ClassVar[str] = ""
    #: for an adapter: the library whose method it calls ("pyro", "storchastic"); empty for estbench's own
    library: ClassVar[str] = ""
    #: declared options (estimators.Option): a temperature, a decay... Each becomes a command-line
    #: option and sweep-file key, is checked, and its value is recorded in every results row
    options: ClassVar[tuple[Option, ...]] = ()
    #: the setting axes the default report sweeps it over (e.g. ("K",)) besides each problem's base setting, n_samples,
    #: the model problems and its options' report values; None: every axis (time goes to settings that separate it)
    report_axes: ClassVar[tuple[str, ...] | None] = None
    supports: ClassVar[tuple[str, ...]] = (ANY,)
    objectives: ClassVar[tuple[str, ...]] = (EXPECTATION,)
    unbiased: ClassVar[bool | None] = None
    min_K: ClassVar[int] = 1
    f_evals_per_draw: ClassVar[int | None] = None
    #: where it is exact (zero variance) by construction or symmetry, in words: a zero-variance row's ``exact_reason``
    exact_when: ClassVar[str] = ""
    #: stateful estimators: calls the runner makes before it measures (a learned control variate
    #: learns during all but the last of them)
    warmup_calls: ClassVar[int] = 10

    @classmethod
    def unsupported(cls, family: str | None, objective: str = EXPECTATION, n_samples: int | None = None,
                    has_rsample: bool | None = None, K: int | None = None) -> str | None:
        """Why this estimator does not apply to a problem of ``family`` and ``objective`` at ``n_samples`` (and a
        bound's ``K``); None: it applies. From its declarations alone: an unknown family is checked at call time."""
        if K is not None and K < cls.min_K:
            return f"estimator {cls.name!r} needs K >= {cls.min_K} samples in the bound, got K={K}"
        if objective not in cls.objectives:
            return (f"estimator {cls.name!r} estimates {' or '.join(cls.objectives)} objectives, "
                    f"the problem's is {objective}")
        if family is not None and ANY not in cls.supports and family not in cls.supports:
            return f"estimator {cls.name!r} needs a {' or '.join(cls.supports)} distribution, got {family}"
        if n_samples is not None and n_samples < cls.min_samples:
            return f"estimator {cls.name!r} needs n_samples >= {cls.min_samples}, got n_samples={n_samples}"
        if has_rsample is None and family is not None:
            has_rsample = family not in NOT_REPARAMETERIZABLE
        if cls.requires_rsample and has_rsample is False:
            return (f"estimator {cls.name!r} needs a reparameterizable distribution (has_rsample=True), "
                    f"but a {family} distribution has no rsample(); use a score-function estimator such as "
                    f"'reinforce' instead")
        return None

    def __init__(self, **values: Any):
        """Set each declared option to its value here, or to its first default."""
        known = declared(type(self).options, type(self).__name__)
        for name in values:
            if name not in known:
                valid = ", ".join(known) or "none"
                raise EstimatorError(f"estimator {getattr(self, 'name', type(self).__name__)!r} has no option "
                                     f"{name!r}; its options: {valid}")
        for name, option in known.items():
            try:
                setattr(self, name, option.coerce(values[name]) if name in values else option.default[0])
            except OptionError as exc:
                raise EstimatorError(f"estimator {self.name!r}: {exc}") from None

    def init_state(self) -> Any:
        """The state before the first call (None for stateless estimators)."""
        return None

    def check(self, dist: Distribution, n_samples: int) -> None:
        """Raise EstimatorError if this estimator cannot serve ``dist`` with ``n_samples``."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, int):
            raise EstimatorError(
                f"estimator {self.name!r}: n_samples must be an int, got {n_samples!r}"
            )
        if n_samples < self.min_samples:
            raise EstimatorError(
                f"estimator {self.name!r} needs n_samples >= {self.min_samples}, "
                f"got n_samples={n_samples} (distribution {dist_name(dist)})",
                capability=True,
            )
        if self.requires_rsample and not dist.has_rsample:
            raise EstimatorError(
                f"estimator {self.name!r} needs a reparameterizable distribution "
                f"(has_rsample=True), but {dist_name(dist)} has no rsample(); "
                f"use a score-function estimator such as 'reinforce' instead",
                capability=True,
            )
        if ANY not in self.supports and family_of(dist) not in self.supports:
            raise EstimatorError(
                f"estimator {self.name!r} needs a {' or '.join(self.supports)} distribution, got {dist_name(dist)}",
                capability=True,
            )

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        """The surrogate of E f (objective "expectation"); see the module docstring."""
        raise EstimatorError(f"estimator {self.name!r} does not estimate expectations", capability=True)

    def bound_surrogate(self, dist: Distribution, bound: Bound, n_samples: int, state: Any = None) -> Surrogate:
        """The surrogate of the K-sample bound (objective "multi-sample"): ``loss`` [*B] the mean over
        ``n_samples`` independent sets of K draws of log (1/K) sum_k exp(l(x_k)), its gradient an
        estimate of the bound's; ``f`` [n, *B] those values, detached."""
        raise EstimatorError(f"estimator {self.name!r} does not estimate multi-sample bounds", capability=True)

    def __call__(self, dist: Distribution, f: Function | Bound, n_samples: int, state: Any = None) -> Surrogate:
        self.check(dist, n_samples)
        if isinstance(f, Bound):
            if MULTI_SAMPLE not in self.objectives:
                raise EstimatorError(f"estimator {self.name!r} estimates {' or '.join(self.objectives)} objectives, "
                                     f"not the multi-sample bound", capability=True)
            if f.K < self.min_K:
                raise EstimatorError(self.unsupported(None, MULTI_SAMPLE, K=f.K), capability=True)
            return self.bound_surrogate(dist, f, n_samples, state)
        if EXPECTATION not in self.objectives:
            raise EstimatorError(f"estimator {self.name!r} estimates {' or '.join(self.objectives)} objectives, "
                                 f"not an expectation", capability=True)
        return self.surrogate(dist, f, n_samples, state)

    def __repr__(self) -> str:
        return f"<estimator {self.name!r}>"


def draw(dist: Distribution, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """``dist.sample(sample_shape)``, no gradient through it. A Bernoulli (optionally Independent) is
    drawn as 1[u < sigmoid(logits)], u ~ U(0, 1): the same distribution, faster than torch.bernoulli
    on a CPU (measured: docs/performance.md, the multi-sample bound)."""
    base, _ = unwrap(dist)
    if type(base) is torch.distributions.Bernoulli:
        p = base.probs.detach()
        return (torch.rand((*sample_shape, *p.shape), dtype=p.dtype, device=p.device) < p).to(p.dtype)
    return dist.sample(sample_shape)


def evaluate(f: Function, x: torch.Tensor, dist: Distribution, n_samples: int) -> torch.Tensor:
    """Call f on samples ``x`` [n, *B, *E] and check it returns [n, *B]."""
    fx = f(x)
    expected = (n_samples, *dist.batch_shape)
    if not isinstance(fx, torch.Tensor) or tuple(fx.shape) != expected:
        got = tuple(fx.shape) if isinstance(fx, torch.Tensor) else type(fx).__name__
        raise EstimatorError(
            f"f must return one value per sample, shape {expected} for samples of shape "
            f"{tuple(x.shape)}; got {got}"
        )
    return fx


def score_surrogate(
    fx: torch.Tensor, log_prob: torch.Tensor, baseline: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Score-function surrogate, mean over the sample axis: [n, *B] -> [*B].

    Value: mean(f). Gradient: mean(grad f) (for parameters f itself depends on,
    such as a decoder's; samples are not differentiated) plus
    mean((f - b) * grad log p). ``b`` must not depend on the sample it is
    subtracted from, or the estimate is biased.
    """
    weight = (fx.detach() - baseline).detach()
    return (fx + weight * (log_prob - log_prob.detach())).mean(0)


def parameter_surrogate(
    fx: torch.Tensor, estimates: list[tuple[torch.Tensor, torch.Tensor]], batch_ndims: int
) -> torch.Tensor:
    """Surrogate for estimators that compute the gradient w.r.t. the distribution's parameters directly.

    ``estimates`` pairs each distribution parameter p (shape [*B, ...], carrying autograd history)
    with an estimate g of dE/dp of the same shape. Returns [*B]:

        mean_i f_i  +  sum_j g_j * (p_j - p_j.detach())

    Its value is the Monte Carlo average of f; its gradient is g, carried by autograd to
    whatever p depends on (an encoder's weights), plus mean_i grad f_i for parameters of f
    itself (samples are not differentiated).
    """
    loss = fx.mean(0)
    for p, g in estimates:
        term = g.detach() * (p - p.detach())
        loss = loss + term.reshape(*term.shape[:batch_ndims], -1).sum(-1)
    return loss


def gaussian_parameters(dist: Distribution, estimator: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loc, scale, number of event dims) of a Normal or Independent(Normal, 1) distribution.

    loc and scale are broadcast to the full shape [*B, *E]. Raises a capability
    EstimatorError naming ``estimator`` for any other distribution.
    """
    base, event_ndims = unwrap(dist)
    if type(base) is not torch.distributions.Normal or event_ndims > 1:
        raise EstimatorError(
            f"estimator {estimator!r} needs a Normal or Independent(Normal, 1) distribution, "
            f"got {dist_name(dist)}",
            capability=True,
        )
    shape = dist.batch_shape + dist.event_shape
    return base.loc.expand(shape), base.scale.expand(shape), event_ndims
