"""Hostile input (issue 30): files that lie, names that alias, plugins that misbehave. Each test
reproduces one adversarial input and checks that nothing is lost, mixed or misreported; the
one-line refusals are in tests/test_bad_inputs.py (and docs/bad-inputs.md)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

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


def _misbehaving(label: str, act) -> Reinforce:
    """REINFORCE that first does ``act()`` (changes global state, raises, exits) in its surrogate."""

    class Misbehaving(Reinforce):
        name = f"test-{label}"

        def surrogate(self, dist, f, n_samples, state=None):
            act()
            return super().surrogate(dist, f, n_samples, state)

    return Misbehaving()


def _raise(exc: BaseException):
    def act():
        raise exc
    return act


MISBEHAVIOURS = {
    "grad-off": lambda: torch.set_grad_enabled(False),
    "float16": lambda: torch.set_default_dtype(torch.float16),
    "meta-device": lambda: torch.set_default_device("meta"),
    "one-thread": lambda: torch.set_num_threads(1),
    "reseeds": lambda: torch.manual_seed(12345),
    "anomaly": lambda: torch.autograd.set_detect_anomaly(True),
    "generator-exit": _raise(GeneratorExit("plugin said so")),
    "base-exception": _raise(type("PluginAbort", (BaseException,), {})("abort")),
    "os-exit": lambda: os._exit(0),
}


@pytest.fixture(scope="module")
def well_behaved(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("good") / "r.csv"
    estbench.run("gaussian-cos", ["reinforce", "reparameterization"], out=out, **COS, dim=[1, 3])
    return table(out)


@pytest.mark.parametrize("label", list(MISBEHAVIOURS))
def test_a_plugin_that_changes_global_state_fails_alone(tmp_path, well_behaved, label):
    """The misbehaving estimator runs first in each setting; the others' rows are those of a run without it,
    and torch's global state after the run is as it was before."""
    before = (torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_default_device(), torch.get_num_threads(),
              torch.is_anomaly_enabled(), torch.get_rng_state())
    out = tmp_path / "r.csv"
    bad = _misbehaving(label, MISBEHAVIOURS[label])
    df = estbench.run("gaussian-cos", [bad, "reinforce", "reparameterization"], out=out, **COS, dim=[1, 3])
    after = (torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_default_device(), torch.get_num_threads(),
             torch.is_anomaly_enabled(), torch.get_rng_state())
    assert before[:5] == after[:5] and torch.equal(before[5], after[5])
    good = df[df["estimator"] != bad.name]
    assert (good["status"] == "ok").all(), good[["estimator", "status", "error"]]
    assert [r for r in table(out) if dict(r)["estimator"] != bad.name] == well_behaved
    mine = df[df["estimator"] == bad.name]
    assert len(mine) == 4  # two settings x two parameters: a row each, nothing missing
    if label in ("generator-exit", "base-exception", "os-exit"):
        assert (mine["status"] == "failed").all()
        expected = {"generator-exit": "GeneratorExit: plugin said so", "base-exception": "PluginAbort: abort",
                    "os-exit": "called os._exit(0)"}[label]
        assert mine["error"].str.contains(expected, regex=False).all(), mine["error"].tolist()


def test_a_plugin_file_that_exits_at_import_is_one_line(tmp_path, capsys):
    from estbench.cli import main

    plugin = tmp_path / "exits.py"
    plugin.write_text("import os\nos._exit(0)\n")
    assert main(["list", "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "import failed" in err and "called os._exit(0)" in err, err


@pytest.mark.parametrize("column", ["bias_z", "variance_hi", "mse", "bias", "time_per_estimate_max_s", "machine"])
def test_a_report_of_a_file_without_a_figure_column_says_so(tmp_path, column):
    """A file cut down by hand (or by another tool) is reported, its missing figures blank and named in a note."""
    df = estbench.run("gaussian-cos", ["reinforce", "reparameterization"], **COS)
    path = tmp_path / "r.csv"
    df.drop(columns=[column]).to_csv(path, index=False)
    md = estbench.report(str(path), out=tmp_path / "rep").read_text()
    assert f"no column {column}" in md and "read as blank" in md
    md = estbench.report(df.drop(columns=[column]), out=tmp_path / "rep2").read_text()
    assert f"no column {column}" in md


@pytest.mark.parametrize("value", [[1, 2], None, 5, "x"[:0] or {"a": 1}])
def test_report_of_something_that_is_not_a_table_is_a_type_error(tmp_path, value):
    with pytest.raises(TypeError, match="estbench.report takes a results table"):
        estbench.report(value, out=tmp_path / "rep")
