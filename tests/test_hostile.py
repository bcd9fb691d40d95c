"""Hostile input (issue 30): files that lie, names that alias, plugins that misbehave. Each test
reproduces one adversarial input and checks that nothing is lost, mixed or misreported; the
one-line refusals are in tests/test_bad_inputs.py (and docs/bad-inputs.md)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

import estbench
from benchmarks.results_file import TIMING_COLUMNS, ResultsFileError, writer_lock
from estimators import Reinforce

COS = dict(sigma=1.0, replicates=20, seed=3)


def table(path: Path) -> list[tuple]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted(tuple((k, v) for k, v in sorted(r.items()) if k not in TIMING_COLUMNS) for r in rows)


class TwoLineFailure(Reinforce):
    """Fails with a message of two lines (and a comma and a quote): the results file quotes it across lines."""

    name = "test-two-line-failure"

    def surrogate(self, dist, f, n_samples, state=None):
        raise ValueError('first line, "quoted"\nsecond line')


def test_a_symbolic_link_takes_the_lock_of_the_file_it_names(tmp_path):
    real, link = tmp_path / "r.csv", tmp_path / "l.csv"
    real.write_text("")
    link.symlink_to(real.name)
    with writer_lock(real), pytest.raises(ResultsFileError, match="is being written by process"):
        with writer_lock(link):
            pass
    with writer_lock(link), pytest.raises(ResultsFileError, match="is being written by process"):
        with writer_lock(real):
            pass


def test_a_resume_through_a_symbolic_link_writes_the_file_and_keeps_the_link(tmp_path):
    real, link = tmp_path / "r.csv", tmp_path / "l.csv"
    link.symlink_to(real.name)
    estbench.run("gaussian-cos", "reinforce", out=link, **COS)
    blank = real.read_text() + "\r\n"
    real.write_text(blank)  # a blank line makes the resume rewrite the file: through the link, not over it
    df = estbench.run("gaussian-cos", ["reinforce", "reparameterization"], out=link, resume=True, **COS)
    assert link.is_symlink() and os.readlink(link) == real.name
    assert df.attrs["computed"] == 2 and len(df) == 4
    assert table(real) == table(link)


@pytest.mark.parametrize("junk", ["\r\n", "\n\n", "\r\r\n"], ids=["blank-crlf", "blank-lf", "cr-crlf"])
def test_a_resume_reads_blank_lines_and_values_with_line_breaks(tmp_path, junk):
    out = tmp_path / "r.csv"
    first = estbench.run("gaussian-cos", ["reinforce", TwoLineFailure()], out=out, **COS)
    assert (first["status"] == "failed").sum() == 2 and "second line" in first["error"].dropna().iloc[0]
    before = table(out)
    lines = out.read_bytes().split(b"\r\n")
    out.write_bytes(b"\r\n".join([*lines[:2], junk.encode().rstrip(b"\n").rstrip(b"\r"), *lines[2:]]) + junk.encode())
    again = estbench.run("gaussian-cos", ["reinforce", TwoLineFailure()], out=out, resume=True, **COS)
    assert again.attrs["computed"] == 0
    assert table(out) == before
    assert b"\r\r" not in out.read_bytes() and b"\n\r\n" not in out.read_bytes()
