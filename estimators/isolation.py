"""What an estimator's or a problem's code may not change for the cells after it.

A cell runs plugin code (an estimator's ``surrogate``, a problem's ``prepare``, ``chunk`` and truth),
and plugin code can change process-wide state: torch's grad mode, default dtype or device, its RNG,
thread count, anomaly or determinism switches; or end the process with ``os._exit``, which no
``except`` sees. :func:`isolated` runs a block with that state saved and restored, whatever the block
does, and turns ``os._exit`` called in the block (in this process; a child it forked may still exit)
into :class:`ExitCalled`, an ordinary exception that fails that cell only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


class ExitCalled(Exception):
    """Code run in a cell (or a plugin at import) called ``os._exit``: it would have ended the run
    without a word, leaving rows missing."""


@contextlib.contextmanager
def no_exit() -> Iterator[None]:
    """``os._exit`` raises ExitCalled in this process for the block (a forked child exits as usual)."""
    pid, real = os.getpid(), os._exit

    def guarded(code: int) -> None:
        if os.getpid() != pid:
            real(code)
        raise ExitCalled(f"called os._exit({code}), which would end the whole run without a word")

    os._exit = guarded
    try:
        yield
    finally:
        os._exit = real


@contextlib.contextmanager
def torch_state() -> Iterator[None]:
    """torch's process-wide settings as they were before the block, after it, whatever it changed."""
    grad, dtype, device = torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_default_device()
    threads, anomaly = torch.get_num_threads(), torch.is_anomaly_enabled()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_grad_enabled(grad)
        if torch.get_default_device() != device:
            # None removes the default-device mode, whose dispatch would slow every operation after it
            torch.set_default_device(None if device == torch.device("cpu") else device)
        if torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if torch.is_anomaly_enabled() != anomaly:
            torch.autograd.set_detect_anomaly(anomaly)
        if torch.are_deterministic_algorithms_enabled() != deterministic:
            torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """:func:`torch_state` and :func:`no_exit` together: the block's plugin code changes nothing after it."""
    with torch_state(), no_exit():
        yield
