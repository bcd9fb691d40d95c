"""Storchastic's gradient estimators (van Krieken et al. 2021, https://github.com/HEmile/storchastic),
called through Storchastic's own API as its users call it:

    method = storch.method.ARM("b", n_samples=n)        # the estimator
    b = method(Bernoulli(logits=theta))                  # a sample, on a plate "b" of n
    storch.add_cost(f(b), "cost")
    storch.backward()                                    # theta.grad: the estimate

Replicates are batched the way Storchastic batches a minibatch: the logits' batch dimension is
denoted independent (``storch.denote_independent``, a plate "replicates"). Storchastic averages
the cost over that plate, so each replicate's gradient is scaled by 1/R; the adapter multiplies it
back (the plate's weight is read, not assumed). A moving-average baseline is shared by the whole
plate, which would make replicates depend on each other, so ``storchastic:score-function-moving-average``
runs the replicates one at a time through one method object, as a user's training loop would
(``loop = True``; rows record it in ``estimator_note``).

The adapter does not fix Storchastic: an exception it raises becomes failed rows, and a bias it has
is measured as it is. The one thing it converts is the sample's type: DisARM returns booleans, which
f gets in the distribution's float dtype, as torch's Bernoulli gives them (and as any user's f must
take them: torch 2 refuses to subtract from a bool tensor).

Requires: the [storchastic] extra (storchastic 0.3.7, which installs pyro-ppl and entmax); f
without parameters of its own (the toy problems, not the VAEs).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch.distributions import Bernoulli, Categorical, Distribution, Normal

from ..base import Estimator, EstimatorError, Function, Surrogate, parameter_surrogate
from ..options import Option
from .common import f_at_samples, require, take_apart

storch = require("storch", "Storchastic", "storchastic")

PLATE = "replicates"


class StorchasticMethod(Estimator):
    """One Storchastic method; subclasses give the method object and the distributions it applies to."""

    library: ClassVar[str] = "storchastic"
    supports: ClassVar[tuple[str, ...]] = ("bernoulli",)
    note = "replicates batched on an independent plate (storch.denote_independent)"

    #: the storch.method class, the keyword its number of samples goes by (the set methods': k), and its
    #: keyword arguments beyond the plate's name and the samples
    method: ClassVar[str] = ""
    samples_keyword: ClassVar[str] = "n_samples"
    method_kwargs: ClassVar[dict[str, Any]] = {}

    def make_method(self, n_samples: int, event_size: int) -> Any:
        return getattr(storch.method, self.method)("b", **{self.samples_keyword: n_samples}, **self.method_kwargs)

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        parts = take_apart(dist, self.name, self.supports)
        leaves = parts.flat_leaves()
        method = state if state is not None else self.make_method(n_samples, max(1, parts.event_shape.numel()))
        if self.loop:
            runs = [self._run(method, step, parts, f, n_samples) for step in parts.one_at_a_time(leaves)]
            grads = {k: torch.cat([g[k] for g, _ in runs]) for k in leaves}
            value = torch.cat([v for _, v in runs])
        else:
            grads, value = self._run(method, leaves, parts, f, n_samples)
        value = value.reshape(parts.batch_shape).to(next(iter(parts.params.values())).dtype)
        fx = value.unsqueeze(0).expand(n_samples, *parts.batch_shape)
        return Surrogate(loss=parameter_surrogate(fx, parts.estimates(grads), len(parts.batch_shape)),
                         f=fx.detach(), state=method if self.stateful else None)

    def _run(self, method: Any, leaves: dict[str, torch.Tensor], parts: Any, f: Function, n_samples: int):
        """One Storchastic forward and backward over ``leaves`` [r, ...]: (flat gradients, values of E f [r])."""
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in leaves.items()}
        r = next(iter(leaves.values())).shape[0]
        dtype = next(iter(leaves.values())).dtype
        storch.reset()
        try:
            indep = {k: storch.denote_independent(v, 0, PLATE) for k, v in leaves.items()}
            # the plain distribution, as Storchastic's users pass it: its methods check for Bernoulli, and every
            # dimension that is not a plate is summed as part of the event
            if parts.kind == "normal":
                dist = Normal(indep["loc"], indep["scale"])
            elif parts.kind == "bernoulli":
                dist = Bernoulli(logits=indep["logits"])
            else:
                dist = Categorical(logits=indep["logits"])
            sample = method(dist)
            calls: list[int] = []

            def cost_of(x: torch.Tensor) -> torch.Tensor:
                if x.dtype == torch.bool:  # DisARM's samples are booleans: f gets them as torch's Bernoulli gives them
                    x = x.to(dtype)
                # checked once: REBAR's eta and temperature are the method's own leaves
                ours = None if calls else [*leaves.values(), *method.parameters()]
                calls.append(1)
                classes = parts.params["logits"].shape[-1] if parts.kind == "categorical" else None
                return f_at_samples(f, x, parts.batch_for(r), parts.event_shape, self.name, ours, classes)

            cost = storch.deterministic(cost_of)(sample)
            storch.add_cost(cost, "cost")
            with warnings.catch_warnings():
                # REBAR and RELAX call backward(create_graph=True) to train their control variates; torch warns
                # of a reference cycle on the parameters, which live for one call here
                warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True", UserWarning)
                storch.backward()
            value = storch.reduce_plates(cost.detach(), plates=[sample.name])._tensor.reshape(r)
            weights = [p.weight for p in cost.plates if p.name == PLATE]  # Storchastic's mean over the plate: 1/r
            scale = float(1 / torch.as_tensor(weights[0]).reshape(-1)[0]) if weights else 1.0
        finally:
            storch.reset()
        grads = {}
        for k, v in leaves.items():
            grads[k] = torch.zeros_like(v) if v.grad is None else v.grad * scale
        return grads, value


class ScoreFunction(StorchasticMethod):
    name = "storchastic:score-function"
    description = "Storchastic's ScoreFunction (REINFORCE, no baseline)"
    counterpart = "reinforce"
    supports = ("bernoulli", "categorical", "normal")
    method = "ScoreFunction"


class ScoreFunctionBatchAverage(StorchasticMethod):
    name = "storchastic:score-function-batch-average"
    description = "Storchastic's ScoreFunction with baseline_factory='batch_average' (leave-one-out mean)"
    counterpart = "reinforce-loo"
    supports = ("bernoulli", "categorical", "normal")
    min_samples = 2
    method = "ScoreFunction"
    method_kwargs = {"baseline_factory": "batch_average"}


class ScoreFunctionMovingAverage(StorchasticMethod):
    name = "storchastic:score-function-moving-average"
    description = "Storchastic's ScoreFunction with baseline_factory='moving_average' (decay 0.95), state across calls"
    counterpart = "reinforce-ema"
    supports = ("bernoulli", "categorical", "normal")
    stateful = True
    loop = True
    note = "replicates run one at a time through one method object (a plate would share the moving average)"
    method = "ScoreFunction"
    method_kwargs = {"baseline_factory": "moving_average"}


class Reparameterization(StorchasticMethod):
    name = "storchastic:reparameterization"
    description = "Storchastic's Reparameterization (pathwise through rsample)"
    counterpart = "reparameterization"
    supports = ("normal",)
    method = "Reparameterization"


class ARM(StorchasticMethod):
    name = "storchastic:arm"
    description = "Storchastic's ARM (Yin & Zhou 2019)"
    counterpart = "arm"
    method = "ARM"


class DisARM(StorchasticMethod):
    name = "storchastic:disarm"
    description = "Storchastic's DisARM (Dong, Mnih & Tucker 2020)"
    counterpart = "disarm"
    method = "DisARM"


class Rebar(StorchasticMethod):
    name = "storchastic:rebar"
    description = "Storchastic's REBAR (Tucker et al. 2017) at its initial eta and temperature (1, 1)"
    counterpart = "rebar"
    method = "REBAR"


class Relax(StorchasticMethod):
    name = "storchastic:relax"
    description = "Storchastic's RELAX (Grathwohl et al. 2018) with its default network, untrained"
    counterpart = "relax"

    def make_method(self, n_samples, event_size):
        return storch.method.RELAX("b", n_samples=n_samples, in_dim=event_size)


class GumbelSoftmax(StorchasticMethod):
    name = "storchastic:gumbel-softmax"
    description = "Storchastic's GumbelSoftmax (temperature 1, annealing 1e-5 a call); biased"
    counterpart = "gumbel-softmax"
    options = (Option("temperature", float, (1.0,), "initial temperature of the relaxation, > 0",
                      check=lambda t: None if t > 0 else "must be > 0"),)
    temperature: float

    def make_method(self, n_samples, event_size):
        return storch.method.GumbelSoftmax("b", n_samples=n_samples, initial_temperature=self.temperature)


class StraightThrough(StorchasticMethod):
    name = "storchastic:straight-through"
    description = "Storchastic's GumbelSoftmax(straight_through=True) (temperature 1); biased"
    counterpart = "straight-through"
    method = "GumbelSoftmax"
    method_kwargs = {"straight_through": True}


class Expect(StorchasticMethod):
    name = "storchastic:expect"
    description = "Storchastic's Expect (enumerates every outcome); zero variance"
    counterpart = "exact"

    def make_method(self, n_samples, event_size):
        if 2 ** event_size > 10000:
            raise EstimatorError(f"estimator {self.name!r}: 2^{event_size} outcomes exceed Storchastic's default "
                                 f"budget of 10000", capability=True)
        return storch.method.Expect("b")


class UnorderedSetEstimator(StorchasticMethod):
    name = "storchastic:unordered-set"
    description = ("Storchastic's UnorderedSetEstimator (Kool et al. 2020, built-in baseline): k = n_samples outcomes "
                   "by stochastic beam search, leave-one-out ratios by numerical integration")
    counterpart = "unordered-set"
    supports = ("bernoulli", "categorical")
    method = "UnorderedSetEstimator"
    samples_keyword = "k"


class RaoBlackwellSF(StorchasticMethod):
    name = "storchastic:rao-blackwell-sf"
    description = ("Storchastic's RaoBlackwellSF (Liu et al. 2019): n_samples - 1 most probable outcomes summed, one "
                   "sampled from the rest")
    counterpart = "sum-and-sample"
    supports = ("bernoulli", "categorical")
    method = "RaoBlackwellSF"


class ScoreFunctionWOR(StorchasticMethod):
    name = "storchastic:score-function-wor"
    description = ("Storchastic's ScoreFunctionWOR (Kool et al. 2019, samples without replacement, its default "
                   "normalized importance weights, biased=True)")
    counterpart = "reinforce-loo"
    supports = ("bernoulli", "categorical")
    method = "ScoreFunctionWOR"
    samples_keyword = "k"


class GumbelSparseMax(StorchasticMethod):
    name = "storchastic:gumbel-sparsemax"
    description = "Storchastic's GumbelSparseMax (sparsemax in place of the softmax of Gumbel-softmax); biased"
    counterpart = "gumbel-softmax"
    supports = ("bernoulli", "categorical")
    method = "GumbelSparseMax"


class GumbelEntmax(StorchasticMethod):
    name = "storchastic:gumbel-entmax"
    description = "Storchastic's GumbelEntmax (1.5-entmax in place of the softmax of Gumbel-softmax); biased"
    counterpart = "gumbel-softmax"
    supports = ("bernoulli", "categorical")
    method = "GumbelEntmax"


ESTIMATORS = [ScoreFunction, ScoreFunctionBatchAverage, ScoreFunctionMovingAverage, Reparameterization, ARM, DisARM,
              Rebar, Relax, GumbelSoftmax, StraightThrough, Expect, UnorderedSetEstimator, RaoBlackwellSF,
              ScoreFunctionWOR, GumbelSparseMax, GumbelEntmax]
