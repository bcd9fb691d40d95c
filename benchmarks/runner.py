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

import contextlib
import csv
import hashlib
import math
import os
import platform
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import estimators
from estimators import Estimator, EstimatorError

from . import compiling, problems
from .problems import Context, Problem
from .results_file import ResultsFileError, check_target, has_content, os_error_text, read_text, writer_lock
from .stats import GradientStats, chunk_moments
from .sweep import Sweep, SweepError

#: The result table's columns, in order. Columns a problem does not use stay empty.
COLUMNS = [
    "problem", "estimator", "parameter",
    "dim", "mu", "sigma", "k", "checkpoint", "hidden", "latent", "batch", "checkpoint_steps", "train_steps",
    "n_samples", "replicates", "seed",
    "mean", "variance", "total_variance", "true_grad", "bias", "bias_z", "mse", "snr", "agreement_z",
    "time_per_estimate_s", "compiled", "compile_time_s", "status", "error",
    "setting", "cell_seed", "dtype", "device",
    "estbench_version", "estimator_origin", "torch_version", "python_version", "machine",
]  # fmt: skip

#: The training-curve table's columns (problems that train a model: the VAE).
CURVE_COLUMNS = [
    "problem", "estimator", "hidden", "latent", "batch", "n_samples", "seed", "train_steps", "dtype", "device",
    "step", "wall_time_s", "elbo_train", "elbo_test", "status", "error", "estbench_version", "estimator_origin",
]  # fmt: skip

#: The options that decide what a completed cell (or training curve) holds. A --resume whose
#: plan would write other values of them for a problem already in the file is refused; options
#: that only add cells (more problems, estimators, settings, n_samples) may resume. The
#: estimator's origin (built in, or which plugin file, by content) must match too.
CONTENT_COLUMNS = ("replicates", "seed", "dtype", "device", "checkpoint_steps", "train_steps", "estbench_version")
CURVE_CONTENT_COLUMNS = ("seed", "dtype", "device", "train_steps", "estbench_version")

#: stateful estimators are called this many times before measuring
WARMUP_CALLS = 10
#: agreement_z compares every estimator's mean gradient with this one's
REFERENCE = "reparameterization"


def curves_path(out: str | Path) -> Path:
    """Where the training curves of a run go: results.csv -> results-training.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}-training{out.suffix or '.csv'}")


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


class ResultsWriteError(ResultsFileError):
    """Writing a results file failed part-way (full disk, file size limit...). The rows of the
    cells completed before are on disk; the message says so and how to continue."""


class ResultWriter:
    """Appends whole rows to a CSV file and flushes them to disk after each cell.

    The caller holds the file's writer lock (results_file.writer_lock). An OS error while
    writing becomes ResultsWriteError, naming the file."""

    def __init__(self, path: str | Path, columns: list[str] = COLUMNS, append: bool = False):
        self.path = Path(path)
        self.columns = columns
        new = not (append and has_content(self.path))
        try:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w" if new else "a", newline="")
        except OSError as exc:
            raise ResultsFileError(f"cannot write {self.path}: {os_error_text(exc)}") from None
        self._writer = csv.DictWriter(self._fh, fieldnames=columns, extrasaction="ignore")
        if new:
            self._guarded(self._writer.writeheader)

    def _guarded(self, write: Callable[[], Any]) -> None:
        try:
            write()
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise ResultsWriteError(
                f"writing {self.path} failed: {os_error_text(exc)}; the rows of the cells completed before are "
                f"kept: continue with --resume once it is fixed") from None

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._guarded(lambda: self._writer.writerows(rows))

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write was reported; flushing it again fails again
            self._fh.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ResumeError(ValueError):
    """A results file that cannot be resumed (another version's columns, other options); the message
    names it and the differing option."""


def _atomic_rewrite(path: Path, header: str, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.resume-tmp")
    with open(tmp, "w", newline="") as fh:
        fh.write(header)
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_rows(path: Path, columns: list[str]) -> tuple[str, list[str], list[dict], int]:
    """(header, complete lines, their rows, number of lines) of an existing results file written by
    this version; ResumeError for anything else. A torn last line (no line end) is left out."""
    try:
        text = read_text(path)
    except ResultsFileError as exc:
        raise ResumeError(f"cannot resume: {exc}") from None
    if "\0" in text:
        raise ResumeError(f"cannot resume {path}: it holds NUL bytes, so it is corrupted (written by two processes "
                          f"at once by an older version?); write to a new --out")
    lines = text.splitlines(keepends=True)
    header = lines[0]
    if header.rstrip("\r\n") != ",".join(columns):
        raise ResumeError(f"cannot resume {path}: its columns are not those this version writes; "
                          f"use a new --out file")
    body = [ln for ln in lines[1:] if ln.endswith("\n")]  # a torn last line has no line end
    rows = list(csv.DictReader([header, *body]))
    return header, body, rows, len(lines)


def _whole(rows: list[dict]) -> list[dict]:
    """The rows with every column present (a row cut short by a kill has fewer)."""
    return [r for r in rows if None not in r and None not in r.values()]


def completed(path: Path, columns: list[str], key: Callable[[dict], tuple],
              complete: Callable[[list[dict]], bool]) -> set[tuple]:
    """Keys of the completed units (cells, curves) in an existing results file, for --resume.

    Rows are appended whole and flushed, so a kill can at worst leave a torn last line or a
    unit with some of its rows: both are dropped (the file is rewritten atomically without
    them) and those units are computed again.
    """
    if not has_content(path):
        return set()
    header, body, rows, n_lines = read_rows(path, columns)
    units: dict[tuple, list[dict]] = {}
    for r in _whole(rows):
        units.setdefault(key(r), []).append(r)
    done = {k for k, rs in units.items() if complete(rs)}
    kept = [ln for ln, r in zip(body, rows) if key(r) in done]
    if len(kept) != n_lines - 1:
        _atomic_rewrite(path, header, kept)
    return done


def _text(value: Any) -> str:
    """A value as the csv module writes it."""
    return "" if value is None else str(value)


def check_resumable(path: Path, rows: list[dict], planned: list[dict[str, Any]], content: tuple[str, ...]) -> None:
    """Raise ResumeError if the file's ``rows`` of a problem the plan also runs were made with
    other values of the ``content`` options than the ``planned`` rows, or its rows of an estimator
    the plan also runs came from another origin (another plugin file, or another version of it)."""
    want: dict[str, set[tuple]] = {}
    origins: dict[str, str] = {}
    for row in planned:
        want.setdefault(row["problem"], set()).add(tuple(_text(row.get(c)) for c in content))
        origins[row["estimator"]] = _text(row.get("estimator_origin"))
    for r in rows:
        if r["problem"] in want:
            have = tuple(r.get(c, "") for c in content)
            if have not in want[r["problem"]]:
                planned_values = sorted(want[r["problem"]])[0]
                diff = [f"{c}={h or '(none)'} in the file, {c}={p or '(none)'} in this run"
                        for c, h, p in zip(content, have, planned_values) if h != p]
                raise ResumeError(
                    f"cannot resume {path}: its {r['problem']} rows were made with other options ("
                    + "; ".join(diff) + "); resume with the same options, or write to a new --out")
        if r["estimator"] in origins and r.get("estimator_origin", "") != origins[r["estimator"]]:
            raise ResumeError(
                f"cannot resume {path}: its rows of estimator {r['estimator']!r} come from "
                f"{r.get('estimator_origin') or '(unknown)'}, this run's from {origins[r['estimator']]}; "
                f"write to a new --out")


def _row_cell_key(r: dict) -> tuple:
    return (r["problem"], r["estimator"], r["setting"], r["n_samples"], r["replicates"], r["seed"], r["dtype"],
            r["device"])


def _cell_key(cell: "Cell", sweep: Sweep) -> tuple:
    return (cell.problem.name, cell.estimator, cell.problem.setting_label(cell.setting), str(cell.n_samples),
            str(sweep.replicates), str(sweep.seed), sweep.dtype, sweep.device)


def _row_curve_key(r: dict) -> tuple:
    return (r["problem"], r["estimator"], r["hidden"], r["latent"], r["batch"], r["n_samples"], r["seed"])


def _curve_key(cell: "Cell", sweep: Sweep) -> tuple:
    c = cell.problem.columns(cell.setting)
    return (cell.problem.name, cell.estimator, str(c["hidden"]), str(c["latent"]), str(c["batch"]),
            str(cell.n_samples), str(sweep.seed))


def _cell_complete(rows: list[dict]) -> bool:
    try:
        groups = set(problems.get(rows[0]["problem"]).groups)
    except KeyError:
        return True
    return {r["parameter"] for r in rows} == groups


@dataclass
class Cell:
    problem: Problem
    estimator: str
    setting: Any
    n_samples: int

    @property
    def label(self) -> str:
        return f"{self.estimator}[{self.problem.name}-{self.problem.setting_label(self.setting)}-n={self.n_samples}]"


def _reference_first(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: n != REFERENCE)  # stable: otherwise the order given


def cells(sweep: Sweep) -> Iterator[Cell]:
    """Every cell of the sweep; within a setting the reference estimator comes first."""
    for pname in sweep.problem:
        problem = problems.get(pname)
        for setting in problem.settings(sweep):
            for n in sweep.n_samples:
                for ename in _reference_first(sweep.estimator):
                    yield Cell(problem, ename, setting, n)


def curve_cells(sweep: Sweep) -> list[Cell]:
    """Training-curve tasks: one per problem that trains, curve setting, n_samples and estimator."""
    if sweep.train_steps <= 0:
        return []
    out, seen = [], set()
    for pname in sweep.problem:
        problem = problems.get(pname)
        if not problem.trains:
            continue
        for setting in problem.settings(sweep):
            key = problem.curve_setting(setting)
            if key in seen:
                continue
            seen.add(key)
            for n in sweep.n_samples:
                for ename in _reference_first(sweep.estimator):
                    out.append(Cell(problem, ename, key, n))
    return out


def agreement_z(stats: GradientStats, ref: GradientStats) -> float:
    """Largest |z| over coordinates between two independent cells' mean gradients."""
    se2 = stats.coords.var / stats.n + ref.coords.var / ref.n
    diff = (stats.coords.mean - ref.coords.mean).abs()
    z = torch.where(se2 > 0, diff / se2.clamp_min(1e-300).sqrt(), torch.where(diff > 0, torch.inf, 0.0))
    return z.max().item()


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
    ran compiled, what compiling cost (s, NaN if not compiled), and why a compile fell back."""

    elapsed: float
    compiled: bool = False
    compile_s: float = math.nan
    note: str = ""


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
    ``last`` (one compiled shape covers all but perhaps the last). Held as three numbers, so its
    memory does not grow with the number of replicates."""

    def __init__(self, replicates: int, max_chunk: int):
        k = -(-replicates // max(1, max_chunk))
        self.size = -(-replicates // k)
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


def chunk_plan(replicates: int, max_chunk: int) -> ChunkPlan:
    """Chunk sizes, as equal as possible (one compiled shape covers all but perhaps the last)."""
    return ChunkPlan(replicates, max_chunk)


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
        self.sizes = sizes = chunk_plan(replicates, problem.chunk_size(setting, n_samples) * chunk_factor(ctx))

        def step(r: int, state: Any) -> tuple[dict[str, tuple[torch.Tensor, ...]], Any]:
            out = problem.chunk(estimator, setting, prepared, n_samples, r, state, ctx)
            _check_grads(out.grads, problem.groups, r)
            return {g: chunk_moments(out.grads[g]) for g in problem.groups}, out.state

        state = estimator.init_state()
        # Warm-up, neither timed nor measured: a small call pays one-time costs (allocator,
        # first-call dispatch); a stateful estimator's state settles over WARMUP_CALLS calls.
        # The last call's time predicts the eager run, for --compile auto.
        warm = min(sizes[0], 100)
        for _ in range(WARMUP_CALLS if estimator.stateful else 2):
            sync(ctx)
            t0 = time.perf_counter()
            state = step(warm, state)[1]
            sync(ctx)
            t_warm = time.perf_counter() - t0
        self.timing = CellTiming(elapsed=math.nan)
        self.run_chunk: Callable[[int, Any], Any] = step
        mode = compiling.check_mode(ctx.compile)
        if mode == "on" or (mode == "auto" and t_warm / warm * replicates > compiling.AUTO_MIN_EAGER_S):
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

    def measure(self) -> dict[str, GradientStats]:
        """Draw the estimates; their wall time goes to ``self.timing.elapsed``.

        Non-finite estimates raise FloatingPointError: on the CPU after the chunk that had
        them; on a GPU after the last chunk, since each check waits for the GPU (measured on
        an H200: 9-15% of the time at the CPU's chunk sizes). A NaN or inf stays in the
        running mean, so the last check sees every chunk's."""
        stats = {g: GradientStats() for g in self.groups}
        state = self.state
        each_chunk = not self.ctx.device.startswith("cuda")
        sync(self.ctx)
        start = time.perf_counter()
        for r in self.sizes:
            moments, state = self.run_chunk(r, state)
            for g in self.groups:
                stats[g].merge(r, moments[g])
            if each_chunk:
                _check_finite(stats)
        if not each_chunk:
            _check_finite(stats)
        sync(self.ctx)
        self.timing.elapsed = time.perf_counter() - start
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
    stats = engine.measure()
    return stats, engine.timing


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
        **cell.problem.context_columns(sweep.context()),
        "estbench_version": estbench_version(),
        "estimator_origin": estimators.provenance(cell.estimator),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": machine(),
    }


def run_cell(cell: Cell, sweep: Sweep, prepared: Any, ctx: Context) -> list[dict[str, Any]]:
    """Run one cell; never raises for a failing estimator (the rows say 'failed')."""
    return measure_cell(cell, sweep, prepared, ctx)[0]


def _error_text(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        msg += f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})"
    return " ".join(msg.split())  # one line: a results row is one line


def measure_cell(
    cell: Cell, sweep: Sweep, prepared: Any, ctx: Context
) -> tuple[list[dict[str, Any]], dict[str, GradientStats] | None]:
    """Rows of one cell and, if it succeeded, its per-group statistics.

    ``prepared`` may be the exception the problem's set-up raised: the cell then fails with it.
    """
    seed = cell_seed(sweep.seed, cell.problem.name, cell.estimator, cell.problem.setting_label(cell.setting), cell.n_samples)
    base = _base_row(cell, sweep, seed)
    groups = cell.problem.groups
    if isinstance(prepared, Exception):
        error = "problem set-up failed: " + _error_text(prepared)
        return [{**base, "parameter": g, "status": "failed", "error": error} for g in groups], None
    try:
        estimator = estimators.get(cell.estimator)
        torch.manual_seed(seed)
        stats, timing = estimate_cell(cell.problem, estimator, cell.setting, prepared, cell.n_samples, sweep.replicates, ctx)
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
                "time_per_estimate_s": timing.elapsed / sweep.replicates,
                "compiled": timing.compiled,
                "compile_time_s": timing.compile_s,
                "status": "ok",
                "error": timing.note,
            }
        )
    return rows, stats


def _curve_base(cell: Cell, sweep: Sweep) -> dict[str, Any]:
    return {"problem": cell.problem.name, "estimator": cell.estimator, **cell.problem.columns(cell.setting),
            "n_samples": cell.n_samples, "seed": sweep.seed, "train_steps": sweep.train_steps, "dtype": sweep.dtype,
            "device": sweep.device, "estbench_version": estbench_version(),
            "estimator_origin": estimators.provenance(cell.estimator)}


def curve_rows(cell: Cell, sweep: Sweep, ctx: Context) -> list[dict[str, Any]]:
    """Training-curve rows of one estimator; a failure becomes one 'failed' row."""
    base = _curve_base(cell, sweep)
    try:
        estimator = estimators.get(cell.estimator)
        points = cell.problem.curves(estimator, cell.setting, cell.n_samples, ctx) or []
    except EstimatorError as exc:
        status = "skipped" if exc.capability else "failed"
        return [{**base, "status": status, "error": str(exc)}]
    except (Exception, SystemExit) as exc:
        return [{**base, "status": "failed", "error": _error_text(exc)}]
    return [{**base, **p, "error": ""} for p in points]


@dataclass
class Plan:
    """The cells of one or more sweeps, without duplicates, each with the sweep it came from."""

    cells: list[tuple[Cell, Sweep]]
    curves: list[tuple[Cell, Sweep]]

    def __len__(self) -> int:
        return len(self.cells) + len(self.curves)


def memory_bytes() -> int:
    """This machine's physical memory (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_memory(cell: Cell, sweep: Sweep) -> None:
    """Refuse, before any work, a cell whose smallest chunk (one replicate) cannot fit in half of
    this machine's memory: it would only thrash and be killed."""
    need = cell.problem.replicate_bytes(cell.setting, cell.n_samples, sweep.context())
    have = memory_bytes()
    if have and need > have // 2:
        raise SweepError(
            f"{cell.problem.name} at {cell.problem.setting_label(cell.setting)}, n_samples={cell.n_samples}, "
            f"{sweep.dtype}: one replicate needs about {need / 2**30:.3g} GiB, more than half of this machine's "
            f"{have / 2**30:.3g} GiB; use a smaller dim, n_samples or batch")


def make_plan(sweeps: Sweep | list[Sweep]) -> Plan:
    """Validate the sweeps (names, values, data files, memory) and list their distinct cells.

    A plan with no cell at all (an empty list in a sweep file) is a SweepError."""
    sweeps = [sweeps] if isinstance(sweeps, Sweep) else list(sweeps)
    plan = Plan([], [])
    seen: set[tuple] = set()
    for sweep in sweeps:
        sweep.validate()
        for pname in sweep.problem:
            problems.get(pname).check(sweep.context())
        how = (sweep.replicates, sweep.seed, sweep.dtype, sweep.device, sweep.checkpoint_steps, sweep.train_steps)
        for kind, found in (("cell", list(cells(sweep))), ("curve", curve_cells(sweep))):
            for cell in found:
                key = (kind, cell.problem.name, cell.estimator, cell.setting, cell.n_samples, how)
                if key not in seen:
                    if kind == "cell":
                        _check_memory(cell, sweep)
                    seen.add(key)
                    (plan.cells if kind == "cell" else plan.curves).append((cell, sweep))
    if not len(plan):
        raise SweepError("the sweep has no cells (an empty list of values?); nothing to run")
    return plan


def run(
    sweeps: Sweep | list[Sweep] | Plan,
    out: str | Path | None = None,
    progress: Callable[[Cell], None] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Run every cell of one or more sweeps; append rows to ``out`` as cells complete.

    Training curves, for problems that train, go to ``curves_path(out)``. ``out`` is held by
    this process alone while it runs (ResultsFileError for a second writer). An existing
    non-empty ``out`` is continued with ``resume``, replaced with ``overwrite``, and otherwise
    refused. With ``resume``, the cells (and curves) already complete in ``out`` are skipped
    and the rest appended; since every cell is seeded from its identity, the final table
    equals an uninterrupted run's. A resume whose options would change a completed cell is
    refused (ResumeError, see CONTENT_COLUMNS). Returns the rows computed by this call.
    """
    plan = sweeps if isinstance(sweeps, Plan) else make_plan(sweeps)
    if out is None:
        return _run(plan, None, progress, resume)
    with writer_lock(out):
        check_target(out, resume=resume, overwrite=overwrite)
        if plan.curves:
            check_target(curves_path(out), resume=resume, overwrite=overwrite, option="training file")
        return _run(plan, Path(out), progress, resume)


def _run(plan: Plan, out: Path | None, progress: Callable[[Cell], None] | None, resume: bool) -> list[dict[str, Any]]:
    done_cells: set[tuple] = set()
    done_curves: set[tuple] = set()
    if resume and out is not None:
        # refuse first, change nothing: both files are checked before either is rewritten
        planned = [_base_row(c, sw, 0) for c, sw in plan.cells]
        planned_curves = [_curve_base(c, sw) for c, sw in plan.curves]
        steps = {str(sw.train_steps) for _, sw in plan.curves}
        for path, columns, rows, content in ((out, COLUMNS, planned, CONTENT_COLUMNS),
                                             (curves_path(out), CURVE_COLUMNS, planned_curves, CURVE_CONTENT_COLUMNS)):
            if has_content(path):
                check_resumable(path, _whole(read_rows(path, columns)[2]), rows, content)
        done_cells = completed(out, COLUMNS, _row_cell_key, _cell_complete)
        done_curves = completed(curves_path(out), CURVE_COLUMNS, _row_curve_key,
                                lambda rs: rs[-1]["status"] != "ok" or rs[-1]["step"] in steps)
    todo, todo_curves = [], []
    for units, done, key, pending in ((plan.cells, done_cells, _cell_key, todo),
                                      (plan.curves, done_curves, _curve_key, todo_curves)):
        for cell, sw in units:
            if key(cell, sw) not in done:
                pending.append((cell, sw))
            elif progress is not None:  # what was already done counts as progress
                progress(cell)
    writer = ResultWriter(out, append=resume) if out is not None else None
    curve_writer = (ResultWriter(curves_path(out), CURVE_COLUMNS, append=resume)
                    if out is not None and plan.curves else None)
    rows: list[dict[str, Any]] = []
    prepared: tuple[Any, Any] = (None, None)  # (key, prepared data or the exception): one setting at a time
    reference: dict[tuple, dict[str, GradientStats]] = {}
    try:
        for cell, sweep in todo:
            ctx = sweep.context()
            key = (cell.problem.name, cell.setting, ctx)
            if prepared[0] != key:
                prepared = (None, None)
                try:
                    prepared = (key, cell.problem.prepare(cell.setting, ctx))
                except Exception as exc:  # a problem that cannot be set up fails its cells, not the sweep
                    prepared = (key, exc)
            cell_rows, stats = measure_cell(cell, sweep, prepared[1], ctx)
            ref_key = (*key, cell.n_samples, sweep.replicates)
            if stats is not None and cell.estimator == REFERENCE:
                reference[ref_key] = stats
            elif stats is not None and REFERENCE in sweep.estimator:
                if ref_key not in reference:  # done in an earlier run (--resume): recompute, same seed, same numbers
                    reference[ref_key] = measure_cell(Cell(cell.problem, REFERENCE, cell.setting, cell.n_samples),
                                                      sweep, prepared[1], ctx)[1]
                if reference[ref_key] is not None:
                    for row in cell_rows:
                        row["agreement_z"] = agreement_z(stats[row["parameter"]],
                                                         reference[ref_key][row["parameter"]])
            rows.extend(cell_rows)
            if writer is not None:
                writer.write(cell_rows)
            if progress is not None:
                progress(cell)
        prepared = (None, None)
        for cell, sweep in todo_curves:
            points = curve_rows(cell, sweep, sweep.context())
            if curve_writer is not None:
                curve_writer.write(points)
            if progress is not None:
                progress(cell)
    finally:
        for w in (writer, curve_writer):
            if w is not None:
                w.close()
    return rows


def n_failed(rows: list[dict[str, Any]]) -> int:
    return sum(1 for r in rows if r.get("status") == "failed")


__all__ = ["COLUMNS", "CURVE_COLUMNS", "CONTENT_COLUMNS", "Cell", "ChunkPlan", "Plan", "ResultWriter", "ResumeError",
           "ResultsFileError", "ResultsWriteError", "completed", "make_plan", "cell_seed", "cells", "curve_cells", "curves_path",
           "CellEngine", "estimate_cell", "measure_cell", "run", "run_cell", "n_failed", "sync"]
