"""The results schema: every column of the results table and the training table, declared once
with its type and role. Torch-free: the runner (rows, resume) and the report (reading, tables.csv)
both import it.

Roles:

- ``key``: what identifies a cell (CELL_KEY) or a row (ROW_KEY, the cell and its parameter group);
- ``axis``: a problem's setting axis (declared by the problem, estimators.Option);
- ``option``: an estimator's option (declared by the estimator): one column each, with
  ``estimator_options`` as the readable label of all of them;
- ``content``: a run-wide option that decides what a completed cell holds (a resume with other
  values is refused);
- ``statistic``: what the cell measured (variance, bias z, ...);
- ``timing``: how long, on what machine, under what load: varies from run to run of the same
  command; every other column is reproducible bit for bit from the seed;
- ``provenance``: where the code came from (versions, origins) and how the cell was run.

A row with a key that is not a column is an error (SchemaError), not dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("key", "axis", "option", "content", "statistic", "timing", "provenance")

#: what an estimator's or a problem's name may be (estimators.registry.NAME, checked at registration): the report
#: refuses a results file whose names are not, so no name reaches a spreadsheet, Markdown or HTML as code
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
_NUMBERS = re.compile(r"[-+0-9.eE;infaINFA ]*")


def csv_safe(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text: text that begins with = @ + - (a formula to a
    spreadsheet), a tab or a carriage return gets a leading apostrophe, unless it is numbers ('-1.5', '-1;2')."""
    if isinstance(value, str) and value[:1] in ("=", "@", "+", "-", "\t", "\r") and not _NUMBERS.fullmatch(value):
        return "'" + value
    return value


#: the last column of both tables: a checksum of the row's other values as written (``row_checksum``)
CHECKSUM = "row_checksum"


def row_checksum(values: Iterable[Any]) -> str:
    """The checksum of a row's values (every column but the checksum, in order) as the csv module writes them:
    a resume refuses a row whose values no longer match it (edited by hand, damaged)."""
    text = "\x1f".join("" if v is None else str(v) for v in values)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class SchemaError(ValueError):
    """A row that does not fit the schema (a key that is not a column); the message names it."""


@dataclass(frozen=True)
class Column:
    name: str
    type: type  # str, int, float or bool
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"column {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")


def _cols(role: str, type_: type, names: str) -> list[Column]:
    return [Column(n, type_, role) for n in names.split()]


#: the results table, before the setting axes and estimator options (which problems and estimators declare)
HEAD_COLUMNS = [*_cols("key", str, "problem"), *_cols("provenance", str, "problem_kind"),
                *_cols("key", str, "estimator estimator_options parameter")]
TAIL_COLUMNS = [
    *_cols("content", int, "checkpoint_steps train_steps"), *_cols("key", int, "n_samples"),
    *_cols("statistic", float, "f_evals"), *_cols("key", int, "replicates"), *_cols("statistic", int, "replicates_used"),
    *_cols("key", bool, "confirmation"),  # a rerun of a cell flagged biased near the threshold, with 10x its replicates
    *_cols("content", float, "precision"), *_cols("key", int, "seed"),
    *_cols("statistic", float, "mean variance variance_se variance_lo variance_hi"),
    *_cols("statistic", str, "variance_note exact_reason"),
    *_cols("statistic", float, "total_variance total_variance_lo total_variance_hi true_grad bias bias_z mse mse_lo mse_hi snr "
                               "snr_lo snr_hi agreement_z"),
    *_cols("statistic", str, "reference reference_estimator"),
    *_cols("timing", float, "time_per_estimate_s time_per_estimate_min_s time_per_estimate_max_s"),
    *_cols("provenance", bool, "compiled"), *_cols("timing", float, "compile_time_s"),
    *_cols("statistic", str, "status error"), *_cols("key", str, "setting"), *_cols("provenance", int, "cell_seed"),
    *_cols("key", str, "dtype device"),
    *_cols("content", str, "estbench_version"),
    *_cols("provenance", str, "estimator_origin problem_origin estimator_note counterpart estimator_unbiased "
                                  "torch_version python_version"),
    *_cols("timing", str, "machine"), *_cols("timing", float, "load_avg matmul_gflops"), *_cols("timing", str, "host"),
    *_cols("timing", int, "threads concurrent_cells"), *_cols("timing", float, "cell_time_s"),
    *_cols("timing", str, "row_checksum"),  # of every column before it, so it varies from run to run as they do
]
#: the training-curve table, around the setting axes and estimator options
CURVE_HEAD_COLUMNS = _cols("key", str, "problem estimator estimator_options")
CURVE_TAIL_COLUMNS = [
    *_cols("key", int, "n_samples seed train_seed"), *_cols("content", int, "train_steps"),
    *_cols("key", str, "dtype device setting"),
    *_cols("statistic", int, "step"), *_cols("timing", float, "wall_time_s"), *_cols("statistic", float, "elbo_train elbo_test"),
    *_cols("provenance", str, "objective"), *_cols("statistic", str, "status error"), *_cols("content", str, "estbench_version"),
    *_cols("provenance", str, "estimator_origin problem_origin"), *_cols("timing", str, "row_checksum"),
]

#: the ``reference`` column's value where the truth is a Monte Carlo reference with its standard error
#: (Problem.true_gradient_se) rather than exact ("exact") or a reference estimator's mean ("mean of X")
MONTE_CARLO_REFERENCE = "high-precision Monte Carlo reference"
#: what identifies a cell: two rows of one parameter group with the same values are one row twice
CELL_KEY = ("problem", "estimator", "estimator_options", "setting", "n_samples", "replicates", "confirmation", "seed", "dtype",
            "device")
ROW_KEY = (*CELL_KEY, "parameter")
#: what identifies a training curve (its points differ by step)
CURVE_KEY = ("problem", "estimator", "estimator_options", "setting", "n_samples", "seed", "train_seed")


class Schema:
    """The columns of one table, in order, with their types and roles."""

    def __init__(self, columns: Iterable[Column]):
        self.columns: dict[str, Column] = {}
        for c in columns:
            self.columns.setdefault(c.name, c)  # an axis and an option of one name share a column
        self.names = list(self.columns)

    def of_role(self, *roles: str) -> tuple[str, ...]:
        return tuple(n for n, c in self.columns.items() if c.role in roles)

    def check(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """``row`` itself; SchemaError naming any key that is not a column."""
        unknown = [k for k in row if k not in self.columns]
        if unknown:
            raise SchemaError(f"a row has {'a key' if len(unknown) == 1 else 'keys'} that the results schema does not "
                              f"declare: {', '.join(map(repr, unknown))}; its columns: {', '.join(self.names)}")
        return row

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.names == other.names


def results_schema(axes: Iterable[str], options: Iterable[str] = ()) -> Schema:
    """The results table: HEAD_COLUMNS, the setting axes, the estimator options, TAIL_COLUMNS."""
    middle = [Column(a, str, "axis") for a in axes] + [Column(o, str, "option") for o in options]
    return Schema([*HEAD_COLUMNS, *middle, *TAIL_COLUMNS])


def curve_schema(axes: Iterable[str], options: Iterable[str] = ()) -> Schema:
    middle = [Column(a, str, "axis") for a in axes] + [Column(o, str, "option") for o in options]
    return Schema([*CURVE_HEAD_COLUMNS, *middle, *CURVE_TAIL_COLUMNS])


def key_of(row: Mapping[str, Any], key: tuple[str, ...] = CELL_KEY) -> tuple[str, ...]:
    """A row's key as text, as the csv module writes and reads it: the one identity of a cell
    (CELL_KEY), row (ROW_KEY) or curve (CURVE_KEY) used by resume, the report and the runner."""
    return tuple("" if row.get(c) is None else str(row.get(c)) for c in key)


def options_text(options: Mapping[str, Any] | tuple) -> str:
    """Estimator option values as the readable ``estimator_options`` label: 'temperature=0.5,decay=0.9'."""
    return ",".join(f"{k}={v}" for k, v in dict(options).items())


#: the columns that vary from run to run of the same command
TIMING_COLUMNS = tuple(c.name for c in TAIL_COLUMNS if c.role == "timing")
#: the options that decide what a completed cell (or curve) holds, compared by --resume
CONTENT_COLUMNS = ("replicates", "precision", "seed", "dtype", "device",
                   *(c.name for c in TAIL_COLUMNS if c.role == "content" and c.name != "precision"))
CURVE_CONTENT_COLUMNS = ("seed", "dtype", "device", *(c.name for c in CURVE_TAIL_COLUMNS if c.role == "content"))
