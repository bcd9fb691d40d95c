"""Resuming a results file: which cells and curves it already holds, and whether this run
may continue it (a resume never mixes runs: CONTENT_COLUMNS and the estimators' origins)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .machine import estbench_version
from .results_file import ResultsFileError, atomic_write, read_text


class ResumeError(ValueError):
    """A results file that cannot be resumed (another version's columns, other options); the message
    names it and the differing option."""



def _atomic_rewrite(path: Path, header: str, lines: list[str]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(header)
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def _writer_version(lines: list[str]) -> str:
    """'estbench X' for the version a results file's first row records ('an unknown version' if none)."""
    try:
        first = next(csv.DictReader(lines[:2]))
    except (StopIteration, csv.Error):
        return "an unknown version"
    version = first.get("estbench_version")
    return f"estbench {version}" if version else "an unknown version"


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
        raise ResumeError(f"cannot resume {path}: its columns are not those this version writes (it was written by "
                          f"{_writer_version(lines)}, this is estbench {estbench_version()}); use a new --out file")
    body = [ln for ln in lines[1:] if ln.endswith("\n")]  # a torn last line has no line end
    rows = list(csv.DictReader([header, *body]))
    return header, body, rows, len(lines)


def whole(rows: list[dict]) -> list[dict]:
    """The rows with every column present (a row cut short by a kill has fewer)."""
    return [r for r in rows if None not in r and None not in r.values()]


def completed(path: Path, read: tuple[str, list[str], list[dict], int] | None, key: Callable[[dict], tuple],
              complete: Callable[[list[dict]], bool]) -> set[tuple]:
    """Keys of the completed units (cells, curves) in an existing results file, for --resume,
    from what ``read_rows`` read of it (None: no file, nothing completed).

    Rows are appended whole and flushed, so a kill can at worst leave a torn last line or a
    unit with some of its rows: both are dropped (the file is rewritten atomically without
    them) and those units are computed again.
    """
    if read is None:
        return set()
    header, body, rows, n_lines = read
    units: dict[tuple, list[dict]] = {}
    for r in whole(rows):
        units.setdefault(key(r), []).append(r)
    done = {k for k, rs in units.items() if complete(rs)}
    kept = [ln for ln, r in zip(body, rows, strict=True) if key(r) in done]
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
                        for c, h, p in zip(content, have, planned_values, strict=True) if h != p]
                raise ResumeError(
                    f"cannot resume {path}: its {r['problem']} rows were made with other options ("
                    + "; ".join(diff) + "); resume with the same options, or write to a new --out")
        if r["estimator"] in origins and r.get("estimator_origin", "") != origins[r["estimator"]]:
            raise ResumeError(
                f"cannot resume {path}: its rows of estimator {r['estimator']!r} come from "
                f"{r.get('estimator_origin') or '(unknown)'}, this run's from {origins[r['estimator']]}; "
                f"write to a new --out")
