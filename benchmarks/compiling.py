"""torch.compile for the replicate engine, with the eager path as fallback.

One chunk of the runner's work (draw samples, build the surrogate, autograd to
per-replicate gradients, reduce them to float64 moments) is one Python
function; torch.compile fuses it into a few kernels. Compiling costs seconds
per (problem, estimator, setting, chunk shape), so the runner's ``--compile``
switch has three values:

``off``   never compile (the eager path, always available);
``on``    compile every cell (a cell whose compile fails falls back to eager);
``auto``  compile a cell only when it is large: its replicates times the memory one
          replicate's work takes (``Problem.replicate_bytes``) reach ``AUTO_MIN_BYTES``,
          about a minute of eager work on this 2-core CPU. Decided from the cell's size
          alone, never from a timing, so the same command compiles the same cells on
          every run whatever the machine's load; a short run (the default report,
          ``--quick``) never waits for the compiler.

Compiled and eager runs draw different random numbers (inductor generates its
own in-kernel), each reproducible from the seed; the results table says which
path a cell took (``compiled``) and what compiling cost (``compile_time_s``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

MODES = ("auto", "on", "off")
#: ``auto`` compiles a cell whose replicates x replicate_bytes reach this: 64 GiB, about a minute of
#: eager work here (the digits VAE: 0.67 MB and 0.45 ms per single-draw estimate; the Gaussian toy
#: at dim 100: 4.8 kB and 1-3 us), where a compile takes 5-30 s
AUTO_MIN_BYTES = 1 << 36


def auto_compiles(replicate_bytes: int, replicates: int) -> bool:
    """Whether ``--compile auto`` compiles a cell of this size (a problem that does not estimate
    its replicate_bytes, 0, is never compiled by auto)."""
    return replicate_bytes > 0 and replicate_bytes * replicates >= AUTO_MIN_BYTES


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"compile must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


@contextlib.contextmanager
def _dynamo_settings():
    import torch._dynamo

    # trace_autograd_ops: trace torch.autograd.grad into the graph instead of breaking there;
    # recompile_limit: each cell is its own specialization of the same chunk function
    with torch._dynamo.config.patch(trace_autograd_ops=True, recompile_limit=1 << 16,
                                    accumulated_recompile_limit=1 << 16):
        yield


def inductor_options() -> dict[str, Any]:
    """Inductor settings for the compiled chunk, applied while it compiles: mix-order
    reductions off (GPU only; where this torch has them). The chunk's float64 moments
    reduce one tensor over both axes, and on an H200 (torch 2.11, Triton) that kernel
    failed to compile for a 2^26-row chunk (a float32 accumulator re-assigned a float64
    value), so the cell fell back to eager."""
    import torch._inductor.config as inductor

    return {"triton.mix_order_reduction": False} if hasattr(inductor.triton, "mix_order_reduction") else {}


def compile_chunk(step: Callable[..., Any]) -> Callable[..., Any]:
    """A compiled version of ``step`` (same arguments and results), static shapes.

    Compiling happens on the first call; the caller treats an exception from that call
    as a failed compile and keeps the eager ``step`` (runner.CellEngine).
    """
    compiled = torch.compile(step, dynamic=False, options=inductor_options())

    def call(*args: Any) -> Any:
        with _dynamo_settings():
            return compiled(*args)

    return call
