"""Timing helpers shared by the speed measurements (benchmarks.perf, benchmarks.perf_vae)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from estimators import Estimator

from .engine import _check_finite
from .problems import Context
from .runner import CellEngine, sync


def wall_time(fn: Callable[[], object], ctx: Context) -> float:
    """Wall time of one fn() call (on a GPU, until its queued work is done)."""
    sync(ctx)
    start = time.perf_counter()
    fn()
    sync(ctx)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Median wall time of fn() after one warm-up call (on a GPU, until its queued work is done)."""
    ctx = Context(device=device)
    fn()
    return statistics.median(wall_time(fn, ctx) for _ in range(repeats))


def alternated(paths: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each path's seconds over ``repeats`` rounds, one call of every path a round, in turn (a slow spell of the
    shared machine then slows every path of a round rather than all of one); a path returns its own seconds."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, call in paths.items():
            times[name].append(call())
    return times


def engine_call(engine: CellEngine) -> Callable[[], float]:
    """A call measuring ``engine`` once more (new estimates), returning the seconds it took."""

    def call() -> float:
        engine.measure()
        return engine.timing.elapsed

    return call


class CompileFailed(RuntimeError):
    """torch.compile failed for a cell (the runner would run it eagerly): no compiled figure."""


def side_by_side(loop: Callable[[], object], engine: CellEngine, repeats: int, ctx: Context) -> tuple[list[float], list[float]]:
    """Wall times of ``loop()`` and of ``engine.measure()``, alternated ``repeats`` times (a slow spell of the shared
    machine then slows both of a pair rather than all of one side); the loop has had a warm-up call, the engine
    its own set-up."""
    times = alternated({"loop": lambda: wall_time(loop, ctx), "runner": engine_call(engine)}, repeats)
    return times["loop"], times["runner"]


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


def statistics_share(problem: Any, est: Estimator, setting: Any, prep: Any, n: int, R: int, ctx: Context,
                     repeats: int = 3) -> dict[str, float]:
    """What share of a cell's eager chunk time its statistics take: each of the cell's chunks (its
    runner.CellEngine chunk plan) timed in two parts, the estimates (the problem's chunk) and then
    everything the engine does with them (stats.chunk_moments, the merge, the finiteness check), summed
    over ``repeats`` passes over the plan after one untimed one. Eager only: compiled, the statistics are
    fused into the chunk's code and have no time of their own."""
    from .stats import GradientStats, chunk_moments

    engine = CellEngine(problem, est, setting, prep, n, R, ctx)
    state, spent = engine.state, [0.0, 0.0]
    for k in range(repeats + 1):
        stats = {g: GradientStats(engine.batch) for g in problem.groups}
        for r in engine.sizes:
            sync(ctx)
            t0 = time.perf_counter()
            out = problem.chunk(est, setting, prep, n, r, state, ctx)
            sync(ctx)
            t1 = time.perf_counter()
            for g in problem.groups:
                stats[g].merge(r, chunk_moments(out.grads[g], engine.batch))  # the engine's batches
            _check_finite(stats)  # as the engine does after each chunk on the CPU
            sync(ctx)
            t2 = time.perf_counter()
            state = out.state
            if k:
                spent[0] += t1 - t0
                spent[1] += t2 - t1
    return {"per_estimate_s": sum(spent) / (repeats * R), "statistics_share": spent[1] / sum(spent)}


def rates_and_ratios(row: dict[str, Any], times: dict[str, list[float]], r: int) -> dict[str, Any]:
    """``row`` with each path's estimates per second (the median round) and each ratio to JAX (the median of
    the rounds' ratios, and their range)."""
    for path, ts in times.items():
        row[f"{path}_per_s"] = r / statistics.median(ts)
    best = [min(pair) for pair in zip(*(times[p] for p in ("eager", "compiled") if p in times), strict=True)]
    row["speedup"] = max(row["eager_per_s"], row.get("compiled_per_s", 0.0)) / row["loop_per_s"]
    if "jax" in times:
        for key, ts in (("eager_vs_jax", times["eager"]), ("compiled_vs_jax", times.get("compiled")), ("vs_jax", best)):
            if ts is not None:
                ratios = [j / t for j, t in zip(times["jax"], ts, strict=True)]
                row[key], row[f"{key}_range"] = statistics.median(ratios), (min(ratios), max(ratios))
    return row
