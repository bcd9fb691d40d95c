"""The runner: sweeps problems x estimators x settings into a tidy table, one run loop over an executor.

For each cell (problem, estimator, setting, n_samples) an executor (benchmarks.executors: this
process, or a Dask cluster) draws R independent gradient estimates and returns the cell's rows
(benchmarks.rows). The run loop here is the only writer of the results file: it appends each
cell's rows (and flushes them) as soon as the cell completes, and fills agreement_z where a
problem has no exact gradient, from its reference estimator's cell.

Each cell is seeded from its identity, not from its position in the sweep. One process writes a
results file at a time (benchmarks.results_file), an existing file is continued only by
``resume`` and replaced only by ``overwrite``, and a resume whose options would change what a
completed cell holds is refused (benchmarks.schema CONTENT_COLUMNS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .engine import GPU_CHUNK_FACTOR, WARMUP_CALLS, CellEngine, chunk_factor, chunk_plan, estimate_cell, gpu_chunk_factor, sync
from .executors import Serial
from .machine import estbench_version, matmul_gflops
from .plan import Cell, Plan, make_plan
from .results_file import (
    REFERENCE,
    ResultsFileError,
    ResultWriter,
    check_target,
    curves_path,
    has_content,
    results_target,
    writer_lock,
)
from .resume import ResumeError, check_resumable, completed, read_rows, verify, whole
from .rows import (
    agreement_z,
    base_row,
    columns,
    curve_base,
    curve_header,
    curve_rows,
    fill_agreement,
    identity,
    measure_cell,
    prepare,
    reference_key,
    run_cell,
    seed_of,
)
from .schema import CELL_KEY, CONTENT_COLUMNS, CURVE_CONTENT_COLUMNS, CURVE_KEY, ROW_KEY, key_of
from .stats import GradientStats
from .sweep import Sweep

#: the results table's and the training table's columns for the built-in problems and estimators
COLUMNS = columns()
CURVE_COLUMNS = curve_header()


def run(
    sweeps: Sweep | list[Sweep] | Plan,
    out: str | Path | None = None,
    progress: Callable[[Cell], None] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    curves: list[dict[str, Any]] | None = None,
    cluster: Any = None,
) -> list[dict[str, Any]]:
    """Run every cell of one or more sweeps; append rows to ``out`` as cells complete.

    Training curves, for problems that train, go to ``curves_path(out)``. ``out`` is held by
    this process alone while it runs (ResultsFileError for a second writer). An existing
    non-empty ``out`` is continued with ``resume``, replaced with ``overwrite``, and otherwise
    refused. With ``resume``, the cells (and curves) already complete in ``out`` are skipped
    and the rest appended; since every cell is seeded from its identity, the final table
    equals an uninterrupted run's. A resume whose options would change a completed cell is
    refused (ResumeError). Returns the rows computed by this call; the training-curve rows it
    computes are appended to ``curves`` when a list is given.

    ``cluster`` (a benchmarks.cluster.ClusterSpec with --workers or --scheduler) runs the cells
    on a Dask cluster (benchmarks.distributed.Dask); without it, Dask is not imported.
    """
    plan = sweeps if isinstance(sweeps, Plan) else make_plan(sweeps)
    if cluster is not None and cluster.active:
        from .distributed import Dask

        cluster.check()
        executor: Any = Dask(cluster, quiet=progress is None or getattr(progress, "quiet", False))
    else:
        executor = Serial()
    if out is None:
        return _run(plan, None, progress, resume, curves, executor)
    out = results_target(out)
    with writer_lock(out):
        check_target(out, resume=resume, overwrite=overwrite)
        if plan.curves:
            check_target(curves_path(out), resume=resume, overwrite=overwrite, option="training file")
        return _run(plan, Path(out), progress, resume, curves, executor)


def _done(plan: Plan, out: Path) -> tuple[set[tuple], set[tuple]]:
    """The keys of the cells and curves already complete in ``out`` (--resume); both files are checked
    before either is rewritten, so a refusal changes nothing."""
    planned = [base_row(c, sw, 0) for c, sw in plan.cells]
    planned_curves = [curve_base(c, sw) for c, sw in plan.curves]
    read = {}
    for path, names, rows, content in ((out, columns(), planned, CONTENT_COLUMNS),
                                         (curves_path(out), curve_header(), planned_curves, CURVE_CONTENT_COLUMNS)):
        if has_content(path):
            read[path] = read_rows(path, names)
            verify(path, read[path], (*CURVE_KEY, "step") if path != out else ROW_KEY)
            check_resumable(path, whole(read[path].rows), rows, content)
    groups = {c.problem.name: set(c.problem.groups) for c, _ in plan.cells}
    cells = completed(out, read.get(out), lambda r: key_of(r, CELL_KEY),
                      lambda rs: {r["parameter"] for r in rs} == groups.get(rs[0]["problem"], {r["parameter"] for r in rs}))
    # a curve is complete when it ended (failed) or reached its own train_steps: also one this plan does not run
    # (the report's confirmation reruns have no curves), which is kept as it is
    curves = completed(curves_path(out), read.get(curves_path(out)), lambda r: key_of(r, CURVE_KEY),
                       lambda rs: rs[-1]["status"] != "ok" or rs[-1]["step"] == rs[-1].get("train_steps"))
    return cells, curves


class _Agreement:
    """Fills agreement_z where a problem has no exact gradient, from the reference estimator's cell of the
    same setting: at once where it is known, else at once (serially) or after the other units (a cluster)."""

    def __init__(self, executor: Any, write: Callable[[list[dict[str, Any]]], None]):
        self.executor, self.write = executor, write
        self.reference: dict[tuple, dict[str, GradientStats] | None] = {}
        self.parked: dict[tuple, list[tuple[list[dict[str, Any]], Any, Cell, Sweep]]] = {}

    def cell(self, cell: Cell, sweep: Sweep, rows: list[dict[str, Any]], stats: Any) -> None:
        ref = cell.problem.reference
        against_truth = rows[0].get("reference") is not None
        k = reference_key(cell, sweep)
        if cell.estimator == ref and not against_truth:
            self.reference[k] = stats
            self.write(rows)
            for waiting, their_stats, _, _ in self.parked.pop(k, []):
                fill_agreement(waiting, their_stats, stats, ref)
                self.write(waiting)
        elif stats is not None and ref in sweep.estimator and not against_truth:
            if k not in self.reference and self.executor.immediate_reference:
                self.reference[k] = self.executor.reference_stats(cell, sweep)  # done in an earlier run (--resume)
            if k in self.reference:
                fill_agreement(rows, stats, self.reference[k], ref)
                self.write(rows)
            else:
                self.parked.setdefault(k, []).append((rows, stats, cell, sweep))
        else:
            self.write(rows)

    def finish(self) -> None:
        """References whose cells ran in an earlier run: computed again, once each."""
        for k, waiting in list(self.parked.items()):
            _, _, cell, sweep = waiting[0]
            try:
                ref_stats = self.executor.reference_stats(cell, sweep)
            except Exception:  # noqa: BLE001 - then the rows go without agreement_z
                ref_stats = None
            for rows, their_stats, _, _ in self.parked.pop(k):
                fill_agreement(rows, their_stats, ref_stats, cell.problem.reference)
                self.write(rows)


def _run(plan: Plan, out: Path | None, progress: Callable[[Cell], None] | None, resume: bool,
         curves: list[dict[str, Any]] | None, executor: Any) -> list[dict[str, Any]]:
    done_cells, done_curves = _done(plan, out) if resume and out is not None else (set(), set())
    todo, todo_curves = [], []
    for units, done, key, pending in ((plan.cells, done_cells, CELL_KEY, todo),
                                      (plan.curves, done_curves, CURVE_KEY, todo_curves)):
        for cell, sw in units:
            if _key(cell, sw, key) not in done:
                pending.append((cell, sw))
            elif progress is not None:  # what was already done counts as progress
                progress(cell)
    rows: list[dict[str, Any]] = []
    written: set[tuple] = set()
    written_curves: set[tuple] = set()
    writers: list[ResultWriter] = []
    try:
        with executor.session(plan) as ex:  # a cluster is checked before any file is opened
            if out is not None:
                writers.append(ResultWriter(out, columns(), append=resume))
                if plan.curves:
                    writers.append(ResultWriter(curves_path(out), curve_header(), append=resume))

            def write(cell_rows: list[dict[str, Any]]) -> None:
                rows.extend(cell_rows)
                written.update(key_of(r, CELL_KEY) for r in cell_rows)
                if writers:
                    writers[0].write(cell_rows)

            agreement = _Agreement(ex, write)
            declare, hear = getattr(ex, "curve_concurrency", None), getattr(progress, "concurrency", None)
            if declare is not None and hear is not None and todo_curves:
                hear(*declare(todo, todo_curves))  # how many curves train at once, for the time left
            timed = getattr(progress, "timed", False)
            for kind, cell, sweep, unit_rows, stats in ex.units(todo, todo_curves):
                if kind == "cell":
                    agreement.cell(cell, sweep, unit_rows, stats)
                else:
                    written_curves.update(key_of(r, CURVE_KEY) for r in unit_rows)
                    if curves is not None:
                        curves.extend(unit_rows)
                    if len(writers) > 1:
                        writers[1].write(unit_rows)
                if progress is not None:
                    if timed and kind == "curve":  # its own training time: several train at once
                        progress(cell, seconds=_trained_seconds(unit_rows))
                    else:
                        progress(cell)
            agreement.finish()
    finally:
        for w in writers:
            w.close()
    missing = [(c, sw) for c, sw in todo if _key(c, sw, CELL_KEY) not in written] + \
        [(c, sw) for c, sw in todo_curves if _key(c, sw, CURVE_KEY) not in written_curves]
    if missing:  # never a silent gap: whatever lost them (a bug, a cluster), the run says so and exits non-zero
        cell = missing[0][0]
        raise ResultsFileError(f"{len(missing)} of the run's {len(todo) + len(todo_curves)} cells and curves have no "
                               f"rows (the first: {cell.label}); the rows "
                               f"written are kept" + (f": continue with --resume on {out}" if out else ""))
    return rows


def _trained_seconds(curve_rows: list[dict[str, Any]]) -> float | None:
    """A curve's training time: its last logged ``wall_time_s`` (None for a failed curve, which has none)."""
    times = [t for r in curve_rows if isinstance(t := r.get("wall_time_s"), float | int) and math.isfinite(t)]
    return max(times, default=None)


def _key(cell: Cell, sweep: Sweep, key: tuple[str, ...]) -> tuple[str, ...]:
    return key_of({**identity(cell, sweep), "replicates": sweep.replicates, "train_seed": cell.train_seed}, key)


#: what the runner offers: its own functions, and the names of the modules it was split into
#: that callers (the command line, perf, the benchmarks, the tests) reach through it
__all__ = [
    "COLUMNS", "CURVE_COLUMNS", "GPU_CHUNK_FACTOR", "REFERENCE", "WARMUP_CALLS", "Cell", "CellEngine", "Plan",
    "ResultsFileError", "ResumeError", "agreement_z", "base_row", "chunk_factor", "chunk_plan", "columns",
    "curve_header", "curve_rows", "curves_path", "estbench_version", "estimate_cell", "fill_agreement",
    "gpu_chunk_factor", "make_plan", "matmul_gflops", "measure_cell", "prepare", "run", "run_cell", "seed_of", "sync",
]  # fmt: skip
