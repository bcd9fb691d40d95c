"""Counting evaluations of f: the runner counts, the estimator declares nothing.

A problem hands estimators ``counted(f, per)``; while :func:`count_f_evals` is active (the
engine turns it on for one eager warm-up call of each cell), every call adds the number of
values f returned divided by ``per``, the number of independent estimates the call serves
(the replicates, times the images for the VAE). The total over one chunk, divided by the
chunk's estimates, is ``f_evals``: evaluations of f per gradient estimate (REINFORCE with n
samples: n; ARM and DisARM: 2n; measure-valued: 4 x dim x n).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

_counter: list[float] | None = None


def counted(f: Callable[[torch.Tensor], torch.Tensor], per: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def call(x: torch.Tensor) -> torch.Tensor:
        out = f(x)
        if _counter is not None:
            _counter[0] += out.numel() / per
        return out

    return call


@contextlib.contextmanager
def count_f_evals() -> Iterator[list[float]]:
    """While active, counted functions add to the one-element list this yields."""
    global _counter
    _counter = [0.0]
    try:
        yield _counter
    finally:
        _counter = None
