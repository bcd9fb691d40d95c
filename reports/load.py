"""Reading a results file for the report: checked before anything is built, with the
defects a killed run can leave repaired by a stated rule. Imports no model code."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.results_file import curves_path
from benchmarks.schema import HEAD_COLUMNS, NAME, ROW_KEY, TAIL_COLUMNS

REQUIRED_COLUMNS = ("problem", "estimator", "parameter", "n_samples", "replicates", "seed", "variance",
                    "snr", "time_per_estimate_s", "status")
#: the results table's columns by type, as the schema declares them (setting axes and estimator options aside)
_FIXED = [*HEAD_COLUMNS, *TAIL_COLUMNS]
TEXT_COLUMNS = (*(c.name for c in _FIXED if c.type is str), "checkpoint")



class ResultsError(ValueError):
    """An unreadable or mismatched results file; the message names it."""


VALID_STATUS = ("ok", "failed", "skipped")
#: the kinds of problem the report reads, as the runner writes them (``problem_kind``)
KINDS = ("toy", "model")
#: results files written before ``problem_kind`` existed: the kind from the name's prefix
LEGACY_PREFIXES = {"gaussian-": "toy", "vae-": "model"}
#: columns that hold numbers where they are filled (a setting axis holds numbers, numbers joined
#: by ';' one per coordinate, or text: whatever its problem declared)
NUMERIC_COLUMNS = tuple(c.name for c in _FIXED if c.type in (int, float))


def setting_axes(label: Any) -> list[str]:
    """The axis names in a setting label ('mu=1.0,sigma=0.5,k=1.0,dim=1' -> mu, sigma, k, dim)."""
    return re.findall(r"(?:^|,)(\w+)=", label) if isinstance(label, str) else []


def axes(df: pd.DataFrame, problems: Any = None) -> list[str]:
    """The setting axes of the given problems' rows (all rows: every problem), in column order."""
    rows = df if problems is None else df[df["problem"].isin([problems] if isinstance(problems, str) else problems)]
    names = {a for label in rows["setting"].dropna().unique() for a in setting_axes(label)} if "setting" in rows else set()
    return [c for c in df.columns if c in names]


def option_columns(df: pd.DataFrame) -> list[str]:
    """The estimator-option columns (``temperature``, ...): the schema's middle columns that no row's setting
    names and some row fills, as read from the file (``df.attrs["options"]``, which read_results and
    reports.tables.add_derived keep: the derived columns, efficiency and the ratios, are not options)."""
    if "options" in df.attrs:
        return [c for c in df.attrs["options"] if c in df]
    fixed = {c.name for c in _FIXED} | {"estimator_name"}
    named = set(axes(df))
    return [c for c in df.columns if c not in fixed and c not in named and df[c].notna().any()]


def _legacy_option_columns(df: pd.DataFrame, opts: pd.Series) -> pd.DataFrame:
    """Files written before each option had its column (0.1.0): the columns from the readable label."""
    pairs = opts.str.findall(r"(\w+)=([^,]*)")
    for name in dict.fromkeys(k for row in pairs for k, _ in row):
        df[name] = [_number_or_text(dict(row).get(name, "")) if dict(row).get(name) is not None else None
                    for row in pairs]
    return df




def _bad(path: Path, line: int, column: str, what: str) -> ResultsError:
    return ResultsError(f"results file {path}, line {line}, column {column}: {what}")


def _shown(value: Any) -> str:
    """A value quoted for an error message, cut short (a corrupted cell can be very long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_results(path: str | Path, notes: list[str] | None = None) -> pd.DataFrame:
    """Read and check a results file; ResultsError (one line naming the line and column) for
    anything the report cannot use.

    Two defects are repaired, by a documented rule, and described in ``notes``: a torn last
    line (a run killed while writing it) is dropped; a duplicated row (same problem,
    estimator, parameter, setting, n_samples, replicates, seed, dtype and device) keeps its
    first occurrence."""
    path = Path(path)
    notes = [] if notes is None else notes
    if path.exists() and not path.is_dir() and not path.is_file():
        raise ResultsError(f"results file {path} is not a regular file (a device or a pipe; a results file must be one)")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"results file {path} does not exist") from None
    except IsADirectoryError:
        raise ResultsError(f"results file {path} is a directory") from None
    except UnicodeDecodeError:
        raise ResultsError(f"results file {path} is not a readable CSV (binary content)") from None
    except OSError as exc:
        raise ResultsError(f"cannot read results file {path}: {exc.strerror}") from None
    if "\0" in text:
        raise ResultsError(f"results file {path}, line {text.count(chr(10), 0, text.index(chr(0))) + 1}: NUL bytes, so "
                           f"the file is corrupted; rebuild from an intact copy")
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith("\n"):
        notes.append(f"dropped the torn last line {len(lines)} of {path.name} (a run stopped while writing it)")
        text = "".join(lines[:-1])
    try:
        df = pd.read_csv(io.StringIO(text), dtype={c: "string" for c in TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ResultsError(f"results file {path} is not a readable CSV ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(
            f"results file {path} is not an estbench results table: missing columns {', '.join(missing)}"
        )
    if df.empty:
        raise ResultsError(f"results file {path} has no rows")
    _check_rows(path, df)
    df, absent = _blank_missing(df)
    for c in ("seed", "dtype", "device"):  # one run: a report's rankings compare cells of one seed, dtype, device
        values = df[c].dropna().unique() if c in df else []
        if len(values) > 1:
            shown = ", ".join(map(str, sorted(values, key=lambda v: (str(type(v)), v))[:4])) + (" ..." if len(values) > 4 else "")
            raise ResultsError(f"results file {path} holds rows of {len(values)} runs ({c} {shown}); a report describes "
                               f"one run: give the rows of one {c} (df[df['{c}'] == ...] in pandas)")
    key = [c for c in ROW_KEY if c in df.columns]
    dup = df.duplicated(subset=key, keep="first")
    if dup.any():
        first = int(dup.to_numpy().nonzero()[0][0]) + 2
        notes.append(f"dropped {int(dup.sum())} duplicated rows of {path.name} (the first from line {first}); "
                     f"the first occurrence of each row is kept")
        df = df[~dup].reset_index(drop=True)
    df["error"] = df["error"].fillna("").astype(object) if "error" in df else ""
    for axis in axes(df):  # numbers stay numbers; per-coordinate settings stay text ("0.5;1.0")
        if not pd.api.types.is_numeric_dtype(df[axis]):
            df[axis] = df[axis].map(_number_or_text)
    df["estimator_name"] = df["estimator"].astype(object)  # the registered name; ``estimator`` is the label
    if "estimator_options" in df:  # an estimator run with several option values: one line per value
        opts = df["estimator_options"].fillna("").astype(str)
        several = df.assign(_o=opts).groupby("estimator")["_o"].transform("nunique") > 1
        df["estimator"] = df["estimator"].where(~several, df["estimator"] + "(" + opts + ")")
        if not option_columns(df) and opts.str.contains("=").any():
            df = _legacy_option_columns(df, opts)
    for c in TEXT_COLUMNS:
        if c in df and c != "error":
            df[c] = df[c].astype(object)
    df.attrs["notes"] = notes
    df.attrs["absent"] = absent
    df.attrs["options"] = option_columns(df)
    return df


#: an interval's two ends: a file with one of them is read as having neither
_PAIRS = [(f"{c}_lo", f"{c}_hi") for c in ("variance", "total_variance", "snr", "time_per_estimate", "mse")] + [
    ("time_per_estimate_min_s", "time_per_estimate_max_s")]
#: figures a report shows that a file may lack (written by hand, or cut down): read as blank, with a note
_FIGURES = ("mean", "true_grad", "bias", "bias_z", "mse", "agreement_z", "total_variance", "variance_se")
_TEXT = ("machine", "dtype", "device", "estbench_version", "torch_version", "python_version", "reference", "error")


def _blank_missing(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Columns of the results schema that a report reads but this file lacks (an older version's, or cut down):
    an interval with one end missing is dropped, a figure or a provenance column is read as blank. Returns the
    table and the columns it lacked (the report names them)."""
    blank = []
    for lo, hi in _PAIRS:
        if (lo in df) != (hi in df):
            blank.append(hi if lo in df else lo)
            df = df.drop(columns=[lo if lo in df else hi])
    for c in (*_FIGURES, *_TEXT):
        if c not in df:
            df[c] = math.nan if c in _FIGURES else ""
            blank.append(c)
    return df, blank


def _check_rows(path: Path, df: pd.DataFrame) -> None:
    """Problem names, status values, numbers and variances, each error naming its line (header = line 1)."""
    line = lambda i: int(i) + 2  # noqa: E731
    problem = df["problem"].fillna("")
    if "problem_kind" in df.columns:
        kind = df["problem_kind"].fillna("").astype(str)
        unknown = ~kind.isin(KINDS)
        if unknown.any():
            i = unknown.idxmax()
            raise _bad(path, line(i), "problem_kind", f"unknown kind {_shown(kind[i])} of problem {_shown(problem[i])}; "
                       f"this report reads: {', '.join(KINDS)}")
    else:  # written before problem_kind: the built-in problems' names say it
        kind = problem.map(lambda p: next((k for pre, k in LEGACY_PREFIXES.items() if p.startswith(pre)), ""))
        unknown = kind == ""
        if unknown.any():
            i = unknown.idxmax()
            raise _bad(path, line(i), "problem", f"unknown problem {_shown(problem[i])} in a file without "
                       f"problem_kind; this report reads the {', '.join(p + '*' for p in LEGACY_PREFIXES)} problems")
        df["problem_kind"] = kind
    for c in ("problem", "estimator"):
        bad = ~df[c].fillna("").astype(str).map(lambda v: bool(NAME.fullmatch(v)))
        if bad.any():
            i = bad.idxmax()
            raise _bad(path, line(i), c, f"{_shown(df[c][i])} is not a valid {c} name (letters, digits and . _ : + - only, "
                       f"starting with a letter or digit; so no name reaches a spreadsheet, Markdown or HTML as code)")
    if "setting" not in df.columns:
        raise ResultsError(f"results file {path} has no column setting (each row's setting, as 'axis=value,...')")
    for i, label in df["setting"].items():
        absent = [a for a in setting_axes(label) if a not in df.columns]
        if absent:
            raise ResultsError(f"results file {path} has {problem[i]} rows with a setting of {', '.join(absent)} "
                               f"but no column {', '.join(absent)}")
    status = df["status"].fillna("")
    odd = ~status.isin(VALID_STATUS)
    if odd.any():
        i = odd.idxmax()
        raise _bad(path, line(i), "status", f"unknown status {_shown(status[i])}; valid: {', '.join(VALID_STATUS)}")
    for c in (c for c in NUMERIC_COLUMNS if c in df.columns):
        raw = df[c]
        if pd.api.types.is_numeric_dtype(raw):
            continue
        num = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & num.isna() & ~raw.astype(str).str.strip().str.lower().isin(("nan", "inf", "-inf", ""))
        if bad.any():
            i = bad.idxmax()
            raise _bad(path, line(i), c, f"{_shown(raw[i])} is not a number")
        df[c] = num
    for c in axes(df):  # an axis holding numbers in some rows holds numbers (or per-coordinate numbers) in all
        values = df[c].dropna()
        if values.empty or pd.api.types.is_numeric_dtype(values):
            continue
        parsed = values.map(lambda v: all(_number_or_text(x) != x for x in str(v).split(";")))
        if parsed.any() and not parsed.all():
            i = (~parsed).idxmax()
            raise _bad(path, line(i), c, f"{_shown(values[i])} is not a number (or numbers joined by ';')")
    ok = status == "ok"
    for c in ("variance", "total_variance"):
        if c not in df.columns:
            continue
        v = df[c]
        nan, neg = ok & v.isna(), ok & (v < 0)
        if nan.any():
            raise _bad(path, line(nan.idxmax()), c, f"no {c} (NaN) in a row whose status is ok")
        if neg.any():
            i = neg.idxmax()
            raise _bad(path, line(i), c, f"negative {c} {v[i]:g}; a variance is >= 0")


def _number_or_text(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def read_training(results: str | Path) -> pd.DataFrame | None:
    path = curves_path(results)
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ResultsError(f"training file {path} is not a readable CSV ({exc})") from None
    if df.empty:
        return None
    if "K" in df:  # a bound's curves, labelled by what they train on: the K-sample bound, or the ELBO beside it
        on_elbo = df["objective"].eq("expectation") & df["K"].notna() if "objective" in df else False
        several = (df.groupby("problem")["K"].transform("nunique") > 1) & ~on_elbo
        k = df["K"].map(lambda v: f"{v:g}" if pd.notna(v) else "")
        draws = (df["n_samples"] * df["K"]).map(lambda v: f"{v:g}" if pd.notna(v) else "")
        df["estimator"] = df["estimator"].where(~several, df["estimator"] + " (K=" + k + ")")
        df["estimator"] = df["estimator"].where(~on_elbo, df["estimator"] + " (ELBO, " + draws + " draws)")
    return df
