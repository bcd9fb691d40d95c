"""Running a plan's cells on a Dask cluster: ``--workers N`` (a local cluster of N worker
processes) or ``--scheduler ADDRESS`` (an existing one). Dask is imported only here, and only
when one of them is given.

What travels to a worker is plain data: the sweeps' options (``Sweep.options()``), the plugin
files' names and contents, the threads to use, and a unit's position in the plan. Each worker
process rebuilds the same plan from the same sweeps (the plan is deterministic) and checks that
the unit it was sent is the one the client means (its label) before running it. A unit is a cell
(``measure_cell``) or a training curve (``curve_rows``); both are seeded from their identity, so
where one runs does not change its numbers.

The client is the only writer of the results files: it appends each unit's rows as its task
completes, so ``--resume``, a killed client and the table's content work as in a serial run. A
worker that dies mid-cell (killed, out of memory) has its task run again on another worker by
the scheduler; after ``ALLOWED_FAILURES`` deaths the cell gets a failed row and the run goes on.
A cell that fails for a reason of its own returns failed rows, as serially, and is not retried.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import ALLOWED_FAILURES, ClusterError, ClusterSpec, connect

# ----------------------------------------------------------------------------------------------
# the worker's side


@dataclass
class Job:
    """What every task of a run carries: the sweeps' options, the plugins, the threads."""

    sweeps: list[dict[str, Any]]
    #: (spec as given, file name or None for a module, file content or None)
    plugins: list[tuple[str, str | None, bytes | None]]
    threads: int | None
    key: str = ""
    origins: dict[str, str] = field(default_factory=dict)
    #: a local cluster's folder where its workers and the client share the trained checkpoints
    #: (benchmarks.problems.checkpoints); None on an existing cluster, whose hosts do not see this one's files
    shared_dir: str | None = None


_STATE: dict[str, Any] = {}  # per worker process: the job's plan, the plugins loaded, the prepared data


def _plugin_folder() -> Path:
    """A new folder for a plugin file sent by the client: inside the worker's own scratch folder, which Dask
    removes with the worker (and purges after a worker killed); outside a worker, a temporary folder removed
    when the process exits."""
    scratch = _STATE.get("scratch")
    if scratch is None:
        try:
            from distributed import get_worker

            scratch = get_worker().local_directory
        except (ImportError, ValueError):  # not in a Dask task
            folder = tempfile.mkdtemp(prefix="estbench-plugin-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            return Path(folder)
    return Path(tempfile.mkdtemp(prefix="estbench-plugin-", dir=scratch))


def _load_plugins(job: Job) -> None:
    from benchmarks import plugins

    loaded = _STATE.setdefault("plugins", set())
    for spec, name, content in job.plugins:
        if (spec, content) in loaded:
            continue
        if name is not None and content is not None:  # a file: the client's bytes, under the client's file name
            path = _plugin_folder() / name
            path.write_bytes(content)
            plugins.load(str(path))
        else:
            plugins.load(spec)
        loaded.add((spec, content))


def _plan(job: Job) -> Any:
    from benchmarks.problems import checkpoints

    checkpoints.share(job.shared_dir)
    if _STATE.get("key") != job.key:
        from benchmarks.plan import make_plan
        from benchmarks.sweep import Sweep

        _load_plugins(job)
        _STATE["key"], _STATE["plan"], _STATE["prepared"] = job.key, make_plan([Sweep(**o) for o in job.sweeps]), (None, None)
    return _STATE["plan"]


def worker_info(job: Job, dask_worker: Any = None) -> dict[str, Any]:
    """Run on every worker before any work (``Client.run``, which hands it the worker): its versions and, once
    the job's plugins are loaded there, where each estimator of the plan comes from (or the error that loading
    gave)."""
    if dask_worker is not None:
        _STATE["scratch"] = dask_worker.local_directory
    import platform

    import torch

    from benchmarks import machine
    from estimators import registry

    info: dict[str, Any] = {"estbench": machine.estbench_version(), "torch": torch.__version__,
                            "python": platform.python_version(), "host": platform.node()}
    try:
        _plan(job)
        if job.threads is not None:
            torch.set_num_threads(job.threads)
        machine.matmul_gflops()  # measured once per process, before the first cell, as a serial run measures it at its start
        info["origins"] = {e: registry.provenance(e) for e in job.origins}
    except Exception as exc:  # noqa: BLE001 - reported to the client in one line
        info["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())
    return info


def run_unit(job: Job, kind: str, index: int, label: str) -> tuple[list[dict[str, Any]], Any]:
    """Run unit ``index`` of the plan's cells or curves on this worker; returns (rows, statistics or None)."""
    import torch

    from benchmarks import allocator
    from benchmarks import rows as cell_rows

    allocator.keep_freed_memory()  # as the estbench process does (once): chunks do not fault their buffers in again
    if job.threads is not None and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)
    plan = _plan(job)
    cell, sweep = (plan.cells if kind == "cell" else plan.curves)[index]
    if cell.label != label:
        raise RuntimeError(f"the worker's plan differs from the client's: unit {index} is {cell.label}, not {label}")
    ctx = sweep.context()
    if kind == "curve":
        return cell_rows.curve_rows(cell, sweep, ctx), None
    key = (cell.problem.name, cell.setting, ctx)
    if _STATE["prepared"][0] != key:  # as the serial runner: one setting's prepared data at a time
        _STATE["prepared"] = (None, None)
        _STATE["prepared"] = (key, cell_rows.prepare(cell, ctx))
    rows, stats = cell_rows.measure_cell(cell, sweep, _STATE["prepared"][1], ctx)
    # the client needs a cell's statistics only to compare its mean with a reference estimator's, where the
    # problem has no exact gradient; sending them back otherwise cost more than a small cell (pickling tensors)
    return rows, (stats if rows[0].get("reference") is None else None)


def run_units(job: Job, kind: str, indices: list[int], labels: list[str]) -> list[tuple[list[dict[str, Any]], Any]]:
    """run_unit for each of a batch of units, in order (one task: BATCHING)."""
    return [run_unit(job, kind, i, label) for i, label in zip(indices, labels, strict=True)]


def reference_stats(job: Job, index: int) -> Any:
    """The statistics of the reference estimator's cell for plan cell ``index`` (its rows were written by an
    earlier run): recomputed with the same seed, so the same numbers."""
    from benchmarks import rows as cell_rows
    from benchmarks.plan import Cell

    plan = _plan(job)
    cell, sweep = plan.cells[index]
    ref = Cell(cell.problem, cell.problem.reference, cell.setting, cell.n_samples)
    ctx = sweep.context()
    return cell_rows.measure_cell(ref, sweep, cell_rows.prepare(cell, ctx), ctx)[1]


# ----------------------------------------------------------------------------------------------
# the client's side

#: each problem's pending units are sent as about this many tasks per worker, consecutive units
#: batched into one task: a task costs the scheduler, the client and the worker a few milliseconds
#: (noop tasks ran at about 300 per second on a 2-core machine), as much as a small toy cell
TASKS_PER_WORKER = 8


def batches(units: list[tuple[Any, Any]], workers: int) -> list[list[tuple[Any, Any]]]:
    """Consecutive units of the same problem, in batches of ceil(that problem's units / (workers x
    TASKS_PER_WORKER)): a problem of many small cells gets few tasks, a problem of a few large cells
    (a VAE's) one task per cell or so, so the workers stay evenly loaded."""
    by_problem: dict[str, list[tuple[Any, Any]]] = {}
    for unit in units:
        by_problem.setdefault(unit[0].problem.name, []).append(unit)
    out = []
    for group in by_problem.values():
        size = max(1, -(-len(group) // (workers * TASKS_PER_WORKER)))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def plugin_payload(specs: list[str]) -> list[tuple[str, str | None, bytes | None]]:
    """The plugins the client loaded, as workers load them: a file's name and bytes, or a module's name."""
    out = []
    for spec in specs:
        path = Path(spec)
        if spec.endswith(".py") or path.is_file():
            out.append((spec, path.name, path.read_bytes()))
        else:
            out.append((spec, None, None))
    return out


def check_workers(client: Any, job: Job) -> None:
    """Refuse, in one line and before any work, a cluster whose workers run another estbench, torch or
    Python than the client, cannot load the plugins, or would run another version of an estimator."""
    import platform

    import torch

    from benchmarks.machine import estbench_version

    mine = {"estbench": estbench_version(), "torch": torch.__version__, "python": platform.python_version()}
    infos = client.run(worker_info, job)
    if not infos:
        raise ClusterError("the Dask cluster has no workers")
    for worker, info in sorted(infos.items()):
        for what, version in mine.items():
            if info.get(what) != version:
                raise ClusterError(f"worker {worker} on {info.get('host')} runs {what} {info.get(what)}, this client "
                                   f"{version}: install the same versions on every worker")
        if "error" in info:
            raise ClusterError(f"worker {worker} on {info.get('host')} cannot load this run's plugins "
                               f"({info['error']}); install them there, or pass them as --plugin FILE.py")
        for est, origin in job.origins.items():
            theirs = info["origins"].get(est)
            if theirs != origin:
                raise ClusterError(f"worker {worker} on {info.get('host')} has estimator {est!r} from {theirs}, this "
                                   f"client from {origin}: install the same plugin versions on every worker")


def job_for(plan: Any, threads: int | None) -> Job:
    """The Job of ``plan``: its sweeps' options, the plugins this process loaded, the threads."""
    import hashlib
    import pickle

    from benchmarks import plugins
    from estimators import registry

    sweeps = list({id(sw): sw for _, sw in [*plan.cells, *plan.curves]}.values())  # in order of first use
    unshippable = sorted({c.estimator for c, _ in [*plan.cells, *plan.curves]
                          if registry.provenance(c.estimator).startswith("Python object")})
    if unshippable:
        raise ClusterError(f"estimator {unshippable[0]!r} was defined in this Python session; workers cannot import it: "
                           f"put it in a plugin file and pass --plugin FILE.py")
    # the plugins that define this run's estimators and problems, each name from the plugin that registered it last
    # (a notebook may have loaded other files, or another version of one, earlier)
    used = {c.estimator for c, _ in [*plan.cells, *plan.curves]} | {c.problem.name for c, _ in [*plan.cells, *plan.curves]}
    last = {name: spec for spec, names in plugins.LOADED.items() for name in names}
    specs = [spec for spec in plugins.LOADED if any(last.get(n) == spec for n in used)]
    job = Job([sw.options() for sw in sweeps], plugin_payload(specs), threads)
    job.origins = {c.estimator: registry.provenance(c.estimator) for c, _ in [*plan.cells, *plan.curves]}
    job.key = hashlib.sha256(pickle.dumps((job.sweeps, job.plugins))).hexdigest()[:16]
    return job


class Dask:
    """The executor (benchmarks.executors) that runs a plan's units on a Dask cluster: started or
    reached and its workers checked on entering ``session``, before the run loop opens any file;
    consecutive units of a problem batched into tasks; each unit's rows handed back as its task
    completes. The run loop in this process stays the only writer of the results files."""

    immediate_reference = False

    def __init__(self, spec: ClusterSpec, quiet: bool = True):
        self.spec, self.quiet = spec, quiet
        self.client: Any = None
        self.job: Any = None
        self.index: dict[tuple[str, int], int] = {}

    @contextlib.contextmanager
    def session(self, plan: Any) -> Iterator[Dask]:
        import time

        import dask

        from benchmarks.problems import checkpoints

        self.index = {("cell", id(c)): i for i, (c, _) in enumerate(plan.cells)}
        self.index.update({("curve", id(c)): i for i, (c, _) in enumerate(plan.curves)})
        # a local cluster's workers share the run's checkpoints with this process; an existing one's hosts cannot
        shared = checkpoints.sharing() if self.spec.local else contextlib.nullcontext()
        t0 = time.perf_counter()
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}), \
                connect(self.spec) as (client, threads), shared as shared_dir:
            self.client, self.job = client, job_for(plan, threads)
            self.job.shared_dir = shared_dir
            check_workers(client, self.job)  # also sets every worker up: imports, plugins, the plan
            LAST_RUN["setup_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            try:
                yield self
            finally:
                LAST_RUN["units_s"] = time.perf_counter() - t1
                self.client = None

    def units(self, todo: list[tuple[Any, Any]], todo_curves: list[tuple[Any, Any]]) -> Iterator[tuple]:
        import time

        from distributed import as_completed

        client, job = self.client, self.job  # the job is sent with each task: scattered data would die with a worker
        futures: dict[Any, list[tuple[str, Any, Any, int]]] = {}
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        for kind, units in (("cell", todo), ("curve", todo_curves)):
            for batch in batches(units, n_workers):
                members = [(kind, cell, sweep, self.index[(kind, id(cell))]) for cell, sweep in batch]
                fut = client.submit(run_units, job, kind, [m[3] for m in members], [m[1].label for m in members],
                                    pure=False, key=f"{kind}-{members[0][3]}-{len(members)}-{job.key}")
                futures[fut] = members
        done_by: dict[str, int] = {}
        last = time.monotonic()
        for fut in as_completed(list(futures)):
            members = futures.pop(fut)
            try:
                results = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died too often, or a failure outside the cell
                results = [(_failed_rows(kind, cell, sweep, exc), None) for kind, cell, sweep, _ in members]
            for (kind, cell, sweep, _), (rows, stats) in zip(members, results, strict=True):
                where = str(rows[0].get("host") or "?") if kind == "cell" else "training curves"
                done_by[where] = done_by.get(where, 0) + 1
                yield kind, cell, sweep, rows, stats
            if not self.quiet and time.monotonic() - last > PROGRESS_EVERY_S:
                last = time.monotonic()
                print_status(_worker_status(client, done_by))

    def reference_stats(self, cell: Any, sweep: Any) -> Any:
        i = self.index[("cell", id(cell))]
        return self.client.submit(reference_stats, self.job, i, pure=False, key=f"ref-{i}-{self.job.key}").result()


#: seconds of the last cluster run in this process: "setup_s" (starting or reaching the cluster, setting
#: the workers up and checking them) and "units_s" (running the cells and curves); read by perf_cluster
LAST_RUN: dict[str, float] = {}
#: seconds between the per-worker progress lines
PROGRESS_EVERY_S = 30


def _failed_rows(kind: str, cell: Any, sweep: Any, exc: BaseException) -> list[dict[str, Any]]:
    from benchmarks import rows as cell_rows
    from benchmarks.engine import _error_text

    name = type(exc).__name__
    why = (f"the worker running this cell died {ALLOWED_FAILURES + 1} times ({name}); it was not run again"
           if name == "KilledWorker" else f"the task failed on the cluster: {_error_text(exc)}")
    return (cell_rows.failed_curve if kind == "curve" else cell_rows.failed_rows)(cell, sweep, why)


def _worker_status(client: Any, done_by: dict[str, int]) -> str:
    """'done per host: h1 12, training curves 3; running per worker: w1 1, w2 1' from the rows and the scheduler."""
    try:
        processing = client.processing()
    except Exception:  # noqa: BLE001 - progress is best effort
        processing = {}
    done = ", ".join(f"{h} {n}" for h, n in sorted(done_by.items()))
    running = ", ".join(f"{w} {len(t)}" for w, t in sorted(processing.items()))
    return f"done per host: {done}; running per worker: {running or 'none'}"


def print_status(line: str) -> None:
    print(f"estbench: {line}", file=sys.stderr)
