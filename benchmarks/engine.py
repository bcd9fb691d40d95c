"""The replicate engine: one cell's R gradient estimates, a chunk of replicates at a time.

The problem builds a distribution whose parameters are expanded per replicate (shape
[r, ...]), one surrogate is summed over the replicates, and one autograd call returns
all r per-replicate gradients: no Python loop runs over replicates. Each chunk is
reduced to float64 moments (benchmarks.stats) by the same function that computes it,
which torch.compile may compile (benchmarks.compiling), so memory does not grow with R.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from estimators import Estimator, EstimatorError

from . import compiling
from .problems import Context, Problem
from .problems.counting import count_f_evals
from .stats import VARIANCE_BATCH, GradientStats, cell_batch, chunk_moments

#: with a precision, the fewest estimates a cell draws before its stopping rule is read (benchmarks.sweep
#: holds the same number for validating --replicates; 25 batches of the variance's standard error)
PRECISION_MIN_REPLICATES = 400
#: stateful estimators are called this many times before measuring, unless they declare another
#: number (Estimator.warmup_calls)
WARMUP_CALLS = 10
#: a cell's measured work is timed in this many consecutive parts (repetitions): the time per
#: estimate is their median, their fastest and slowest its spread, so a one-off stall of a shared
#: machine neither sets nor hides a figure
TIMING_REPEATS = 5


def _error_text(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        msg += f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})"
    return " ".join(msg.split())  # one line: a results row is one line


def _check_grads(grads: dict[str, torch.Tensor], groups: tuple[str, ...], r: int) -> None:
    """Shapes only; finiteness is checked on the running statistics (GradientStats.finite)."""
    for g in groups:
        if g not in grads:
            raise ValueError(f"no gradient for parameter group {g!r}")
        t = grads[g]
        if t.dim() != 2 or t.shape[0] != r:
            raise ValueError(f"gradient of {g!r} has shape {tuple(t.shape)}, expected ({r}, P)")


def _check_finite(stats: dict[str, GradientStats]) -> None:
    for g, st in stats.items():
        if not st.finite():
            bad = (~torch.isfinite(st.coords.mean)).sum().item()
            raise FloatingPointError(f"non-finite values in the gradient of {g!r} ({bad} coordinates affected)")


def sync(ctx: Context) -> None:
    """Wait for the work queued on a GPU (a no-op on the CPU): timings must include it."""
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class CellTiming:
    """How a cell's estimates were computed: wall time of the measured loop (s), whether it
    ran compiled, what compiling cost (s, NaN if not compiled), why a compile fell back, and
    how many evaluations of f one estimate used (counted in a warm-up call)."""

    elapsed: float
    #: seconds per estimate in each timed repetition (TIMING_REPEATS parts of the measured chunks)
    per_estimate: list[float] = field(default_factory=list)
    compiled: bool = False
    compile_s: float = math.nan
    note: str = ""
    f_evals: float = math.nan


#: Problems size their chunks for a CPU's caches (about 8 MB per large tensor). A GPU is
#: busy only with far larger launches: on an H200, eager, chunks 64x larger ran 8-36x faster
#: per estimate (toy dim 1, 100, 10000 and the digits VAE; 16x gave 6-15x), so on a GPU chunks
#: are GPU_CHUNK_FACTOR times larger where its memory allows (gpu_chunk_factor).
GPU_CHUNK_FACTOR = 64
#: GPU memory set aside per unit of the factor: the default cells' peak was 30-70 MB at
#: factor 1 (float32), so this leaves room for float64 and larger settings.
GPU_BYTES_PER_FACTOR = 256 << 20


def gpu_chunk_factor(total_bytes: int) -> int:
    """How many times larger than a problem's (CPU-sized) chunk a chunk on a GPU with
    ``total_bytes`` of memory is: GPU_CHUNK_FACTOR, halved until the chunks fit in a quarter
    of the memory. From the card's total memory, not what is free now, so that the same
    seed on the same card draws the same chunks (the same random numbers)."""
    factor = GPU_CHUNK_FACTOR
    while factor > 1 and factor * GPU_BYTES_PER_FACTOR > total_bytes // 4:
        factor //= 2
    return factor


def chunk_factor(ctx: Context) -> int:
    """1 on the CPU; gpu_chunk_factor of the card on a GPU."""
    if not ctx.device.startswith("cuda"):
        return 1
    return gpu_chunk_factor(torch.cuda.get_device_properties(torch.device(ctx.device)).total_memory)


class ChunkPlan(Sequence):
    """Chunk sizes, as equal as possible: ``count`` chunks of ``size``, then perhaps one shorter
    ``last`` (one compiled shape covers all but perhaps the last). Where ``max_chunk`` is at least
    4 x ``multiple``, sizes are counted in multiples of it (the variance's batches: a chunk of whole
    batches has no rows after its last one to reduce and merge apart, which at dim 10,000 cost a
    sixth of the statistics), at the price of at most one chunk more. Held as three numbers, so its
    memory does not grow with the number of replicates."""

    def __init__(self, replicates: int, max_chunk: int, multiple: int = 1):
        unit = multiple if max_chunk >= 4 * multiple else 1
        units = -(-replicates // unit)
        k = -(-units // (max(1, max_chunk) // unit))
        self.size = max(1, min(replicates, -(-units // k) * unit))
        self.count, self.last = divmod(replicates, self.size)

    def __len__(self) -> int:
        return self.count + (1 if self.last else 0)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return self.last if (i % n) == self.count else self.size

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.count):
            yield self.size
        if self.last:
            yield self.last

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, ChunkPlan)) and len(self) == len(other) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"ChunkPlan({self.count} x {self.size}" + (f" + {self.last})" if self.last else ")")


def chunk_plan(replicates: int, max_chunk: int, multiple: int = 1) -> ChunkPlan:
    """Chunk sizes, as equal as possible (one compiled shape covers all but perhaps the last; ChunkPlan)."""
    return ChunkPlan(replicates, max_chunk, multiple)


def warmup_calls(estimator: Estimator) -> int:
    """The calls a stateful estimator gets before it is measured: its declared ``warmup_calls``."""
    return max(1, int(getattr(estimator, "warmup_calls", WARMUP_CALLS)))


def _part_bounds(chunks: int) -> list[int]:
    """Where the TIMING_REPEATS consecutive timed parts of ``chunks`` chunks begin and end (fewer parts where
    there are fewer chunks)."""
    parts = min(TIMING_REPEATS, chunks)
    return [i * chunks // parts for i in range(parts + 1)]


class CellEngine:
    """One cell's replicate engine, set up once (warm-up, and torch.compile where ``ctx.compile``
    asks for it), then ``measure()``: ``replicates`` estimates reduced to streaming statistics.

    Each chunk's estimates are reduced to float64 moments by the same function that
    computes them (``step``), which may be handed to torch.compile (benchmarks.compiling);
    only the moments leave it. ``measure()`` may be called again (benchmarks do): each
    call draws new estimates, continuing the estimator's state.
    """

    def __init__(self, problem: Problem, estimator: Estimator, setting: Any, prepared: Any, n_samples: int,
                 replicates: int, ctx: Context):
        self.groups = problem.groups
        self.ctx = ctx
        # at least TIMING_REPEATS chunks, so that each timed repetition has one; with a precision, at least
        # TIMING_REPEATS chunks in the fewest estimates a cell may stop at
        max_chunk = problem.chunk_size(setting, n_samples) * chunk_factor(ctx)
        least = PRECISION_MIN_REPLICATES if ctx.precision is not None else replicates
        self.sizes = sizes = chunk_plan(replicates, max(1, min(max_chunk, -(-min(least, replicates) // TIMING_REPEATS))),
                                        VARIANCE_BATCH)
        # the variance's batches: VARIANCE_BATCH estimates, fewer where the chunks are smaller (stats.cell_batch)
        self.batch = batch = cell_batch(sizes[0])

        def step(r: int, state: Any) -> tuple[dict[str, tuple[torch.Tensor, ...]], Any]:
            out = problem.chunk(estimator, setting, prepared, n_samples, r, state, ctx)
            _check_grads(out.grads, problem.groups, r)
            return {g: chunk_moments(out.grads[g], batch) for g in problem.groups}, out.state

        state = estimator.init_state()
        # Warm-up, neither timed nor measured: a small call pays one-time costs (allocator,
        # first-call dispatch); a stateful estimator's state settles over its warmup_calls calls.
        warm = min(sizes[0], problem.warmup_replicates(setting))
        for _ in range((warmup_calls(estimator) if estimator.stateful else 2) - 1):
            state = step(warm, state)[1]
        with count_f_evals() as evals:  # the last warm-up call, like the measured ones, counts f's evaluations
            state = step(warm, state)[1]
        self.timing = CellTiming(elapsed=math.nan, f_evals=evals[0])  # counted per estimate already
        self.run_chunk: Callable[[int, Any], Any] = step
        mode = compiling.check_mode(ctx.compile)
        if mode == "on" or (mode == "auto" and
                            compiling.auto_compiles(problem.replicate_bytes(setting, n_samples, ctx), replicates)):
            fast = compiling.compile_chunk(step)
            sync(ctx)
            t0 = time.perf_counter()
            try:
                state = fast(sizes[0], state)[1]  # compiles; the estimates are discarded, like a warm-up
            except EstimatorError:
                raise
            except Exception as exc:
                self.timing.note = f"torch.compile failed, ran eagerly: {_error_text(exc)}"
            else:
                sync(ctx)
                self.timing.compiled, self.timing.compile_s = True, time.perf_counter() - t0
                # a shorter last chunk runs eagerly (one compiled shape per cell)
                self.run_chunk = lambda r, state: fast(r, state) if r == sizes[0] else step(r, state)
        self.state = state

    def measure(self, precision: float | None = None, min_replicates: int = 0) -> dict[str, GradientStats]:
        """Draw the estimates; their wall time goes to ``self.timing.elapsed``.

        Non-finite estimates raise FloatingPointError: on the CPU after the chunk that had
        them; on a GPU after the last chunk, since each check waits for the GPU (measured on
        an H200: 9-15% of the time at the CPU's chunk sizes). A NaN or inf stays in the
        running mean, so the last check sees every chunk's.

        With ``precision`` (see measure_to_precision), chunks are drawn until every group's
        variance has a relative standard error of at most ``precision``."""
        if precision is not None:
            return self.measure_to_precision(precision, min_replicates)
        stats = {g: GradientStats(self.batch) for g in self.groups}
        state = self.state
        each_chunk = not self.ctx.device.startswith("cuda")
        sizes = self.sizes  # lazy (ChunkPlan): indexed, never listed
        bounds = _part_bounds(len(sizes))  # consecutive chunks, timed part by part
        parts = len(bounds) - 1
        elapsed, per_estimate = 0.0, []
        for k in range(parts):
            done = 0
            sync(self.ctx)
            start = time.perf_counter()
            for i in range(bounds[k], bounds[k + 1]):
                r = sizes[i]
                moments, state = self.run_chunk(r, state)
                for g in self.groups:
                    stats[g].merge(r, moments[g])
                if each_chunk:
                    _check_finite(stats)
                done += r
            sync(self.ctx)
            t = time.perf_counter() - start
            elapsed += t
            per_estimate.append(t / done)
        if not each_chunk:
            _check_finite(stats)
        self.timing.elapsed, self.timing.per_estimate = elapsed, per_estimate
        self.state = state
        return stats


    def measure_to_precision(self, precision: float, min_replicates: int) -> dict[str, GradientStats]:
        """Draw chunks until every group's variance has a relative standard error (variance_se / variance,
        batch means) of at most ``precision``, after at least ``min_replicates`` estimates and at most the
        cell's R (the chunk plan's total): a sequential stopping rule. An exact zero variance meets any
        precision; a group with fewer than two batches meets none. Each chunk is timed on its own (with a
        GPU wait, as the rule reads the statistics after each chunk); the chunks drawn are then split into
        TIMING_REPEATS consecutive parts for the timing spread, as ``measure`` does."""
        stats = {g: GradientStats(self.batch) for g in self.groups}
        state, done, times = self.state, 0, []

        def precise() -> bool:  # the summary's variance and standard error, without the rest of a summary
            for st in stats.values():
                variance = st.coords.var.mean().item()
                if variance > 0 and not st.variance_interval(variance)[0] <= precision * variance:  # NaN se: not yet
                    return False
            return True

        for r in self.sizes:
            sync(self.ctx)
            start = time.perf_counter()
            moments, state = self.run_chunk(r, state)
            for g in self.groups:
                stats[g].merge(r, moments[g])
            _check_finite(stats)  # reads the statistics, so it also waits for a GPU
            times.append((r, time.perf_counter() - start))
            done += r
            if done >= min_replicates and precise():
                break
        bounds = _part_bounds(len(times))
        per_estimate = []
        for k in range(len(bounds) - 1):
            part = times[bounds[k]:bounds[k + 1]]
            per_estimate.append(sum(t for _, t in part) / sum(r for r, _ in part))
        self.timing.elapsed, self.timing.per_estimate = sum(t for _, t in times), per_estimate
        self.state = state
        return stats


def estimate_cell(
    problem: Problem,
    estimator: Estimator,
    setting: Any,
    prepared: Any,
    n_samples: int,
    replicates: int,
    ctx: Context,
) -> tuple[dict[str, GradientStats], CellTiming]:
    """Draw ``replicates`` estimates; return streaming stats per group and how long it took
    (set-up and compiling not in ``elapsed``; see CellEngine)."""
    engine = CellEngine(problem, estimator, setting, prepared, n_samples, replicates, ctx)
    stats = engine.measure(ctx.precision, PRECISION_MIN_REPLICATES)
    return stats, engine.timing

