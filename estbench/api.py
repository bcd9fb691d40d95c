"""The Python API: benchmark estimators from a notebook or a script, get a DataFrame back.

    import estbench
    df = estbench.run(problems="gaussian-quadratic", estimators=["reinforce", MyEstimator],
                      sigma=[0.5, 1, 2], replicates=1000)
    estbench.report(df, out="reports/mine")

``run`` takes problems and estimators as names, classes or objects: a class or object
defined in a notebook cell is registered for the run under its ``name`` (an object is
copied for every cell), so no plugin file is needed. The other keyword arguments are the
sweep's axes and options, named as on the command line (``n_samples``, ``checkpoint_steps``,
...): one value or a list. The command line (estbench.cli) is a thin layer over these two
functions.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: origin recorded for estimators handed over as Python objects
API_ORIGIN = "Python object"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, type)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _estimator_names(values: Any) -> list[str] | None:
    import estimators
    from estimators.identity import api_source

    if values is None:
        return None
    given = _as_list(values)
    seen: dict[str, str] = {}
    for v in given:
        if not isinstance(v, str):
            name, source = getattr(v, "name", None), api_source(v, API_ORIGIN)
            if seen.setdefault(name, source) != source:
                raise estimators.PluginError(
                    f"two estimators named {name!r} with other code or parameters in one run: the second would take "
                    f"the first's rows; give each its own name (an attribute name = '...' on the object or class)")
    return [v if isinstance(v, str) else estimators.register_object(v, API_ORIGIN) for v in given]


def _problem_names(values: Any) -> list[str] | None:
    from benchmarks import problems

    if values is None:
        return None
    return [v if isinstance(v, str) else problems.register(v) for v in _as_list(values)]


def sweep(problems: Any = None, estimators: Any = None, config: str | Path | None = None,
          plugins: Sequence[str] = (), **axes: Any):
    """The validated Sweep that ``run`` runs (benchmarks.sweep.Sweep): defaults, then ``config``
    (a TOML sweep file), then the arguments given here."""
    from benchmarks import plugins as plugin_loader
    from benchmarks.sweep import Sweep, list_fields, load_toml

    for spec in plugins:
        plugin_loader.load(spec)
    given: dict[str, Any] = {"problem": _problem_names(problems), "estimator": _estimator_names(estimators)}
    values: dict[str, Any] = load_toml(config) if config else {}
    lists = list_fields()
    given.update({k: (_as_list(v) if k in lists and v is not None else v) for k, v in axes.items()})
    return Sweep().with_overrides(**values).with_overrides(**given).validate()


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Rows as the CSV file holds them, read back by pandas: the same values and types."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    buf.seek(0)
    return pd.read_csv(buf, dtype={"error": str}, keep_default_na=True)


#: a progress display: called with the plan before the run, it returns a callback that the run
#: calls with each cell (or curve) as it completes and with None at the end (estbench.progress)
Progress = Callable[[Any], Callable[[Any], None]]


def _cluster(workers: int | None, scheduler: str | None, force: bool = False) -> Any:
    """None without a cluster (Dask is then never imported); else the checked ClusterSpec."""
    if workers is None and scheduler is None:
        return None
    from benchmarks.cluster import ClusterSpec

    return ClusterSpec(workers, scheduler, force).check()


def _plan(sweeps: Any, force: bool) -> Any:
    """The run's plan, refused up front (SweepError) where its estimates alone would take more than a day
    (unless ``force``)."""
    from benchmarks import plan as planning

    plan = planning.make_plan(sweeps)
    if not force:
        planning.check_duration(plan)
    return plan


def _run(plan: Any, out: str | Path | None, progress: Progress | None, **kwargs: Any) -> list[dict[str, Any]]:
    from benchmarks import runner

    callback = progress(plan) if progress is not None else None
    try:
        return runner.run(plan, out=out, progress=callback, **kwargs)
    finally:
        if callback is not None:
            callback(None)


def run(problems: Any = None, estimators: Any = None, *, out: str | Path | None = None, resume: bool = False,
        overwrite: bool = False, config: str | Path | None = None, plugins: Sequence[str] = (),
        progress: Progress | None = None, workers: int | None = None, scheduler: str | None = None,
        force: bool = False, **axes: Any) -> pd.DataFrame:
    """Run a sweep and return its results table: the rows and columns of the results CSV.

    ``problems`` and ``estimators``: a name, class or object, or a list of them (default:
    every registered one). ``axes``: the problems' declared setting axes and the estimators'
    declared options (``estbench run --help`` lists them: mu, sigma, theta, temperature, ...)
    and n_samples, one value or a list each; replicates, precision, seed, dtype, device, compile,
    checkpoint_steps, train_steps, data_dir. With ``out`` the rows are also written to that
    file as cells complete (``resume`` and ``overwrite`` as on the command line), and the
    returned table is the whole file. Training curves, for problems that train, are in
    ``df.attrs["curves"]`` (a DataFrame); ``df.attrs["computed"]`` counts the rows this call
    computed (fewer than the table's with ``resume``).
    """
    from benchmarks import runner

    cluster = _cluster(workers, scheduler, force)
    plan = _plan(sweep(problems, estimators, config, plugins, **axes), force)
    curves: list[dict[str, Any]] = []
    rows = _run(plan, out, progress, resume=resume, overwrite=overwrite, curves=curves, cluster=cluster)
    if out is not None:
        df = pd.read_csv(out, dtype={"error": str})
        path = runner.curves_path(out)
        df.attrs["curves"] = pd.read_csv(path) if plan.curves and path.exists() else None
    else:
        df = _frame(rows, runner.columns())
        df.attrs["curves"] = _frame(curves, runner.curve_header()) if curves else None
    df.attrs["computed"] = len(rows)
    return df


def report(results: pd.DataFrame | str | Path, out: str | Path = "reports/latest", *,
           benchmarks: str | Path | None = None, overwrite: bool = False, command: str | None = None) -> Path:
    """Build the variance report from a results table (a DataFrame from ``run``, or a results
    file) into the folder ``out``; returns the path of report.md."""
    from reports.report import build

    if isinstance(results, (str, Path)):
        return build(results, out, benchmarks=benchmarks, command=command, overwrite=overwrite)
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"estbench.report takes a results table (the DataFrame estbench.run returns) or the path of "
                        f"a results file, got {type(results).__name__} {str(results)[:60]!r}")
    from benchmarks.results_file import curves_path

    with tempfile.TemporaryDirectory(prefix="estbench-report-") as tmp:
        path = Path(tmp) / "results.csv"
        results.to_csv(path, index=False)
        curves = results.attrs.get("curves")
        if isinstance(curves, pd.DataFrame) and not curves.empty:
            curves.to_csv(curves_path(path), index=False)
        return build(path, out, benchmarks=benchmarks, command=command, overwrite=overwrite)


#: training curves per estimator in ``estbench report --quick`` (a first look, without intervals)
QUICK_TRAIN_SEEDS = 1


def default_report(out: str | Path = "reports/latest", *, quick: bool = False, resume: bool = False,
                   overwrite: bool = False, benchmarks: str | Path | None = None, command: str | None = None,
                   progress: Progress | None = None, plugins: Sequence[str] = (),
                   **options: Any) -> tuple[Path, pd.DataFrame]:
    """Run the default report's sweeps (``estbench report``) into ``out``/results.csv and build the
    report there; returns (report.md, the results table). ``options``: problem, estimator, seed,
    dtype, device, compile, data_dir, train_seeds (default 3; quick: QUICK_TRAIN_SEEDS)."""
    from benchmarks.problems import checkpoints
    from benchmarks.sweep import report_sweeps
    from reports.report import build, check_benchmarks, check_out_dir

    out = Path(out)
    check_out_dir(out)
    if benchmarks:
        check_benchmarks(benchmarks)  # before the sweep: a bad file must not cost a run
    problems, estimators = options.pop("problem", None), options.pop("estimator", None)
    force = bool(options.pop("force", False))
    cluster = _cluster(options.pop("workers", None), options.pop("scheduler", None), force)
    if quick and options.get("train_seeds") is None:
        options["train_seeds"] = QUICK_TRAIN_SEEDS
    base = sweep(problems, estimators, plugins=plugins, **options)
    plan = _plan(report_sweeps(base, quick=quick), force)
    results = out / "results.csv"
    start = time.perf_counter()
    # a local cluster's workers and the confirmation reruns here share one set of trained checkpoints
    with checkpoints.sharing() if cluster is not None and cluster.local else contextlib.nullcontext():
        _run(plan, results, progress, resume=resume, overwrite=overwrite, cluster=cluster)
        wall_time = {"the sweep's cells and training curves": time.perf_counter() - start}
        confirm = confirmation_plan(plan, results)
        if confirm.cells:  # a few cells, run here: a cluster's workers rebuild whole sweeps, not single cells
            start = time.perf_counter()
            _run(confirm, results, progress, resume=True)
            wall_time[f"{len(confirm.cells)} confirmation reruns"] = time.perf_counter() - start
    path = build(results, out, benchmarks=benchmarks, command=command, wall_time=wall_time)
    return path, pd.read_csv(results, dtype={"error": str})


def confirmation_plan(plan: Any, results: Path) -> Any:
    """The reruns of ``plan``'s cells flagged biased near the threshold in ``results`` (reports.confirm):
    each cell with CONFIRMATION_FACTOR times its replicates, its rows marked ``confirmation``."""
    from benchmarks.plan import Plan
    from benchmarks.schema import options_text
    from reports.confirm import CONFIRMATION_FACTOR, cells_to_confirm
    from reports.load import read_results

    wanted = set(cells_to_confirm(read_results(results)))
    cells = []
    for cell, sw in plan.cells:
        key = (cell.problem.name, cell.estimator, options_text(cell.options), cell.problem.setting_label(cell.setting),
               str(cell.n_samples))
        if key in wanted:
            cells.append((cell, sw.with_overrides(replicates=sw.replicates * CONFIRMATION_FACTOR, confirmation=True)))
    return Plan(cells, [])
