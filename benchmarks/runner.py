"""The runner: sweeps problems x estimators x settings into a tidy table.

For each cell (problem, estimator, setting, n_samples) it draws R independent
gradient estimates, each from n_samples draws, a chunk of replicates at a time:
the problem builds a distribution whose parameters are expanded per replicate
(shape [r, ...]), one surrogate is summed over the replicates, and one
autograd call returns all r per-replicate gradients. No Python loop runs over
replicates. Statistics are merged chunk by chunk (benchmarks.stats), so memory
does not grow with R.

Each cell is seeded from (seed, problem, estimator, setting, n_samples), not
from its position in the sweep, and its rows are appended to the results file
(and flushed) as soon as the cell completes.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import estimators
from estimators import Estimator, EstimatorError

from . import problems
from .problems import Context, Problem
from .stats import GradientStats
from .sweep import Sweep

#: The result table's columns, in order. Columns a problem does not use stay empty.
COLUMNS = [
    "problem", "estimator", "parameter",
    "dim", "mu", "sigma", "k",
    "n_samples", "replicates", "seed",
    "mean", "variance", "total_variance", "true_grad", "bias", "bias_z", "mse", "snr",
    "time_per_estimate_s", "status", "error",
    "setting", "cell_seed", "dtype", "device",
    "estbench_version", "torch_version", "python_version", "machine",
]  # fmt: skip

#: stateful estimators are called this many times before measuring
WARMUP_CALLS = 10


def estbench_version() -> str:
    try:
        import importlib.metadata

        return importlib.metadata.version("estbench")
    except Exception:
        return "unknown"


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def cell_seed(seed: int, problem: str, estimator: str, setting: str, n_samples: int) -> int:
    """A 63-bit seed derived from the cell's identity, not its position in the sweep."""
    key = f"{seed}|{problem}|{estimator}|{setting}|{n_samples}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


class ResultWriter:
    """Appends whole rows to a CSV file and flushes them to disk after each cell."""

    def __init__(self, path: str | Path, columns: list[str] = COLUMNS, append: bool = False):
        self.path = Path(path)
        self.columns = columns
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not (append and self.path.exists() and self.path.stat().st_size > 0)
        self._fh = open(self.path, "w" if new else "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=columns, extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._writer.writerows(rows)
        self._sync()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class Cell:
    problem: Problem
    estimator: str
    setting: Any
    n_samples: int

    @property
    def label(self) -> str:
        return f"{self.estimator}[{self.problem.name}-{self.problem.setting_label(self.setting)}-n={self.n_samples}]"


def cells(sweep: Sweep) -> Iterator[Cell]:
    for pname in sweep.problem:
        problem = problems.get(pname)
        for setting in problem.settings(sweep):
            for n in sweep.n_samples:
                for ename in sweep.estimator:
                    yield Cell(problem, ename, setting, n)


def _check_grads(grads: dict[str, torch.Tensor], groups: tuple[str, ...], r: int) -> None:
    for g in groups:
        if g not in grads:
            raise ValueError(f"no gradient for parameter group {g!r}")
        t = grads[g]
        if t.dim() != 2 or t.shape[0] != r:
            raise ValueError(f"gradient of {g!r} has shape {tuple(t.shape)}, expected ({r}, P)")
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise FloatingPointError(f"{bad} non-finite values in the gradient of {g!r}")


def _sync(ctx: Context) -> None:
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()


def estimate_cell(
    problem: Problem,
    estimator: Estimator,
    setting: Any,
    prepared: Any,
    n_samples: int,
    replicates: int,
    ctx: Context,
) -> tuple[dict[str, GradientStats], float]:
    """Draw ``replicates`` estimates; return streaming stats per group and the wall time (s)."""
    chunk = max(1, min(replicates, problem.chunk_size(setting, n_samples)))
    state = estimator.init_state()
    if estimator.stateful:  # warm the state up; not timed, not measured
        for _ in range(WARMUP_CALLS):
            state = problem.chunk(estimator, setting, prepared, n_samples, min(chunk, 100), state, ctx).state
    stats = {g: GradientStats() for g in problem.groups}
    _sync(ctx)
    start = time.perf_counter()
    done = 0
    while done < replicates:
        r = min(chunk, replicates - done)
        out = problem.chunk(estimator, setting, prepared, n_samples, r, state, ctx)
        _check_grads(out.grads, problem.groups, r)
        for g in problem.groups:
            stats[g].update(out.grads[g])
        state = out.state
        done += r
    _sync(ctx)
    return stats, time.perf_counter() - start


def _base_row(cell: Cell, sweep: Sweep, seed: int) -> dict[str, Any]:
    return {
        "problem": cell.problem.name,
        "estimator": cell.estimator,
        **cell.problem.columns(cell.setting),
        "n_samples": cell.n_samples,
        "replicates": sweep.replicates,
        "seed": sweep.seed,
        "setting": cell.problem.setting_label(cell.setting),
        "cell_seed": seed,
        "dtype": sweep.dtype,
        "device": sweep.device,
        "estbench_version": estbench_version(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": machine(),
    }


def run_cell(cell: Cell, sweep: Sweep, prepared: Any, ctx: Context) -> list[dict[str, Any]]:
    """Run one cell; never raises for a failing estimator (the rows say 'failed')."""
    seed = cell_seed(sweep.seed, cell.problem.name, cell.estimator, cell.problem.setting_label(cell.setting), cell.n_samples)
    base = _base_row(cell, sweep, seed)
    groups = cell.problem.groups
    try:
        estimator = estimators.get(cell.estimator)
        torch.manual_seed(seed)
        stats, elapsed = estimate_cell(cell.problem, estimator, cell.setting, prepared, cell.n_samples, sweep.replicates, ctx)
    except EstimatorError as exc:
        status = "skipped" if exc.capability else "failed"
        return [{**base, "parameter": g, "status": status, "error": str(exc)} for g in groups]
    except Exception as exc:  # isolate: one broken estimator must not stop the sweep
        msg = f"{type(exc).__name__}: {exc}"
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            msg += f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})"
        return [{**base, "parameter": g, "status": "failed", "error": msg} for g in groups]
    truth = cell.problem.true_gradient(cell.setting, ctx)
    rows = []
    for g in groups:
        s = stats[g].summary(None if truth is None else truth[g])
        rows.append(
            {
                **base,
                "parameter": g,
                "mean": s.mean,
                "variance": s.variance,
                "total_variance": s.total_variance,
                "true_grad": s.true_grad,
                "bias": s.bias,
                "bias_z": s.bias_z,
                "mse": s.mse,
                "snr": s.snr,
                "time_per_estimate_s": elapsed / sweep.replicates,
                "status": "ok",
                "error": "",
            }
        )
    return rows


def run(
    sweep: Sweep,
    out: str | Path | None = None,
    progress: Callable[[Cell], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of ``sweep``; append rows to ``out`` as cells complete. Returns all rows."""
    sweep.validate()
    ctx = Context(dtype=getattr(torch, sweep.dtype), device=sweep.device)
    all_cells = list(cells(sweep))  # validates every setting before any work
    writer = ResultWriter(out) if out is not None else None
    rows: list[dict[str, Any]] = []
    prepared_cache: dict[tuple[str, Any], Any] = {}
    try:
        for cell in all_cells:
            key = (cell.problem.name, cell.setting)
            if key not in prepared_cache:
                prepared_cache.clear()  # one setting's data at a time
                prepared_cache[key] = cell.problem.prepare(cell.setting, ctx)
            cell_rows = run_cell(cell, sweep, prepared_cache[key], ctx)
            rows.extend(cell_rows)
            if writer is not None:
                writer.write(cell_rows)
            if progress is not None:
                progress(cell)
    finally:
        if writer is not None:
            writer.close()
    return rows


def n_failed(rows: list[dict[str, Any]]) -> int:
    return sum(1 for r in rows if r.get("status") == "failed")


__all__ = ["COLUMNS", "Cell", "ResultWriter", "cell_seed", "cells", "estimate_cell", "run", "run_cell", "n_failed"]
