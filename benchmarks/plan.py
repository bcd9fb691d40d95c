"""The plan of a run: its cells (problem x estimator x setting x n_samples) and training
curves, each with the sweep it came from, validated before any work (names, values, data
files, memory). A cell's seed comes from its identity, not its position in the plan."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import estimators

from . import problems
from .engine import PRECISION_MIN_REPLICATES
from .problems import Problem
from .schema import CELL_KEY, CONTENT_COLUMNS, CURVE_CONTENT_COLUMNS, CURVE_KEY, key_of, options_text
from .sweep import Sweep, SweepError


def cell_seed(seed: int, problem: str, estimator: str, setting: str, n_samples: int) -> int:
    """A 63-bit seed derived from the cell's identity, not its position in the sweep."""
    key = f"{seed}|{problem}|{estimator}|{setting}|{n_samples}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)





@dataclass
class Cell:
    problem: Problem
    estimator: str
    setting: Any
    n_samples: int
    #: the estimator's option values, ((name, value), ...), every declared option included
    options: tuple[tuple[str, Any], ...] = ()
    #: a training curve's seed index, 0 to train_seeds - 1 (cells: 0)
    train_seed: int = 0

    @property
    def estimator_key(self) -> str:
        """The estimator and its non-default option values: what seeds the cell and labels it."""
        cls = estimators.get_class(self.estimator)
        changed = {k: v for k, v in self.options if v != next(o.default[0] for o in cls.options if o.name == k)}
        return f"{self.estimator}({options_text(changed)})" if changed else self.estimator

    @property
    def label(self) -> str:
        seed = f"-train_seed={self.train_seed}" if self.train_seed else ""
        return f"{self.estimator_key}[{self.problem.name}-{self.problem.setting_label(self.setting)}-n={self.n_samples}{seed}]"

    @property
    def group(self) -> str:
        """A training curve's group, its label with the training seed left out: the same estimator, problem, setting
        and samples (the curves of one estimator that the progress lines time together)."""
        return replace(self, train_seed=0).label


def identity(cell: Cell, sweep: Sweep) -> dict[str, Any]:
    """The columns that identify a cell and its estimator's options (schema CELL_KEY and 'option')."""
    return {"problem": cell.problem.name, "estimator": cell.estimator, "estimator_options": options_text(cell.options),
            **dict(cell.options), **cell.problem.columns(cell.setting), "setting": cell.problem.setting_label(cell.setting),
            "n_samples": cell.n_samples, "confirmation": sweep.confirmation, "seed": sweep.seed, "dtype": sweep.dtype,
            "device": sweep.device}


def unit_key(cell: Cell, sweep: Sweep, curve: bool = False, reference: bool = False) -> tuple[str, ...]:
    """The one identity of a unit within a run, as the results file states it: the schema's cell key
    (CURVE_KEY for a training curve) and what decides its content (CONTENT_COLUMNS). ``reference``:
    the key of the problem's reference estimator's cell at the same setting."""
    row = {**identity(cell, sweep), "replicates": sweep.replicates, "precision": sweep.precision, "train_seed": cell.train_seed,
           **cell.problem.context_columns(sweep.context())}
    if reference:
        row.update(estimator=cell.problem.reference, estimator_options="")
    key = (*CURVE_KEY, *CURVE_CONTENT_COLUMNS) if curve else (*CELL_KEY, *CONTENT_COLUMNS)
    return ("curve" if curve else "cell", *key_of(row, key))


def _reference_first(names: list[str], reference: str) -> list[str]:
    return sorted(names, key=lambda n: n != reference)  # stable: otherwise the order given


def cells(sweep: Sweep) -> Iterator[Cell]:
    """Every cell of the sweep; within a setting the problem's reference estimator comes first."""
    for pname in sweep.problem:
        problem = problems.get(pname)
        for setting in problem.settings(sweep):
            for n in sweep.n_samples:
                for ename in _reference_first(sweep.estimator, problem.reference):
                    for opts in sweep.estimator_options(ename):
                        yield Cell(problem, ename, setting, n, tuple(opts.items()))


def curve_cells(sweep: Sweep) -> list[Cell]:
    """Training-curve tasks: train_seeds per problem that trains, curve setting, n_samples and estimator
    that can train there (Problem.curve_unsupported)."""
    if sweep.train_steps <= 0:
        return []
    out, seen = [], set()
    for pname in sweep.problem:
        problem = problems.get(pname)
        if not problem.trains:
            continue
        for setting in problem.settings(sweep):
            key = problem.curve_setting(setting)
            if (pname, key) in seen:
                continue
            seen.add((pname, key))
            for n in sweep.n_samples:
                for ename in _reference_first(sweep.estimator, problem.reference):
                    if problem.curve_unsupported(estimators.get_class(ename), key, n) is not None:
                        continue  # the cells of the same estimator are skipped rows, with the reason
                    for opts in sweep.estimator_options(ename):
                        out.extend(Cell(problem, ename, key, n, tuple(opts.items()), i) for i in range(sweep.train_seeds))
    return out


def training_seed(seed: int, train_seed: int) -> int:
    """The seed of a training curve (its model's initial weights, batch order and draws): the run's seed
    for the first, and one derived from the run's seed and the index for the others."""
    if train_seed == 0:
        return seed
    key = f"{seed}|train|{train_seed}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)



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
    outcomes = cell.problem.outcomes(cell.setting)
    enumerated = bool(outcomes and outcomes <= getattr(estimators.get_class(cell.estimator), "enumerates", 0))
    draws = outcomes if enumerated else cell.n_samples
    need = cell.problem.replicate_bytes(cell.setting, draws, sweep.context())
    have = memory_bytes()
    if have and need > have // 2:
        ints = ", ".join(a.name for a in cell.problem.axes if a.type is int)
        how, fix = (f"estimator {cell.estimator} evaluates f on all {outcomes} outcomes",
                    f"leave {cell.estimator} out, or use smaller values of its axes ({ints})") if enumerated else \
            (f"n_samples={cell.n_samples}", f"use smaller values of n_samples or of its axes ({ints})")
        raise SweepError(
            f"{cell.problem.name} at {cell.problem.setting_label(cell.setting)}, {how}, "
            f"{sweep.dtype}: one replicate needs about {need / 2**30:.3g} GiB, more than half of this machine's "
            f"{have / 2**30:.3g} GiB; {fix}")


#: a lower bound of one gradient estimate's time: the fastest cells measured (dim 1, 2 cores) take about 3 us
FASTEST_ESTIMATE_S = 1e-7
DAY_S = 86400


def check_duration(plan: Plan) -> None:
    """Refuse, before any work, a plan whose estimates alone would take more than a day even at
    FASTEST_ESTIMATE_S each (``--replicates`` given a few zeros too many); the message gives the estimate."""
    estimates = sum(min(sweep.replicates, PRECISION_MIN_REPLICATES) if sweep.precision is not None else sweep.replicates
                    for _, sweep in plan.cells)
    seconds = estimates * FASTEST_ESTIMATE_S
    if seconds > DAY_S:
        cells = f"{len(plan.cells)} cell{'s' if len(plan.cells) != 1 else ''}"
        raise SweepError(f"this run makes {estimates:.3g} gradient estimates in {cells}: at least "
                         f"{seconds / DAY_S:.3g} days at {FASTEST_ESTIMATE_S * 1e6:g} us each (the fastest cells take "
                         f"about 3 us); lower --replicates or the sweep, or add --force")


def problem_axes() -> list[str]:
    """The setting axes of every registered problem, in registration order (built-ins first):
    the middle columns of the results table."""
    out: list[str] = []
    for name in problems.available():
        out += [a.name for a in problems.get_class(name).axes if a.name not in out]
    return out


def estimator_option_names() -> list[str]:
    """The options of every registered estimator, in registration order, that are not also setting axes:
    the results table's option columns (after the axes)."""
    axes, out = set(problem_axes()), []
    for name in estimators.available():
        out += [o.name for o in estimators.get_class(name).options if o.name not in axes and o.name not in out]
    return out


def _check_bound_sizes(sweep: Sweep, found: list[Cell]) -> None:
    """An estimator that needs more samples K in a multi-sample bound than every K of the sweep gives it
    (vimco at K = 1) would only be skipped: SweepError, naming it. Where some K suits it, the others'
    cells are skipped rows with the reason."""
    for name in sweep.estimator:
        need = estimators.get_class(name).min_K
        ks = sorted({c.setting.K for c in found if c.estimator == name
                     and c.problem.objective == estimators.MULTI_SAMPLE})
        if ks and ks[-1] < need:
            raise SweepError(f"estimator {name!r} needs K >= {need} samples in the bound, got K={', '.join(map(str, ks))}"
                             f" (every K of the sweep); give --K {need} or more, or leave {name} out")


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
        found_cells = list(cells(sweep))
        _check_bound_sizes(sweep, found_cells)
        for kind, found in (("cell", found_cells), ("curve", curve_cells(sweep))):
            for cell in found:
                key = unit_key(cell, sweep, curve=kind == "curve")
                if key not in seen:
                    if kind == "cell":
                        _check_memory(cell, sweep)
                    seen.add(key)
                    (plan.cells if kind == "cell" else plan.curves).append((cell, sweep))
    if not len(plan):
        raise SweepError("the sweep has no cells (an empty list of values?); nothing to run")
    return plan

