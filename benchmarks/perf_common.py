"""Timing helpers shared by the speed measurements (benchmarks.perf, benchmarks.perf_vae)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from estimators import Estimator

from .problems import Context
from .runner import CellEngine, sync


def median_time(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Median wall time of fn() after one warm-up call (on a GPU, until its queued work is done)."""
    ctx = Context(device=device)
    fn()
    times = []
    for _ in range(repeats):
        sync(ctx)
        start = time.perf_counter()
        fn()
        sync(ctx)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class CompileFailed(RuntimeError):
    """torch.compile failed for a cell (the runner would run it eagerly): no compiled figure."""


def runner_time(problem: Any, est: Estimator, setting: Any, prep: Any, n: int, R: int, ctx: Context,
                 repeats: int) -> tuple[float, float]:
    """(seconds per estimate, compile seconds) of the runner's own path, as in the results table
    (runner.CellEngine): set up once (warm-up, compiling), then the median of ``repeats`` measurements."""
    engine = CellEngine(problem, est, setting, prep, n, R, ctx)
    if ctx.compile == "on" and not engine.timing.compiled:
        raise CompileFailed(engine.timing.note)
    times = []
    for _ in range(repeats):
        engine.measure()
        times.append(engine.timing.elapsed)
    return statistics.median(times) / R, engine.timing.compile_s
