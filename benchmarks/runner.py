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
(and flushed) as soon as the cell completes. One process writes a results file
at a time (benchmarks.results_file), an existing file is continued only by
``resume`` and replaced only by ``overwrite``, and a resume whose options would
change what a completed cell holds is refused (CONTENT_COLUMNS).
"""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import estimators
from estimators import EstimatorError

from . import allocator, concurrency
from .engine import (
    GPU_CHUNK_FACTOR,
    WARMUP_CALLS,
    CellEngine,
    _error_text,
    chunk_factor,
    chunk_plan,
    estimate_cell,
    gpu_chunk_factor,
    sync,
)
from .plan import Cell, Plan, cell_seed, make_plan, options_text, problem_axes
from .problems import Context
from .results_file import (
    CONTENT_COLUMNS,
    CURVE_CONTENT_COLUMNS,
    REFERENCE,
    ResultsFileError,
    ResultWriter,
    check_target,
    curve_columns,
    curves_path,
    has_content,
    results_columns,
    writer_lock,
)
from .resume import (
    ResumeError,
    _cell_complete,
    _cell_key,
    _curve_key,
    _row_cell_key,
    _row_curve_key,
    _whole,
    check_resumable,
    completed,
    read_rows,
)
from .stats import GradientStats, coordinate_z, zero_variance_threshold
from .sweep import Sweep


@functools.cache
def estbench_version() -> str:
    """The installed estbench's version, read once per process (reading package metadata costs
    about 3 ms, a fifth of a small cell's overhead)."""
    try:
        import importlib.metadata

        return importlib.metadata.version("estbench")
    except Exception:
        return "unknown"


def seed_generators(seed: int, device: str) -> None:
    """Seed the generator a cell's samples come from. On the CPU only torch's default generator:
    ``torch.manual_seed`` also queues seeds for CUDA, XPU and MTIA, recording a stack trace each
    time (about 1.3 ms a cell), and the CPU's samples are the same either way."""
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
    """The machine, its threads, and how this process allocates memory (benchmarks.allocator)."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"{allocator.describe()}")



def columns() -> list[str]:
    """The results table's columns for the problems registered now (results_file.results_columns)."""
    return results_columns(problem_axes())


def curve_header() -> list[str]:
    """The training-curve table's columns for the problems registered now."""
    return curve_columns(problem_axes())


#: the results table's and the training table's columns for the built-in problems
COLUMNS = columns()
CURVE_COLUMNS = curve_header()


def agreement_z(stats: GradientStats, ref: GradientStats) -> float:
    """Largest |z| over coordinates between two independent cells' mean gradients (where the problem
    has no exact gradient; against an exact one it is stats.coordinate_z)."""
    se2 = stats.coords.var / stats.n + ref.coords.var / ref.n
    diff = (stats.coords.mean - ref.coords.mean).abs()
    z = torch.where(se2 > 0, diff / se2.clamp_min(1e-300).sqrt(), torch.where(diff > 0, torch.inf, 0.0))
    return z.max().item()



def _base_row(cell: Cell, sweep: Sweep, seed: int) -> dict[str, Any]:
    cls = estimators.get_class(cell.estimator)
    return {
        "problem": cell.problem.name,
        "problem_kind": cell.problem.kind,
        "estimator": cell.estimator,
        "estimator_options": options_text(cell.options),
        **cell.problem.columns(cell.setting),
        "n_samples": cell.n_samples,
        "replicates": sweep.replicates,
        "precision": sweep.precision,
        "seed": sweep.seed,
        "setting": cell.problem.setting_label(cell.setting),
        "cell_seed": seed,
        "dtype": sweep.dtype,
        "device": sweep.device,
        **cell.problem.context_columns(sweep.context()),
        "estbench_version": estbench_version(),
        "estimator_origin": estimators.provenance(cell.estimator),
        "estimator_note": cls.note,
        "counterpart": cls.counterpart,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": machine(),
    }


def run_cell(cell: Cell, sweep: Sweep, prepared: Any, ctx: Context) -> list[dict[str, Any]]:
    """Run one cell; never raises for a failing estimator (the rows say 'failed')."""
    return measure_cell(cell, sweep, prepared, ctx)[0]


def seed_of(cell: Cell, sweep: Sweep) -> int:
    """The cell's own seed (plan.cell_seed of its identity)."""
    return cell_seed(sweep.seed, cell.problem.name, cell.estimator_key, cell.problem.setting_label(cell.setting),
                     cell.n_samples)


def prepare(cell: Cell, ctx: Context) -> Any:
    """The problem's prepared data for the cell's setting, or the exception its set-up raised (the cells of
    that setting then fail with it, not the sweep)."""
    try:
        return cell.problem.prepare(cell.setting, ctx)
    except Exception as exc:  # noqa: BLE001 - a problem that cannot be set up fails its cells
        return exc


def reference_key(cell: Cell, sweep: Sweep, ctx: Context) -> tuple:
    """What identifies the reference estimator's cell that ``cell``'s agreement_z compares with."""
    return (cell.problem.name, cell.setting, ctx, cell.n_samples, sweep.replicates)


def fill_agreement(rows: list[dict[str, Any]], stats: dict[str, GradientStats],
                   ref_stats: dict[str, GradientStats] | None, ref: str) -> None:
    """Set each row's agreement_z against the reference estimator ``ref``'s statistics (none: left empty)."""
    if ref_stats is None:
        return
    for row in rows:
        row["agreement_z"] = agreement_z(stats[row["parameter"]], ref_stats[row["parameter"]])
        row["reference"] = f"mean of {ref}"


def measure_cell(
    cell: Cell, sweep: Sweep, prepared: Any, ctx: Context
) -> tuple[list[dict[str, Any]], dict[str, GradientStats] | None]:
    """Rows of one cell and, if it succeeded, its per-group statistics.

    ``prepared`` may be the exception the problem's set-up raised: the cell then fails with it.
    """
    seed = seed_of(cell, sweep)
    base = {**_base_row(cell, sweep, seed), "load_avg": load_avg(), "matmul_gflops": matmul_gflops(),
            "host": platform.node(), "threads": torch.get_num_threads()}
    groups = cell.problem.groups
    if isinstance(prepared, Exception):
        error = "problem set-up failed: " + _error_text(prepared)
        return [{**base, "parameter": g, "status": "failed", "error": error} for g in groups], None
    why = estimators.get_class(cell.estimator).unsupported(cell.problem.family, cell.problem.objective, cell.n_samples)
    if why is not None:  # from the declarations, before any work
        return [{**base, "parameter": g, "status": "skipped", "error": why} for g in groups], None
    try:
        estimator = estimators.get(cell.estimator, **dict(cell.options))
        seed_generators(seed, sweep.device)
        with concurrency.running_here() as concurrent:
            stats, timing = estimate_cell(cell.problem, estimator, cell.setting, prepared, cell.n_samples,
                                          sweep.replicates, ctx)
        base["concurrent_cells"] = concurrent()
    except EstimatorError as exc:
        status = "skipped" if exc.capability else "failed"
        return [{**base, "parameter": g, "status": status, "error": str(exc)} for g in groups], None
    except (Exception, SystemExit) as exc:  # isolate: one broken estimator (even one calling exit) must not stop the sweep
        return [{**base, "parameter": g, "status": "failed", "error": _error_text(exc)} for g in groups], None
    try:
        truth = cell.problem.true_gradient(cell.setting, ctx)
    except Exception as exc:  # e.g. a closed form that overflows: this cell fails, the sweep goes on
        error = "the exact gradient could not be computed: " + _error_text(exc)
        return [{**base, "parameter": g, "status": "failed", "error": error} for g in groups], None
    rows = []
    scale = max((truth[g] if truth is not None else stats[g].coords.mean).abs().max().item() for g in groups)
    zero_below = zero_variance_threshold(scale, getattr(torch, sweep.dtype))
    for g in groups:
        s = stats[g].summary(None if truth is None else truth[g], zero_below)
        against_truth = {} if truth is None else {"agreement_z": coordinate_z(stats[g], truth[g]), "reference": "exact"}
        rows.append(
            {
                **base,
                "parameter": g,
                "replicates_used": s.n,
                "mean": s.mean,
                "variance": s.variance,
                "variance_se": s.variance_se,
                "variance_lo": s.variance_lo,
                "variance_hi": s.variance_hi,
                "variance_note": s.variance_note,
                "total_variance": s.total_variance,
                # total = variance x coordinates exactly, so its interval is the variance's scaled
                "total_variance_lo": s.variance_lo * s.total_variance / s.variance if s.variance > 0 else 0.0,
                "total_variance_hi": s.variance_hi * s.total_variance / s.variance if s.variance > 0 else 0.0,
                "true_grad": s.true_grad,
                "bias": s.bias,
                "bias_z": s.bias_z,
                "mse": s.mse,
                "snr": s.snr,
                **against_truth,
                # the median of the timed repetitions (benchmarks.engine.TIMING_REPEATS), and their spread
                "time_per_estimate_s": statistics.median(timing.per_estimate),
                "time_per_estimate_min_s": min(timing.per_estimate),
                "time_per_estimate_max_s": max(timing.per_estimate),
                "f_evals": timing.f_evals,
                "compiled": timing.compiled,
                "compile_time_s": timing.compile_s,
                "status": "ok",
                "error": timing.note,
            }
        )
    return rows, stats


def _curve_base(cell: Cell, sweep: Sweep) -> dict[str, Any]:
    return {"problem": cell.problem.name, "estimator": cell.estimator, "estimator_options": options_text(cell.options),
            **cell.problem.columns(cell.setting), "setting": cell.problem.setting_label(cell.setting),
            "n_samples": cell.n_samples, "seed": sweep.seed, "train_steps": sweep.train_steps, "dtype": sweep.dtype,
            "device": sweep.device, "estbench_version": estbench_version(),
            "estimator_origin": estimators.provenance(cell.estimator)}


def curve_rows(cell: Cell, sweep: Sweep, ctx: Context) -> list[dict[str, Any]]:
    """Training-curve rows of one estimator; a failure becomes one 'failed' row."""
    base = _curve_base(cell, sweep)
    try:
        estimator = estimators.get(cell.estimator, **dict(cell.options))
        points = cell.problem.curves(estimator, cell.setting, cell.n_samples, ctx) or []
    except EstimatorError as exc:
        status = "skipped" if exc.capability else "failed"
        return [{**base, "status": status, "error": str(exc)}]
    except (Exception, SystemExit) as exc:
        return [{**base, "status": "failed", "error": _error_text(exc)}]
    return [{**base, **p, "error": ""} for p in points]



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
    refused (ResumeError, see CONTENT_COLUMNS). Returns the rows computed by this call; the
    training-curve rows it computes are appended to ``curves`` when a list is given.

    ``cluster`` (a benchmarks.distributed.ClusterSpec with --workers or --scheduler) runs the cells
    on a Dask cluster; this process stays the only writer of ``out``. Without it, Dask is not imported.
    """
    plan = sweeps if isinstance(sweeps, Plan) else make_plan(sweeps)
    if cluster is not None and cluster.active:
        cluster.check()
    if out is None:
        return _run(plan, None, progress, resume, curves, cluster)
    with writer_lock(out):
        check_target(out, resume=resume, overwrite=overwrite)
        if plan.curves:
            check_target(curves_path(out), resume=resume, overwrite=overwrite, option="training file")
        return _run(plan, Path(out), progress, resume, curves, cluster)


def _run(plan: Plan, out: Path | None, progress: Callable[[Cell], None] | None, resume: bool,
         curves: list[dict[str, Any]] | None, cluster: Any = None) -> list[dict[str, Any]]:
    header, curve_head = columns(), curve_header()
    done_cells: set[tuple] = set()
    done_curves: set[tuple] = set()
    if resume and out is not None:
        # refuse first, change nothing: both files are checked before either is rewritten
        planned = [_base_row(c, sw, 0) for c, sw in plan.cells]
        planned_curves = [_curve_base(c, sw) for c, sw in plan.curves]
        steps = {str(sw.train_steps) for _, sw in plan.curves}
        read = {}  # each file read once, both checked before either is rewritten
        for path, names, rows, content in ((out, header, planned, CONTENT_COLUMNS),
                                             (curves_path(out), curve_head, planned_curves, CURVE_CONTENT_COLUMNS)):
            if has_content(path):
                read[path] = read_rows(path, names)
                check_resumable(path, _whole(read[path][2]), rows, content)
        done_cells = completed(out, read.get(out), _row_cell_key, _cell_complete)
        done_curves = completed(curves_path(out), read.get(curves_path(out)), _row_curve_key,
                                lambda rs: rs[-1]["status"] != "ok" or rs[-1]["step"] in steps)
    todo, todo_curves = [], []
    for units, done, key, pending in ((plan.cells, done_cells, _cell_key, todo),
                                      (plan.curves, done_curves, _curve_key, todo_curves)):
        for cell, sw in units:
            if key(cell, sw) not in done:
                pending.append((cell, sw))
            elif progress is not None:  # what was already done counts as progress
                progress(cell)
    opened: list[ResultWriter] = []

    def start() -> tuple[Callable[[list[dict[str, Any]]], None], Callable[[list[dict[str, Any]]], None]]:
        """Open the results files (a cluster run: once the cluster is checked, so a refused cluster leaves no
        file); returns (write the rows of a cell, write the points of a training curve)."""
        writer = ResultWriter(out, header, append=resume) if out is not None else None
        curve_writer = (ResultWriter(curves_path(out), curve_head, append=resume)
                        if out is not None and plan.curves else None)
        opened.extend(w for w in (writer, curve_writer) if w is not None)

        def write_curve(points: list[dict[str, Any]]) -> None:
            if curves is not None:
                curves.extend(points)
            if curve_writer is not None:
                curve_writer.write(points)

        return (writer.write if writer is not None else lambda rows: None), write_curve

    try:
        if cluster is not None and cluster.active:
            from .distributed import run_on_cluster

            quiet = progress is None or getattr(progress, "quiet", False)
            return run_on_cluster(cluster, plan, todo, todo_curves, start, progress, quiet=quiet)
        return _run_here(todo, todo_curves, progress, *start())
    finally:
        for w in opened:
            w.close()


def _run_here(todo: list[tuple[Cell, Sweep]], todo_curves: list[tuple[Cell, Sweep]],
              progress: Callable[[Cell], None] | None, write_cell: Callable[[list[dict[str, Any]]], None],
              write_curve: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Run the pending cells and curves in this process, one after the other."""
    rows: list[dict[str, Any]] = []
    prepared: tuple[Any, Any] = (None, None)  # (key, prepared data or the exception): one setting at a time
    reference: dict[tuple, dict[str, GradientStats] | None] = {}
    for cell, sweep in todo:
        ctx = sweep.context()
        key = (cell.problem.name, cell.setting, ctx)
        if prepared[0] != key:
            prepared = (None, None)
            prepared = (key, prepare(cell, ctx))
        cell_rows, stats = measure_cell(cell, sweep, prepared[1], ctx)
        ref_key = reference_key(cell, sweep, ctx)
        ref = cell.problem.reference
        if stats is not None and cell.estimator == ref and cell_rows[0].get("reference") is None:
            reference[ref_key] = stats
        elif stats is not None and ref in sweep.estimator and cell_rows[0].get("reference") is None:
            if ref_key not in reference:  # done in an earlier run (--resume): recompute, same seed, same numbers
                reference[ref_key] = measure_cell(Cell(cell.problem, ref, cell.setting, cell.n_samples),
                                                  sweep, prepared[1], ctx)[1]
            fill_agreement(cell_rows, stats, reference[ref_key], ref)
        rows.extend(cell_rows)
        write_cell(cell_rows)
        if progress is not None:
            progress(cell)
    prepared = (None, None)  # not held while the curves train
    for cell, sweep in todo_curves:
        write_curve(curve_rows(cell, sweep, sweep.context()))
        if progress is not None:
            progress(cell)
    return rows


#: what the runner offers: its own functions, and the names of the modules it was split into
#: that callers (the command line, perf, the benchmarks, the tests) reach through it
__all__ = [
    "COLUMNS", "CURVE_COLUMNS", "GPU_CHUNK_FACTOR", "REFERENCE", "WARMUP_CALLS", "Cell", "CellEngine", "Plan",
    "columns", "curve_header",
    "ResultsFileError", "ResumeError", "agreement_z", "chunk_factor", "chunk_plan", "curve_rows", "curves_path",
    "estimate_cell", "gpu_chunk_factor", "make_plan", "measure_cell", "run", "run_cell", "sync",
]  # fmt: skip
