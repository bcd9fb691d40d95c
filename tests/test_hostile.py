"""Hostile input (issue 30): files that lie, names that alias, plugins that misbehave. Each test
reproduces one adversarial input and checks that nothing is lost, mixed or misreported; the
one-line refusals are in tests/test_bad_inputs.py (and docs/bad-inputs.md)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
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
    note = "a note of\ntwo lines, with a comma"

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
    assert "a note of\ntwo lines, with a comma" in set(first["estimator_note"].dropna())
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


CUT = ["bias_z", "variance_hi", "mse", "bias", "time_per_estimate_max_s", "machine"]


@pytest.mark.slow
def test_a_report_of_a_file_without_figure_columns_says_so(tmp_path):
    """A file cut down by hand (or by another tool) is reported, its missing figures blank and named."""
    df = estbench.run("gaussian-cos", ["reinforce", "reparameterization"], **COS)
    path = tmp_path / "r.csv"
    df.drop(columns=CUT).to_csv(path, index=False)
    md = estbench.report(str(path), out=tmp_path / "rep").read_text()
    assert "no column variance_hi, time_per_estimate_max_s, bias, bias_z, mse, machine (an older" in md, md
    md = estbench.report(df.drop(columns=CUT), out=tmp_path / "rep2").read_text()
    assert "no column variance_hi, time_per_estimate_max_s, bias, bias_z, mse, machine (an older" in md


@pytest.mark.parametrize("column", CUT)
def test_a_missing_figure_column_is_read_as_blank(tmp_path, column):
    from reports.load import read_results
    from reports.tables import add_derived

    df = estbench.run("gaussian-cos", ["reinforce"], **COS)
    df.drop(columns=[column]).to_csv(tmp_path / "r.csv", index=False)
    read = add_derived(read_results(tmp_path / "r.csv"))
    pair = {"variance_hi": "variance_lo", "time_per_estimate_max_s": "time_per_estimate_min_s"}
    assert read.attrs["absent"] == [column]
    if column in pair:  # an interval with one end is read as none
        assert column not in read and pair[column] not in read
    else:
        assert (read[column] == "").all() if column == "machine" else read[column].isna().all()


@pytest.mark.parametrize("value", [[1, 2], None, 5, "x"[:0] or {"a": 1}])
def test_report_of_something_that_is_not_a_table_is_a_type_error(tmp_path, value):
    with pytest.raises(TypeError, match="estbench.report takes a results table"):
        estbench.report(value, out=tmp_path / "rep")


FORMULA = "=cmd|' /C calc'!A0"
SCRIPT = "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize("name", [FORMULA, SCRIPT, "two\nlines", "tab\there", "-starts-with-dash", "", "a" * 65])
def test_a_plugin_name_outside_the_character_set_is_refused_at_registration(tmp_path, capsys, name):
    from estbench.cli import main

    plugin = tmp_path / "named.py"
    plugin.write_text(f"from estimators import Reinforce\n\nclass Named(Reinforce):\n    name = {name!r}\n")
    assert main(["list", "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "is not a valid name" in err or "non-empty string" in err, err


def test_names_are_checked_by_the_same_rule_where_they_are_registered_and_where_they_are_read():
    from benchmarks.schema import NAME as READ
    from estimators.registry import NAME as REGISTERED

    assert READ.pattern == REGISTERED.pattern


def test_text_from_a_plugin_reaches_no_spreadsheet_or_page_as_code(tmp_path):
    """A plugin's error text that is a formula or HTML: results.csv and tables.csv hold it as text (a leading
    apostrophe), report.md shows it escaped; numbers that begin with a sign are left alone."""
    from estimators import EstimatorError

    class Formula(Reinforce):
        name = "test-formula"

        def surrogate(self, dist, f, n_samples, state=None):
            raise EstimatorError(FORMULA + " " + SCRIPT)

    out = tmp_path / "r.csv"
    estbench.run("gaussian-cos", ["reinforce", Formula()], out=out, mu=-1.5, **COS)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    errors = [r["error"] for r in rows if r["estimator"] == "test-formula"]
    assert errors and all(e.startswith("'=cmd") for e in errors), errors
    assert {r["mu"] for r in rows} == {"-1.5"}
    md = estbench.report(str(out), out=tmp_path / "rep").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "<img" not in md
    with open(tmp_path / "rep" / "tables.csv", newline="") as fh:
        for row in csv.reader(fh):
            assert not any(v[:1] in ("=", "@") for v in row), row


@pytest.mark.parametrize("name", [FORMULA, SCRIPT])
def test_a_results_file_with_a_name_that_is_code_is_refused_by_the_report(tmp_path, capsys, name):
    from estbench.cli import main

    df = estbench.run("gaussian-cos", ["reinforce"], **COS)
    df.loc[0, "estimator"] = name
    df.to_csv(tmp_path / "r.csv", index=False)
    assert main(["report", "--results", str(tmp_path / "r.csv"), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "line 2, column estimator" in err and "is not a valid estimator name" in err, err


@pytest.mark.parametrize("value", ["=1+1", "@SUM(A1)", "+x", "bell\x07"])
def test_a_text_option_value_that_is_code_is_refused(value):
    from estimators.options import Option, OptionError

    with pytest.raises(OptionError, match="is not a valid value"):
        Option("copula", str, ("gaussian",)).coerce(value)


def test_the_readme_states_the_limits_of_exact_that_the_code_enforces():
    import math

    from estimators.discrete import MAX_EVALUATIONS, MAX_OUTCOMES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("| `exact` |"))
    assert f"at most 2^{int(math.log2(MAX_OUTCOMES))} outcomes" in line
    assert f"outcomes x batch <= 2^{int(math.log2(MAX_EVALUATIONS))} evaluations of f per call" in line


def test_force_lets_through_what_is_refused_as_a_likely_mistake():
    from benchmarks.cluster import WORKERS_PER_CORE, ClusterError, ClusterSpec
    from benchmarks.sweep import SweepError
    from estbench.api import _plan, sweep

    many = WORKERS_PER_CORE * (os.cpu_count() or 1) + 1
    with pytest.raises(ClusterError, match=f"--workers {many} is more than"):
        ClusterSpec(many).check()
    pytest.importorskip("distributed")
    assert ClusterSpec(many, force=True).check().workers == many
    long = sweep("gaussian-cos", "reinforce", replicates=10**15)
    with pytest.raises(SweepError, match="days at 0.1 us each"):
        _plan(long, force=False)
    assert len(_plan(long, force=True).cells) == 1


class Scaled(Reinforce):
    """REINFORCE times a factor: objects with other factors are other estimators."""

    name = "test-scaled"

    def __init__(self, factor: float = 1.0, **options):
        super().__init__(**options)
        self.factor = factor

    def surrogate(self, dist, f, n_samples, state=None):
        return super().surrogate(dist, lambda x: self.factor * f(x), n_samples, state)


def test_two_objects_of_one_class_with_other_parameters_in_one_run_are_refused():
    from estimators import PluginError

    with pytest.raises(PluginError, match="two estimators named 'test-scaled' with other code or parameters"):
        estbench.run("gaussian-cos", [Scaled(1.0), Scaled(2.0)], **COS)
    assert len(estbench.run("gaussian-cos", [Scaled(2.0), Scaled(2.0)], **COS)) == 2


def test_a_resume_with_another_object_of_the_same_class_is_refused(tmp_path):
    from benchmarks.resume import ResumeError

    out = tmp_path / "r.csv"
    estbench.run("gaussian-cos", [Scaled(1.0)], out=out, **COS)
    with pytest.raises(ResumeError, match="its rows of estimator 'test-scaled' come from Python object"):
        estbench.run("gaussian-cos", [Scaled(2.0)], out=out, resume=True, **COS)
    assert estbench.run("gaussian-cos", [Scaled(1.0)], out=out, resume=True, **COS).attrs["computed"] == 0


PROBLEM_PLUGIN = """
import torch
from benchmarks.problems import GaussianQuadratic

class Shifted(GaussianQuadratic):
    name = "test-shifted"
    description = "the Gaussian quadratic, version {version}"
    reference = "reparameterization"
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "module"])
def test_a_resume_after_a_problem_plugin_changed_is_refused(tmp_path, how, monkeypatch):
    """A problem plugin (a file, or a module on the path) whose code changed between the run and its resume."""
    plugin = tmp_path / ("shifted.py" if how == "file" else "estbench_test_shifted_mod.py")
    plugin.write_text(PROBLEM_PLUGIN.format(version=1))
    spec = str(plugin) if how == "file" else plugin.stem
    monkeypatch.syspath_prepend(str(tmp_path))
    run = [sys.executable, "-m", "estbench", "run", "--plugin", spec, "--problem", "test-shifted", "--estimator",
           "reinforce", "--replicates", "20", "--quiet", "--out", str(tmp_path / "r.csv")]
    env = {**os.environ, "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    assert subprocess.run(run, capture_output=True, text=True, env=env).returncode == 0
    assert subprocess.run([*run, "--resume"], capture_output=True, text=True, env=env).returncode == 0
    plugin.write_text(PROBLEM_PLUGIN.format(version=2))
    again = subprocess.run([*run, "--resume"], capture_output=True, text=True, env=env)
    assert again.returncode == 2, again.stderr
    assert "its rows of problem 'test-shifted' come from plugin" in again.stderr and "sha256:" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def _background():
    """What a non-interactive shell does for `cmd &`: the job starts with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_while_starting_is_one_line(tmp_path, delay):
    """Ctrl-C (SIGINT, to a job started as a shell starts a background one) while torch is imported or the run
    begins: one line, exit status 130. The run would take several seconds, so the signal always comes first. At
    0.3 s it used to come while torch's C extension imported numpy, which swallows the KeyboardInterrupt: the run
    then went on to the end (exit 0), unless the entry point notices the signal it received."""
    proc = subprocess.Popen([sys.executable, "-m", "estbench", "run", "--problem", "gaussian-cos", "--estimator",
                             "reinforce", "--replicates", "200000", "--dim", "1000", "--quiet", "--out",
                             str(tmp_path / "r.csv")], stderr=subprocess.PIPE, text=True, preexec_fn=_background)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted" in err


@pytest.mark.slow
def test_a_background_run_stops_on_sigint(tmp_path):
    """Started as a background job (SIGINT ignored on entry), a run still stops on SIGINT, keeping its rows."""
    from .test_robustness import SLOW_PLUGIN

    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    out = tmp_path / "r.csv"
    proc = subprocess.Popen([sys.executable, "-m", "estbench", "run", "--plugin", str(plugin), "--problem",
                             "gaussian-cos", "--estimator", "test-slow", "--sigma", "0.5", "1", "2", "3", "4",
                             "--replicates", "20", "--quiet", "--out", str(out)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=_background)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; completed cells are in the results file" in err and "Traceback" not in err


def test_a_file_of_many_seeds_is_merged_one_to_one():
    """The same cells under many seeds (one file of many runs): each row's ratio is to the reference of its own run,
    and the table keeps one row per row (a many-to-many merge made 158 GiB of a 1 GB file)."""
    from reports.tables import add_derived

    one = estbench.run("gaussian-cos", ["reinforce", "reparameterization"], **{**COS, "replicates": 10})
    many = pd.concat([one.assign(seed=s) for s in range(300)], ignore_index=True)
    many.loc[many["seed"] == 7, "variance"] *= 2  # one run differs: its ratios are its own
    out = add_derived(many)
    assert len(out) == len(many)
    ref = out[out["estimator"] == "reinforce"].groupby("seed")["variance_vs_reference"].first()
    assert ref.nunique() == 1 and ref[7] == ref[0]


def test_float32_rounding_and_saturation_are_never_flagged_as_bias():
    """In float32, exact at theta 4 differs from the float64 truth by rounding at the scale of f's values (8e-9 against
    a gradient of 1.8e-3: z was inf); at theta 30 sigmoid is 1 in float32 and every estimate 0 against a truth of
    9e-15 (exact, arm, disarm, reinforce were flagged). The rows say where float32 cannot resolve the gradient."""
    df = estbench.run("bernoulli-quadratic", ["exact", "reinforce", "arm", "disarm"], theta=[4.0, 30.0],
                      replicates=200, seed=1)
    assert (df["status"] == "ok").all()
    assert (df["bias_z"].abs() < 3).all(), df[["estimator", "theta", "mean", "true_grad", "bias_z"]]
    saturated = df[df["theta"] == 30.0]
    assert saturated["variance_note"].str.contains("float32 cannot resolve this gradient").all()
    assert not df[df["theta"] == 4.0]["variance_note"].fillna("").str.contains("cannot resolve").any()


def test_an_outcome_never_drawn_is_not_a_bias():
    """categorical-quadratic at theta 30: the class that carries the gradient has probability 4.5e-5, so in 200 x 4
    draws it is usually never drawn and every reinforce-loo estimate is 0 against a truth of -3.9e-6 (z was inf)."""
    df = estbench.run("categorical-quadratic", ["reinforce-loo"], theta=30.0, replicates=200, seed=1)
    row = df.iloc[0]
    assert row["variance"] == 0 and row["mean"] == 0 and row["true_grad"] < 0
    assert abs(row["bias_z"]) < 1 and "an outcome of probability below 3/R may never have been drawn" in row["variance_note"]


def test_a_bias_is_still_flagged_where_it_is_real():
    """The floor for rounding and unseen outcomes does not hide a real bias: straight-through at theta 1."""
    df = estbench.run("bernoulli-quadratic", ["straight-through", "gumbel-softmax"], theta=1.0, replicates=1000, seed=1)
    assert (df["bias_z"].abs() > 10).all(), df[["estimator", "bias_z"]]


def test_a_run_that_loses_a_cell_says_so(monkeypatch, tmp_path):
    """Whatever loses a unit's rows (here an executor that drops the first), the run ends in one line, not exit 0."""
    from benchmarks import executors

    units = executors.Serial.units

    def dropping(self, todo, todo_curves):
        found = units(self, todo, todo_curves)
        next(found)
        yield from found

    monkeypatch.setattr(executors.Serial, "units", dropping)
    with pytest.raises(ResultsFileError, match=r"1 of the run.s 2 cells and curves have no rows \(the first: \w"):
        estbench.run("gaussian-cos", ["reinforce", "reparameterization"], out=tmp_path / "r.csv", **COS)
