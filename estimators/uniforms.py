"""Uniform draws for the estimators that need many of them, at half the generator's work.

On a CPU, ``torch.rand`` spends one 32-bit output of torch's Mersenne twister per float32, and keeps 24
bits of it: u = k 2^-24, k uniform on 0 .. 2^24 - 1. A 64-bit draw of the same generator holds two such
k. ``uniform_codes_`` fills an int64 buffer with all-64-bit draws and returns the two 24-bit codes of each
as int32, centred (c = k - 2^23), so that ``0.5 + c * UNIFORM_STEP`` has exactly torch.rand's float32
distribution. A caller folds the affine map into its own first pass (a + u w = (a + w / 2) + c (w 2^-24)).
On this project's CPU, filling and converting 2^19 of them took 2.0 ns each against 3.1 ns for
``uniform_`` and the same pass (docs/performance.md). They are drawn from torch's generator, so a seed
fixes them as it fixes torch.rand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: the spacing of torch.rand's float32 grid on [0, 1), 24 random bits per draw
UNIFORM_STEP = 2.0**-24

#: how many codes ``uniforms`` converts at a time (their buffers stay in cache)
CODE_BLOCK = 1 << 19


def uniform_codes_(words: torch.Tensor) -> torch.Tensor:
    """Fill the int64 tensor ``words`` with random 64-bit words, in place, and return its int32 view
    [2 * words.numel()] as centred codes c in [-2^23, 2^23): 0.5 + c * UNIFORM_STEP ~ torch.rand's float32."""
    words.random_(-(2**63), None)  # the whole int64 range: every bit of a 64-bit draw (random_full_64_bits_range)
    return words.view(-1).view(torch.int32).bitwise_right_shift_(8)  # the top 24 bits of each half, sign kept


def codes_into_(out: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """``out`` (a floating tensor) filled in place with out.numel() centred codes, drawn into the int64 buffer
    ``words`` (``uniform_buffer``, large enough), and returned."""
    n = out.numel()
    return out.copy_(uniform_codes_(words[:(n + 1) // 2])[:n].view_as(out))


def uniforms(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
             finish: Callable[[torch.Tensor], Any] | None = None) -> torch.Tensor:
    """U(0, 1) draws of torch.rand's distribution in ``dtype``, with ``finish`` (an in-place map) applied. In
    float32 outside a compiled graph they come from ``uniform_codes_`` (two per 64-bit draw) a block of
    CODE_BLOCK at a time, finished while the block is in cache (one buffer of words, reused); otherwise from
    torch.rand itself (in float64 it keeps 53 bits; compiled, the compiler's own generator)."""
    if dtype != torch.float32 or torch.compiler.is_compiling():
        u = torch.rand(shape, dtype=dtype, device=device)
        if finish is not None:
            finish(u)
        return u
    u = torch.empty(shape, dtype=dtype, device=device)
    flat = u.view(-1)
    words = uniform_buffer(min(flat.numel(), CODE_BLOCK), device)
    for first in range(0, flat.numel(), CODE_BLOCK):
        x = codes_into_(flat[first:first + CODE_BLOCK], words).add_(2**23).mul_(UNIFORM_STEP)  # (c + 2^23) 2^-24, exact
        if finish is not None:
            finish(x)
    return u


def minus_log_(u: torch.Tensor) -> torch.Tensor:
    """-log u in place, u kept above the dtype's smallest normal (Exp(1) from U(0, 1))."""
    return u.clamp_(min=torch.finfo(u.dtype).tiny).log_().neg_()


def standard_exponential(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
                         codes: bool = False) -> torch.Tensor:
    """Exp(1) draws as -log u, u ~ U(0, 1) kept above the dtype's smallest normal (so the largest draw is about
    87 in float32): the same distribution as ``Tensor.exponential_``, which took 5x as long on a CPU (measured:
    46 ms against 9 ms for 2 million float32 draws, docs/performance.md). u from torch.rand, or with ``codes``
    from ``uniforms`` (two per 64-bit word in float32 eager). torch.rand stays the default so that the
    estimators that drew from it (arms) keep their random numbers, and the results published from them."""
    if not codes:
        return minus_log_(torch.rand(shape, dtype=dtype, device=device))
    return uniforms(shape, dtype, device, minus_log_)


def uniform_buffer(n: int, device: torch.device | str) -> torch.Tensor:
    """An int64 buffer for ``uniform_codes_`` that holds at least n codes."""
    return torch.empty((n + 1) // 2, dtype=torch.int64, device=device)


__all__ = ["CODE_BLOCK", "UNIFORM_STEP", "codes_into_", "minus_log_", "standard_exponential", "uniform_buffer", "uniform_codes_",
           "uniforms"]
