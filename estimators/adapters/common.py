"""What the library adapters share: the optional import, and a distribution taken apart into flat leaves."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Bernoulli, Categorical, Distribution, Normal

from ..base import EstimatorError, dist_name, unwrap


class MissingExtra(ImportError):
    """An adapter's library is not installed; ``hint`` says how to install it."""

    def __init__(self, library: str, extra: str):
        self.library, self.extra = library, extra
        self.hint = f"pip install -c constraints.txt -e '.[{extra}]'"
        super().__init__(f"{library} is not installed (the [{extra}] extra): {self.hint}")


def require(module: str, library: str, extra: str) -> Any:
    """Import ``module`` or raise MissingExtra (at an adapter module's import, so that the registry
    knows the adapter's names but not its classes)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(library, extra) from exc


#: the distributions the adapters take apart, by name; their parameters are the leaves
KINDS: dict[type, tuple[str, tuple[str, ...]]] = {
    Normal: ("normal", ("loc", "scale")),
    Bernoulli: ("bernoulli", ("logits",)),
    Categorical: ("categorical", ("logits",)),
}


@dataclass
class Parts:
    """A distribution as an adapter rebuilds it in its library.

    kind: "normal", "bernoulli" or "categorical"; params: each parameter at full shape
    [*B, *E] (categorical logits [*B, *E, K]), carrying the caller's autograd history; batch_shape
    B; event_ndims: how many of the last dims Independent reinterprets as the event (0 or 1).
    """

    kind: str
    params: dict[str, torch.Tensor]
    batch_shape: torch.Size
    event_ndims: int

    @property
    def replicates(self) -> int:
        """Independent batch elements, each one estimate: prod(B)."""
        return math.prod(self.batch_shape)

    def flat_leaves(self) -> dict[str, torch.Tensor]:
        """Each parameter detached, flattened to [prod(B), ...] and made a leaf that collects the library's gradient."""
        return {k: v.detach().reshape(self.replicates, *v.shape[len(self.batch_shape):]).clone().requires_grad_(True)
                for k, v in self.params.items()}

    def one_at_a_time(self, leaves: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The flat leaves split by the first batch dimension (the independent estimates): one estimate's rows
        each, the rest of the batch (a VAE's images) kept together, as one step of a user's loop sees it."""
        rows = math.prod(self.batch_shape[1:])
        return [{k: v[i * rows:(i + 1) * rows] for k, v in leaves.items()} for i in range(self.batch_shape[0])]

    def batch_for(self, rows: int) -> tuple[int, ...]:
        """The batch shape f sees for ``rows`` of the flat leaves: all of them, or one of one_at_a_time's steps."""
        return tuple(self.batch_shape) if rows == self.replicates else (1, *self.batch_shape[1:])

    @property
    def event_shape(self) -> torch.Size:
        """The shape of one batch element's sample: the parameters' shape after the batch (a categorical's
        logits lose their last dimension: a sample is an index per coordinate)."""
        shape = next(iter(self.params.values())).shape[len(self.batch_shape):]
        return shape[:-1] if self.kind == "categorical" else shape

    def estimates(self, grads: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, gradient at its shape) pairs for parameter_surrogate, from flat gradients."""
        return [(p, grads[k].reshape(p.shape)) for k, p in self.params.items()]


def take_apart(dist: Distribution, estimator: str, kinds: tuple[str, ...]) -> Parts:
    """The Parts of a Normal, Bernoulli or Categorical distribution (optionally Independent over its
    last dimension) of a kind in ``kinds``; a capability EstimatorError otherwise."""
    base, event_ndims = unwrap(dist)
    kind = KINDS.get(type(base))
    if kind is None or kind[0] not in kinds or event_ndims > 1:
        allowed = ", ".join(kinds)
        raise EstimatorError(f"estimator {estimator!r} applies to {allowed} distributions (optionally Independent over "
                             f"the last dimension), got {dist_name(dist)}", capability=True)
    shape = dist.batch_shape + dist.event_shape
    params = {}
    for name in kind[1]:
        value = getattr(base, name)
        params[name] = value.expand(*shape, value.shape[-1]) if kind[0] == "categorical" else value.expand(shape)
    return Parts(kind[0], params, dist.batch_shape, event_ndims)


def f_at_samples(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: tuple[int, ...],
                 event: torch.Size, estimator: str, ours: list[torch.Tensor] | None = None,
                 classes: int | None = None) -> torch.Tensor:
    """f at a library's samples ``x`` [plate dims..., *event]: given to f as estbench's f takes them,
    [m, *batch, *event], and its values returned with x's plate dims. A categorical's relaxed sample (a
    float point of the simplex, ``classes`` entries in its last dimension) keeps that dimension, as a
    categorical problem's f takes it ([m, *batch, *event, classes]). With ``ours`` (the leaves the
    gradient may reach: the adapter's, the library method's), an f with parameters of its own (a VAE's
    decoder, which the library would also differentiate) is a capability EstimatorError."""
    if classes is not None and x.is_floating_point() and x.shape[-1] == classes:
        event = (*event, classes)
    out = f(x.reshape(-1, *batch, *event))
    if ours is not None and isinstance(out, torch.Tensor) and out.requires_grad and foreign_leaves(out, ours):
        raise EstimatorError(
            f"estimator {estimator!r} (a library adapter) measures the gradient with respect to the distribution's "
            f"parameters only; this f has parameters of its own (a VAE decoder), which the library would also "
            f"differentiate", capability=True)
    return out.reshape(x.shape[:x.dim() - len(event)])


def foreign_leaves(out: torch.Tensor, allowed: list[torch.Tensor]) -> bool:
    """Whether ``out`` depends through autograd on a leaf tensor other than ``allowed`` (the
    adapter's own leaves): f has parameters of its own, such as a VAE's decoder."""
    ours = {id(t) for t in allowed}
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)
        if var is not None and id(var) not in ours:
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False
