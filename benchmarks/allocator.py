"""Keep freed memory in the process, so that each chunk does not fault its buffers in again.

glibc's malloc serves large blocks (from 128 kB, a threshold it raises as blocks are freed)
with fresh pages from the kernel, and hands the top of its heap back to the kernel once more
than 128 kB of it is free. The replicate engine allocates and frees the same few
megabyte-sized buffers for every chunk, so under the defaults a chunk's first touch of a
buffer is a page fault that zeroes 4 kB, hundreds to tens of thousands of times per chunk
(measured with getrusage here: 700-900 faults per compiled VAE chunk, 17,000-35,000 per
eager toy measurement). Raising both thresholds makes freed blocks stay in the heap for the
next chunk: compiled digits VAE 0.42-0.51 -> 0.37-0.40 ms per estimate, eager toys 10-30%
more estimates per second, in alternating runs on the 2-core machine. Peak memory does not
change (the heap keeps what it peaked at); memory is handed back when the process ends.

This is what PyTorch's CPU performance guides get from jemalloc or tcmalloc through
LD_PRELOAD; ``mallopt`` does it from inside the process, without another library. The
``estbench`` commands that measure (run, report, perf) and the pytest benchmarks call
:func:`keep_freed_memory` at start-up; a script driving the runner itself can call it too.
Elsewhere than glibc it does nothing. ``ESTBENCH_KEEP_FREED_MEMORY=0`` in the environment
turns it off (glibc's defaults stay). Whether it was on is part of the machine description
every results row records (:func:`describe`).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: set to 0 (or off, no, false) to keep glibc's defaults
ENV = "ESTBENCH_KEEP_FREED_MEMORY"

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit machines (blocks above it are still mapped)
TRIM_THRESHOLD = 1 << 30  # free memory kept at the top of the heap before any is handed back

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process (once); True if set."""
    global _done
    if _done is None:
        _done = False
        if os.environ.get(ENV, "1").strip().lower() in ("0", "off", "no", "false"):
            return False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def describe() -> str:
    """How this process allocates, for the machine description of results rows."""
    return "malloc keeps freed memory (mallopt)" if _done else "malloc defaults"
