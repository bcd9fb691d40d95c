"""Pyro's ELBOs as gradient estimators (Bingham et al. 2019, https://pyro.ai), called through Pyro's
public API as its users call it: a model and a guide, and the ELBO's ``loss_and_grads`` (what
``SVI.step`` calls: it runs backward() on Pyro's surrogate loss).

E_q[f(x)] is written as an ELBO: theta is a ``pyro.param``; the guide draws x from q_theta; the
model draws x from q too and adds f(x) with ``pyro.factor``. Then log p(x) - log q(x) = 0 at every
x and the ELBO is E_q[f(x)] exactly, so minus the gradient of the loss is Pyro's estimate of
grad_theta E_q[f(x)]. Where Pyro differentiates the site pathwise (Normal) the model's q uses theta
itself, so log p - log q is 0 as a function of theta too; where it uses the score function the
model's q uses theta detached, so the model adds no grad log p(x) term (a zero-mean term that Pyro
would differentiate, as it drops the guide's). Either way the prior adds nothing that is not Pyro's
estimator of E_q[f]:

    def guide():
        theta = pyro.param("theta", init)
        with pyro.plate("replicates", R):
            pyro.sample("x", q)
    def model():
        with pyro.plate("replicates", R):
            x = pyro.sample("x", q)
            pyro.factor("f", f(x))
    Trace_ELBO(num_particles=n, vectorize_particles=True).loss_and_grads(model, guide)   # theta.grad = -estimate

Replicates are batched on a ``pyro.plate`` (Pyro sums over it, so each replicate's parameters get
their own estimate) and the n samples are Pyro's vectorized particles. Which estimator Pyro uses
for a site is its own choice: pathwise where q has rsample (Normal), the score function where it
has not (Bernoulli, Categorical), TraceGraph_ELBO with the downstream cost instead of the whole
ELBO as the weight. ``pyro:tracegraph-elbo-avg-baseline`` adds TraceGraph_ELBO's decaying-average
baseline: Pyro keeps it in its param store with the plate's shape, so the adapter runs the
replicates one at a time, as steps of one run, and carries the average from call to call as the
estimator's state. Pyro's param store is global: the adapter clears it before and after each call.

Requires: the [pyro] extra (pyro-ppl 1.9.2); f without parameters of its own (the toy problems).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch.distributions import Distribution

from ..base import Estimator, Function, Surrogate, parameter_surrogate
from .common import f_at_samples, require, take_apart

pyro = require("pyro", "Pyro", "pyro")
pdist = require("pyro.distributions", "Pyro", "pyro")
require("pyro.infer", "Pyro", "pyro")

PLATE = "replicates"
#: the param store name of TraceGraph_ELBO's decaying-average baseline for the site "x"
BASELINE_PARAM = "__baseline_avg_downstream_cost_x"


class PyroELBO(Estimator):
    """One of Pyro's ELBOs; subclasses give the ELBO object."""

    library: ClassVar[str] = "pyro"
    supports: ClassVar[tuple[str, ...]] = ("normal", "bernoulli", "categorical")
    note: ClassVar[str] = "replicates batched on a pyro.plate, samples as vectorized particles"

    #: the pyro.infer ELBO class, made with the particles of n_samples
    elbo: ClassVar[str] = ""

    def make_elbo(self, n_samples: int) -> Any:
        return getattr(pyro.infer, self.elbo)(**_particles(n_samples))

    def guide_options(self) -> dict[str, Any]:
        return {}

    def surrogate(self, dist: Distribution, f: Function, n_samples: int, state: Any = None) -> Surrogate:
        parts = take_apart(dist, self.name, self.supports)
        leaves = parts.flat_leaves()
        if self.loop:
            runs = []
            for step in parts.one_at_a_time(leaves):
                runs.append(self._run(step, parts, f, n_samples, state))
                state = runs[-1][2]
            flat = {k: torch.cat([g[k] for g, _, _ in runs]) for k in leaves}
            fx = torch.cat([v for _, v, _ in runs], dim=1)
        else:
            flat, fx, state = self._run(leaves, parts, f, n_samples, state)
        fx = fx.reshape(-1, *parts.batch_shape)  # [n, *B]: f at the particles
        fx = fx.expand(n_samples, *parts.batch_shape) if fx.shape[0] == 1 else fx
        dtype = next(iter(parts.params.values())).dtype
        return Surrogate(loss=parameter_surrogate(fx.to(dtype), parts.estimates(flat), len(parts.batch_shape)),
                         f=fx, state=state if self.stateful else None)

    def _run(self, leaves: dict[str, torch.Tensor], parts: Any, f: Function, n_samples: int,
             state: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
        """One ELBO step over ``leaves`` [r, ...]: (flat gradients, f at the particles [n, r], the baseline's state)."""
        leaves = {k: v.detach().clone() for k, v in leaves.items()}
        r = next(iter(leaves.values())).shape[0]
        event = parts.event_shape
        reparam = parts.kind == "normal"

        def q(in_model: bool) -> Any:
            p = {k: pyro.param(k, v) for k, v in leaves.items()}  # theta, as Pyro's users declare it
            if in_model and not reparam:
                p = {k: v.detach() for k, v in p.items()}
            if parts.kind == "normal":
                d = pdist.Normal(p["loc"], p["scale"])
            elif parts.kind == "bernoulli":
                d = pdist.Bernoulli(logits=p["logits"])
            else:
                d = pdist.Categorical(logits=p["logits"])
            return d.to_event(len(event)) if len(event) else d

        values: list[torch.Tensor] = []

        def model() -> None:
            with pyro.plate(PLATE, r):
                x = pyro.sample("x", q(True))
                # checked once, against theta as the param store holds it
                ours = None if values else [pyro.get_param_store().get_param(k).unconstrained() for k in leaves]
                out = f_at_samples(f, x, parts.batch_for(r), event, self.name, ours)
                values.append(out.detach())
                pyro.factor("f", out)

        def guide() -> None:
            with pyro.plate(PLATE, r):
                pyro.sample("x", q(False), infer=self.guide_options())

        store = pyro.get_param_store()
        store.clear()
        try:
            if state is not None:
                store[BASELINE_PARAM] = state
            self.make_elbo(n_samples).loss_and_grads(model, guide)  # what SVI.step calls: backward() of the surrogate loss
            flat = {}
            for k, v in leaves.items():
                g = store.get_param(k).unconstrained().grad
                flat[k] = torch.zeros_like(v) if g is None else -g  # the loss is minus the ELBO
            new_state = store[BASELINE_PARAM].detach() if BASELINE_PARAM in store else None
        finally:
            store.clear()
        return flat, values[-1].reshape(-1, r), new_state


def _particles(n_samples: int) -> dict[str, Any]:
    return {"num_particles": n_samples, "vectorize_particles": n_samples > 1, "max_plate_nesting": 1}


class TraceELBO(PyroELBO):
    name = "pyro:trace-elbo"
    description = "Pyro's Trace_ELBO: pathwise where q has rsample, else the score function weighted by the ELBO"
    counterpart = "reparameterization reinforce"
    elbo = "Trace_ELBO"


class TraceGraphELBO(PyroELBO):
    name = "pyro:tracegraph-elbo"
    description = "Pyro's TraceGraph_ELBO: the score function weighted by the downstream cost (no baseline)"
    counterpart = "reparameterization reinforce"
    elbo = "TraceGraph_ELBO"


class TraceGraphELBOAvgBaseline(PyroELBO):
    name = "pyro:tracegraph-elbo-avg-baseline"
    description = "Pyro's TraceGraph_ELBO with use_decaying_avg_baseline (beta 0.90), state across calls"
    loop = True
    note = ("replicates run one at a time, each a step of one run (the decaying average has the plate's shape, "
            "so batched replicates would each need a fixed batch size)")
    counterpart = "reparameterization reinforce-ema"
    stateful = True
    elbo = "TraceGraph_ELBO"
    #: the decaying average's factor (Pyro's default): each replicate, one step, keeps this much of it
    baseline_beta: ClassVar[float] = 0.90
    #: every replicate of a warm-up call is a step, so the average settles within 5 calls: of at least 10
    #: replicates each (the quick report's 50-replicate cells), its start weighs 0.9^50 = 0.5% (10 calls: 0.003%)
    warmup_calls = 5

    def guide_options(self):
        return {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": self.baseline_beta}}


ESTIMATORS = [TraceELBO, TraceGraphELBO, TraceGraphELBOAvgBaseline]
