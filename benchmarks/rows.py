"""One cell's rows: what a results row holds (benchmarks.schema), measured by the replicate engine.

A cell (problem, estimator with its options, setting, n_samples) draws R gradient estimates
(benchmarks.engine) and becomes one row per parameter group. Every way a cell can end is a row
here: measured ('ok'), 'skipped' (the estimator does not apply: from its declarations, or found
at call time), or 'failed' (the estimator, the problem's set-up or its truth raised); a failing
estimator never stops the sweep. A training curve (problems that train) becomes one row per point.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import replace
from typing import Any

import torch

import estimators
from estimators import EstimatorError
from estimators.isolation import isolated, torch_state

from . import concurrency, problems
from .engine import _error_text, estimate_cell
from .machine import estbench_version, machine, seed_generators, timing_columns
from .plan import Cell, cell_seed, estimator_option_names, identity, problem_axes, training_seed, unit_key
from .problems import Context
from .schema import MONTE_CARLO_REFERENCE, curve_schema, results_schema
from .stats import GradientStats, coordinate_z, zero_variance_threshold
from .sweep import Sweep


def columns() -> list[str]:
    """The results table's columns for the problems and estimators registered now."""
    return results_schema(problem_axes(), estimator_option_names()).names


def curve_header() -> list[str]:
    """The training-curve table's columns for the problems and estimators registered now."""
    return curve_schema(problem_axes(), estimator_option_names()).names


def agreement_z(stats: GradientStats, ref: GradientStats) -> float:
    """Largest |z| over coordinates between two independent cells' mean gradients (where the problem
    has no exact gradient; against an exact one it is stats.coordinate_z)."""
    se2 = stats.coords.var / stats.n + ref.coords.var / ref.n
    diff = (stats.coords.mean - ref.coords.mean).abs()
    z = torch.where(se2 > 0, diff / se2.clamp_min(1e-300).sqrt(), torch.where(diff > 0, torch.inf, 0.0))
    return z.max().item()


def base_row(cell: Cell, sweep: Sweep, seed: int) -> dict[str, Any]:
    """Everything a cell's rows hold before it runs."""
    cls = estimators.get_class(cell.estimator)
    return {
        **identity(cell, sweep),
        "problem_kind": cell.problem.kind,
        "replicates": sweep.replicates,
        "precision": sweep.precision,
        "cell_seed": seed,
        "reference_estimator": cell.problem.reference,
        **cell.problem.context_columns(sweep.context()),
        "estbench_version": estbench_version(),
        "estimator_origin": estimators.provenance(cell.estimator),
        "problem_origin": problems.provenance(cell.problem.name),
        "estimator_note": cls.note,
        "counterpart": cls.counterpart,
        "estimator_unbiased": {True: "yes", False: "no"}.get(cls.unbiased, ""),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": machine(),
    }


def ended_rows(base: dict[str, Any], groups: tuple[str, ...], status: str, error: str) -> list[dict[str, Any]]:
    """The rows of a cell that did not measure: one per parameter group, 'skipped' or 'failed' with why."""
    return [{**base, "parameter": g, "status": status, "error": error} for g in groups]


def failed_rows(cell: Cell, sweep: Sweep, error: str) -> list[dict[str, Any]]:
    """A cell's failed rows, built from its plan entry alone (a cluster task that died)."""
    return ended_rows(base_row(cell, sweep, seed_of(cell, sweep)), cell.problem.groups, "failed", error)


def seed_of(cell: Cell, sweep: Sweep) -> int:
    """The cell's own seed (plan.cell_seed of its identity)."""
    setting = cell.problem.setting_label(cell.setting) + ("|confirmation" if sweep.confirmation else "")
    return cell_seed(sweep.seed, cell.problem.name, cell.estimator_key, setting, cell.n_samples)


def prepare(cell: Cell, ctx: Context) -> Any:
    """The problem's prepared data for the cell's setting, or the exception its set-up raised (the cells of
    that setting then fail with it, not the sweep)."""
    try:
        with isolated():
            return cell.problem.prepare(cell.setting, ctx)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a problem that cannot be set up fails its cells
        return exc if isinstance(exc, Exception) else RuntimeError(_error_text(exc))


def reference_key(cell: Cell, sweep: Sweep) -> tuple:
    """What identifies the reference estimator's cell that ``cell``'s agreement_z compares with."""
    return unit_key(cell, sweep, reference=True)


def fill_agreement(rows: list[dict[str, Any]], stats: dict[str, GradientStats],
                   ref_stats: dict[str, GradientStats] | None, ref: str) -> None:
    """Set each row's agreement_z against the reference estimator ``ref``'s statistics (none: left empty)."""
    if ref_stats is None:
        return
    for row in rows:
        row["agreement_z"] = agreement_z(stats[row["parameter"]], ref_stats[row["parameter"]])
        row["reference"] = f"mean of {ref}"


def measure_cell(cell: Cell, sweep: Sweep, prepared: Any, ctx: Context
                 ) -> tuple[list[dict[str, Any]], dict[str, GradientStats] | None]:
    """Rows of one cell and, if it succeeded, its per-group statistics. Never raises for a failing
    estimator or problem. ``prepared`` may be the exception the problem's set-up raised. Each row's
    ``cell_time_s`` is the cell's wall time: warm-up, compiling, measuring and its truth, not the set-up of
    the problem's data (``prepared``), which the cells of a setting share."""
    start = time.perf_counter()
    with torch_state():  # whatever the cell's plugin code changed, the next cell starts as this one did
        rows, stats = _measure_cell(cell, sweep, prepared, ctx)
    spent = time.perf_counter() - start
    for row in rows:
        row["cell_time_s"] = spent
    return rows, stats


def _measure_cell(cell: Cell, sweep: Sweep, prepared: Any, ctx: Context
                  ) -> tuple[list[dict[str, Any]], dict[str, GradientStats] | None]:
    seed = seed_of(cell, sweep)
    base = {**base_row(cell, sweep, seed), **timing_columns()}
    groups = cell.problem.groups
    if isinstance(prepared, Exception):
        return ended_rows(base, groups, "failed", "problem set-up failed: " + _error_text(prepared)), None
    why = estimators.get_class(cell.estimator).unsupported(cell.problem.family, cell.problem.objective, cell.n_samples)
    if why is not None:  # from the declarations, before any work
        return ended_rows(base, groups, "skipped", why), None
    try:
        estimator = estimators.get(cell.estimator, **dict(cell.options))
        seed_generators(seed, sweep.device)
        with concurrency.running_here() as concurrent, isolated():
            stats, timing = estimate_cell(cell.problem, estimator, cell.setting, prepared, cell.n_samples,
                                          sweep.replicates, ctx)
        base["concurrent_cells"] = concurrent()
    except EstimatorError as exc:
        return ended_rows(base, groups, "skipped" if exc.capability else "failed", str(exc)), None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # one broken estimator (even one raising SystemExit or GeneratorExit) must not stop the sweep
        return ended_rows(base, groups, "failed", _error_text(exc)), None
    try:
        with isolated():
            truth = cell.problem.true_gradient(cell.setting, ctx)
            truth_se = cell.problem.true_gradient_se(cell.setting, ctx) if truth is not None else None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # e.g. a closed form that overflows: this cell fails, the sweep goes on
        return ended_rows(base, groups, "failed", "the exact gradient could not be computed: " + _error_text(exc)), None
    try:  # a fault in the statistics (ours or a problem's value_scale) fails this cell, not the run
        return summary_rows(cell, sweep, base, stats, timing, truth, truth_se, ctx), stats
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return ended_rows(base, groups, "failed", "the statistics could not be computed: " + _error_text(exc)), None


def summary_rows(cell: Cell, sweep: Sweep, base: dict[str, Any], stats: dict[str, GradientStats], timing: Any,
                 truth: dict[str, torch.Tensor] | None, truth_se: dict[str, torch.Tensor] | None,
                 ctx: Context) -> list[dict[str, Any]]:
    """One ok row per parameter group of a measured cell: its statistics against the truth where known."""
    groups = cell.problem.groups
    rows = []
    scale = max((truth[g] if truth is not None else stats[g].coords.mean).abs().max().item() for g in groups)
    zero_below = zero_variance_threshold(scale, getattr(torch, sweep.dtype))
    values = cell.problem.value_scale(cell.setting, ctx) if truth is not None and sweep.dtype == "float32" else None
    for g in groups:
        se = None if truth_se is None else truth_se[g]
        s = stats[g].summary(None if truth is None else truth[g], zero_below, se, values)
        if values is not None and truth[g].abs().max().item() < zero_variance_threshold(values, torch.float32):
            s.variance_note = "; ".join(filter(None, [s.variance_note, (
                f"float32 cannot resolve this gradient: its largest |coordinate| {truth[g].abs().max().item():.2g} is "
                f"below float32's rounding at the scale of f's values ({values:.2g}), which the bias z counts; "
                f"run this setting with --dtype float64")]))
        against_truth = {} if truth is None else {"agreement_z": coordinate_z(stats[g], truth[g], se, values),
                                                  "reference": "exact" if se is None else MONTE_CARLO_REFERENCE}
        rows.append({
            **base, "parameter": g, "replicates_used": s.n, "mean": s.mean, "variance": s.variance,
            "variance_se": s.variance_se, "variance_lo": s.variance_lo, "variance_hi": s.variance_hi,
            "variance_note": s.variance_note, "total_variance": s.total_variance,
            # a zero variance: where the estimator declares itself exact, in its words (estimators.Estimator.exact_when)
            "exact_reason": estimators.get_class(cell.estimator).exact_when if s.total_variance == 0 else "",
            # total = variance x coordinates exactly, so its interval is the variance's scaled
            "total_variance_lo": s.variance_lo * s.total_variance / s.variance if s.variance > 0 else 0.0,
            "total_variance_hi": s.variance_hi * s.total_variance / s.variance if s.variance > 0 else 0.0,
            "true_grad": s.true_grad, "bias": s.bias, "bias_z": s.bias_z, "mse": s.mse,
            "mse_lo": s.mse_lo, "mse_hi": s.mse_hi, "snr": s.snr,
            "snr_lo": s.snr_lo, "snr_hi": s.snr_hi, **against_truth,
            # the median of the timed repetitions (benchmarks.engine.TIMING_REPEATS), and their spread
            "time_per_estimate_s": statistics.median(timing.per_estimate),
            "time_per_estimate_min_s": min(timing.per_estimate), "time_per_estimate_max_s": max(timing.per_estimate),
            "f_evals": timing.f_evals, "compiled": timing.compiled, "compile_time_s": timing.compile_s,
            "status": "ok", "error": timing.note,
        })
    return rows


def run_cell(cell: Cell, sweep: Sweep, prepared: Any, ctx: Context) -> list[dict[str, Any]]:
    """Run one cell; never raises for a failing estimator (the rows say 'failed')."""
    return measure_cell(cell, sweep, prepared, ctx)[0]


def curve_base(cell: Cell, sweep: Sweep) -> dict[str, Any]:
    ident = {k: v for k, v in identity(cell, sweep).items() if k != "confirmation"}  # cells only
    return {**ident, "train_seed": cell.train_seed, "train_steps": sweep.train_steps, "estbench_version": estbench_version(),
            "estimator_origin": estimators.provenance(cell.estimator), "problem_origin": problems.provenance(cell.problem.name)}


def curve_rows(cell: Cell, sweep: Sweep, ctx: Context) -> list[dict[str, Any]]:
    """Training-curve rows of one estimator; a failure becomes one 'failed' row."""
    base = curve_base(cell, sweep)
    try:
        estimator = estimators.get(cell.estimator, **dict(cell.options))
        with isolated():
            ctx = replace(ctx, seed=training_seed(ctx.seed, cell.train_seed))
            points = cell.problem.curves(estimator, cell.setting, cell.n_samples, ctx) or []
    except EstimatorError as exc:
        return [{**base, "status": "skipped" if exc.capability else "failed", "error": str(exc)}]
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return [{**base, "status": "failed", "error": _error_text(exc)}]
    objective = cell.problem.curve_objective(type(estimator))
    return [{**base, "objective": objective, **p, "error": ""} for p in points]


def failed_curve(cell: Cell, sweep: Sweep, error: str) -> list[dict[str, Any]]:
    return [{**curve_base(cell, sweep), "status": "failed", "error": error}]
