"""Resuming a results file: which cells and curves it already holds, and whether this run
may continue it (a resume never mixes runs: CONTENT_COLUMNS and the estimators' origins)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .machine import estbench_version
from .results_file import ResultsFileError, atomic_write, read_text
from .schema import CHECKSUM, row_checksum


class ResumeError(ValueError):
    """A results file that cannot be resumed (another version's columns, other options); the message
    names it and the differing option."""



def _serialized(columns: list[str], rows: list[dict]) -> str:
    """Rows as ResultWriter writes them (csv's own quoting and line ends)."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _atomic_rewrite(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def _writer_version(text: str) -> str:
    """'estbench X' for the version a results file's first row records ('an unknown version' if none)."""
    try:
        first = next(csv.DictReader(io.StringIO(text, newline="")))
    except (StopIteration, csv.Error):
        return "an unknown version"
    version = first.get("estbench_version")
    return f"estbench {version}" if version else "an unknown version"


@dataclass
class Read:
    """What ``read_rows`` read of a results file: its columns, its rows (blank lines left out; a torn
    last line too) and its text, to tell whether dropping rows would change it."""

    columns: list[str]
    rows: list[dict]
    text: str
    lines: list[int]  # the line each row ends on


def verify(path: Path, read: Read, key: tuple[str, ...]) -> None:
    """ResumeError, naming the first bad line, for a row of ``read`` that does not match its checksum (a value
    edited by hand, a status changed, a damaged file) or repeats an earlier row's ``key`` (a row copied). Rows cut
    short by a kill are not checked: the resume drops them."""
    seen: dict[tuple, int] = {}
    for row, line in zip(read.rows, read.lines, strict=True):
        if None in row or None in row.values():
            continue
        if read.columns[-1] == CHECKSUM and row[CHECKSUM] != row_checksum(row[c] for c in read.columns[:-1]):
            raise ResumeError(f"cannot resume {path}: line {line} ({row.get('problem')}, {row.get('estimator')}) does "
                              f"not match its row_checksum, so it was edited or damaged after it was written; restore "
                              f"the file, or write to a new --out")
        k = tuple(row.get(c) for c in key)
        if k in seen:
            what = ", ".join(str(row.get(c)) for c in ("problem", "estimator", "parameter", "step") if row.get(c))
            raise ResumeError(f"cannot resume {path}: line {line} repeats line {seen[k]} ({what}), "
                              f"a row written twice or copied; restore the file, or write to a new --out")
        seen[k] = line


def read_rows(path: Path, columns: list[str]) -> Read:
    """The rows of an existing results file written by this version; ResumeError for anything else.

    Read as the csv module writes (a value may hold a quoted line break, a line may end in \\r\\n);
    blank lines are skipped and a torn last line (no line end) is left out."""
    try:
        text = read_text(path, newline="")
    except ResultsFileError as exc:
        raise ResumeError(f"cannot resume: {exc}") from None
    if "\0" in text:
        raise ResumeError(f"cannot resume {path}: it holds NUL bytes, so it is corrupted (written by two processes "
                          f"at once by an older version?); write to a new --out")
    body = text if text.endswith(("\n", "\r")) else text[:max(text.rfind("\n"), text.rfind("\r")) + 1]
    try:
        stream = io.StringIO(body, newline="")
        header = next(csv.reader(stream), [])
        if header != columns:
            raise ResumeError(f"cannot resume {path}: its columns are not those this version writes (it was written "
                              f"by {_writer_version(text)}, this is estbench {estbench_version()}); use a new --out file")
        reader = csv.DictReader(stream, fieldnames=columns)  # blank lines skipped; short rows hold None
        rows, lines = [], []
        for row in reader:
            rows.append(row)
            lines.append(1 + reader.line_num)  # the line the row ends on (the header is line 1)
    except csv.Error as exc:
        raise ResumeError(f"cannot resume {path}: it is not a readable CSV table ({exc}); write to a new --out") from None
    return Read(columns, rows, text, lines)


def whole(rows: list[dict]) -> list[dict]:
    """The rows with every column present (a row cut short by a kill has fewer)."""
    return [r for r in rows if None not in r and None not in r.values()]


def completed(path: Path, read: Read | None, key: Callable[[dict], tuple],
              complete: Callable[[list[dict]], bool]) -> set[tuple]:
    """Keys of the completed units (cells, curves) in an existing results file, for --resume,
    from what ``read_rows`` read of it (None: no file, nothing completed).

    Rows are appended whole and flushed, so a kill can at worst leave a torn last line or a
    unit with some of its rows: both are dropped (the file is rewritten atomically without
    them, and without blank lines) and those units are computed again.
    """
    if read is None:
        return set()
    units: dict[tuple, list[dict]] = {}
    for r in whole(read.rows):
        units.setdefault(key(r), []).append(r)
    done = {k for k, rs in units.items() if complete(rs)}
    kept = [r for r in whole(read.rows) if key(r) in done]
    text = _serialized(read.columns, kept)
    if text != read.text:
        _atomic_rewrite(path, text)
    return done


def _text(value: Any) -> str:
    """A value as the csv module writes it."""
    return "" if value is None else str(value)


def check_resumable(path: Path, rows: list[dict], planned: list[dict[str, Any]], content: tuple[str, ...]) -> None:
    """Raise ResumeError if the file's ``rows`` of a problem the plan also runs were made with
    other values of the ``content`` options than the ``planned`` rows, or its rows of an estimator
    the plan also runs came from another origin (another plugin file, or another version of it); the same for
    its problems' origins (a problem plugin file, module or Python object whose code changed)."""
    want: dict[str, set[tuple]] = {}
    origins: dict[str, str] = {}
    problem_origins: dict[str, str] = {}
    for row in planned:  # a report's confirmation reruns (more replicates) are compared with confirmations only
        want.setdefault((row["problem"], _text(row.get("confirmation"))), set()).add(tuple(_text(row.get(c)) for c in content))
        origins[row["estimator"]] = _text(row.get("estimator_origin"))
        problem_origins[row["problem"]] = _text(row.get("problem_origin"))
    for r in rows:
        group = (r["problem"], r.get("confirmation", ""))
        if group in want:
            have = tuple(r.get(c, "") for c in content)
            if have not in want[group]:
                planned_values = sorted(want[group])[0]
                diff = [f"{c}={h or '(none)'} in the file, {c}={p or '(none)'} in this run"
                        for c, h, p in zip(content, have, planned_values, strict=True) if h != p]
                raise ResumeError(
                    f"cannot resume {path}: its {r['problem']} rows were made with other options ("
                    + "; ".join(diff) + "); resume with the same options, or write to a new --out")
        if r["problem"] in problem_origins and r.get("problem_origin", "") != problem_origins[r["problem"]]:
            raise ResumeError(
                f"cannot resume {path}: its rows of problem {r['problem']!r} come from "
                f"{r.get('problem_origin') or '(unknown)'}, this run's from {problem_origins[r['problem']]}; "
                f"write to a new --out")
        if r["estimator"] in origins and r.get("estimator_origin", "") != origins[r["estimator"]]:
            raise ResumeError(
                f"cannot resume {path}: its rows of estimator {r['estimator']!r} come from "
                f"{r.get('estimator_origin') or '(unknown)'}, this run's from {origins[r['estimator']]}; "
                f"write to a new --out")
