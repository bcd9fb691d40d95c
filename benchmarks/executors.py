"""Executors: where a run's cells and curves are computed. The run loop (benchmarks.runner) is
one; an executor only computes units and hands back their rows as they complete.

An executor has:

- ``session(plan)``: a context manager; what must be checked before any file is opened (a
  cluster's workers) is checked on entering it, and it yields the executor ready to run;
- ``units(todo, todo_curves)``: yields ``(kind, cell, sweep, rows, stats)`` for each pending cell
  ("cell") and training curve ("curve") as it completes, in any order; ``stats`` is the cell's
  statistics where the run loop needs them (agreement with a reference estimator), else None;
- ``reference_stats(cell, sweep)``: the statistics of the reference estimator's cell of ``cell``'s
  setting, computed again with its own seed (so the same numbers) when its rows are in the file
  from an earlier run;
- ``immediate_reference``: whether the run loop asks for such statistics at once (serially: the
  rows keep the order of an uninterrupted run) or after the other units (a cluster);
- optionally ``curve_concurrency(todo, todo_curves)``: (curves trained at once while cells are left, after
  them), which the run loop passes to a progress callback that asks (its time left; estbench.progress).

:class:`Serial` runs the cells in this process, and the training curves side by side in forked processes
(benchmarks.curve_pool), beside the cells and after them; benchmarks.distributed.Dask runs on a Dask cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .curve_pool import CurvePool, curve_processes, share_cores, torch_threads
from .plan import Cell, Plan
from .rows import curve_rows, measure_cell, prepare
from .stats import GradientStats
from .sweep import Sweep

Unit = tuple[str, Cell, Sweep, list[dict[str, Any]], "dict[str, GradientStats] | None"]


class Serial:
    """The cells one after the other in this process, one setting's prepared data held at a time, and the
    training curves in forked processes of one torch thread where there are several usable cores
    (benchmarks.curve_pool: a curve is one core's work whatever its threads): while the cells run, on half
    the cores (their torch threads meanwhile the other half), then on every core; with one core, here after
    the cells."""

    immediate_reference = True

    def __init__(self) -> None:
        self._prepared: tuple[Any, Any] = (None, None)  # (key, prepared data or the exception)

    @contextlib.contextmanager
    def session(self, plan: Plan) -> Iterator[Serial]:
        try:
            yield self
        finally:
            self._prepared = (None, None)

    def _prepare(self, cell: Cell, sweep: Sweep) -> Any:
        ctx = sweep.context()
        key = (cell.problem.name, cell.setting, ctx)
        if self._prepared[0] != key:
            self._prepared = (None, None)
            self._prepared = (key, prepare(cell, ctx))
        return self._prepared[1]

    def units(self, todo: list[tuple[Cell, Sweep]], todo_curves: list[tuple[Cell, Sweep]]) -> Iterator[Unit]:
        beside, processes = self.curve_concurrency(todo, todo_curves)
        if processes <= 1:
            yield from self._cells(todo)
            for cell, sweep in todo_curves:
                yield "curve", cell, sweep, curve_rows(cell, sweep, sweep.context()), None
            return
        with CurvePool(todo_curves, processes) as pool:
            if todo:  # the cells on part of the cores, some curves beside them on the others
                pool.limit = beside
                pool.start()
                with torch_threads(share_cores(processes)[1]):
                    for unit in self._cells(todo):
                        yield unit
                        for cell, sweep, rows in pool.ready():
                            yield "curve", cell, sweep, rows, None
            pool.limit = processes
            for cell, sweep, rows in pool.rest():
                yield "curve", cell, sweep, rows, None

    @staticmethod
    def curve_concurrency(todo: list[tuple[Cell, Sweep]], todo_curves: list[tuple[Cell, Sweep]]) -> tuple[int, int]:
        """(curves trained at once while cells are left, 0 where they follow the cells in this process; after the
        cells, 1 for this process): what ``units`` does, and what the progress lines' time left assumes."""
        processes = curve_processes(todo_curves)
        if processes <= 1:
            return 0, 1
        return (share_cores(processes)[0] if todo else processes), processes

    def _cells(self, todo: list[tuple[Cell, Sweep]]) -> Iterator[Unit]:
        for cell, sweep in todo:
            rows, stats = measure_cell(cell, sweep, self._prepare(cell, sweep), sweep.context())
            yield "cell", cell, sweep, rows, stats
        self._prepared = (None, None)  # not held while the curves train

    def reference_stats(self, cell: Cell, sweep: Sweep) -> dict[str, GradientStats] | None:
        ref = Cell(cell.problem, cell.problem.reference, cell.setting, cell.n_samples)
        return measure_cell(ref, sweep, self._prepare(cell, sweep), sweep.context())[1]
