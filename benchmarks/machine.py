"""Facts about the machine and this process that every results row records: the estbench
version, the load, the matmul speed, the machine's description; and seeding a cell."""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import time

import torch

from . import allocator


@functools.cache
def estbench_version() -> str:
    """The installed estbench's version, read once per process (reading package metadata costs
    a few milliseconds, as much as a small cell; docs/performance.md)."""
    try:
        import importlib.metadata

        return importlib.metadata.version("estbench")
    except Exception:
        return "unknown"


def seed_generators(seed: int, device: str) -> None:
    """Seed the generator a cell's samples come from. On the CPU only torch's default generator:
    ``torch.manual_seed`` also queues seeds for CUDA, XPU and MTIA, recording a stack trace each
    time, and the CPU's samples are the same either way."""
    if torch.device(device).type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def load_avg() -> float:
    """The 1-minute load average now (NaN where the system has none): how busy the machine was
    when a cell ran, this run's own threads included."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


@functools.lru_cache(maxsize=1)
def matmul_gflops() -> float:
    """float32 1024 x 1024 matmul GFLOP/s on the CPU, measured once per process (at its first cell):
    the machine's speed when the run started, recorded beside every row's timings."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 1024**3 / statistics.median(times) / 1e9


def machine() -> str:
    """The machine with the vector instructions torch's CPU kernels use (AVX512, AVX2, ...: rows computed with other
    ones may differ in the last bits), its threads, and how this process allocates memory (benchmarks.allocator)."""
    return (f"{platform.system()} {platform.machine()} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, "
            f"{allocator.describe()}")


def timing_columns() -> dict[str, object]:
    """The machine columns of a row measured now (schema role 'timing')."""
    return {"load_avg": load_avg(), "matmul_gflops": matmul_gflops(), "host": platform.node(),
            "threads": torch.get_num_threads()}
