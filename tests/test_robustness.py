"""Runs that survive: kill and resume, bit-for-bit reproducibility, isolation, clear errors."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.problems import VAEDigits
from benchmarks.results_file import TIMING_COLUMNS
from benchmarks.sweep import Sweep
from estbench.cli import main

SWEEP_ARGS = ["--problem", "gaussian-quadratic", "gaussian-cos", "gaussian-exp", "--sigma", "0.5", "1", "2",
              "--dim", "1", "20", "--n-samples", "2", "--replicates", "1000", "--seed", "9"]
TIMING = set(TIMING_COLUMNS)
ALL = ["reparameterization", "reinforce", "reinforce-loo", "reinforce-ema", "measure-valued", "reinforce-delta-cv",
       "reinforce-optimal", "test-slow"]


def slow_plugin_text(sleep: float = 0.05) -> str:
    """A plugin file's text: an estimator that is REINFORCE but sleeps ``sleep`` seconds a call, so that a run
    lasts long enough to be interrupted part-way on a loaded machine (a cell makes 7 calls)."""
    return f"""
import time
from estimators import Reinforce

class Slow(Reinforce):
    name = "test-slow"
    description = "REINFORCE, slowly"

    def surrogate(self, dist, f, n_samples, state=None):
        time.sleep({sleep!r})
        return super().surrogate(dist, f, n_samples, state)
"""


SLOW_PLUGIN = slow_plugin_text()
#: the kill-and-resume tests' plugin: 10 ms a call is enough there (its 18 cells take >= 1.2 s after the first rows)
SLOW_RESUMED = slow_plugin_text(0.01)


def table(path: Path) -> list[tuple]:
    """The rows of a results file, without timing columns, in a canonical order."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted(tuple((k, v) for k, v in sorted(r.items()) if k not in TIMING) for r in rows)


def n_rows(path: Path) -> int:
    try:
        return max(0, path.read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


def estbench(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run the CLI in its own process (plugins loaded there do not leak into this one)."""
    return subprocess.run([sys.executable, "-m", "estbench", *args], capture_output=True, text=True,
                          timeout=600, **kw)


@pytest.fixture(scope="module")
def slow_plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "slow.py"
    path.write_text(SLOW_RESUMED)
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, slow_plugin) -> list[tuple]:
    out = tmp_path_factory.mktemp("full") / "r.csv"
    proc = estbench("run", *SWEEP_ARGS, "--estimator", *ALL, "--plugin", str(slow_plugin), "--out", str(out),
                    "--quiet")
    assert proc.returncode == 0, proc.stderr
    return table(out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_killed_run_resumes_to_the_uninterrupted_table(tmp_path, uninterrupted, slow_plugin, sig):
    out = tmp_path / "r.csv"
    args = [*SWEEP_ARGS, "--estimator", *ALL, "--plugin", str(slow_plugin), "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "estbench", "run", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while n_rows(out) < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    done = n_rows(out)
    assert 20 <= done < len(uninterrupted), done
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and "continue with --resume" in err and "Traceback" not in err
    with open(out, newline="") as fh:  # what is on disk is readable: complete rows (and at most one torn line)
        header = fh.readline().strip().split(",")
    assert header == runner.COLUMNS
    resumed = estbench("run", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert table(out) == uninterrupted


@pytest.mark.slow
def test_same_seed_same_rows_whatever_the_order(tmp_path, uninterrupted, slow_plugin):
    out = tmp_path / "r.csv"
    reordered = ["--problem", "gaussian-exp", "gaussian-cos", "gaussian-quadratic", "--sigma", "2", "1", "0.5",
                 "--dim", "20", "1", "--estimator", *reversed(ALL), "--plugin", str(slow_plugin),
                 "--n-samples", "2", "--replicates", "1000", "--seed", "9"]
    proc = estbench("run", *reordered, "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert table(out) == uninterrupted


def test_resume_of_a_complete_file_computes_nothing(tmp_path):
    out = tmp_path / "r.csv"
    args = ["run", "--problem", "gaussian-cos", "--estimator", "reinforce", "--replicates", "20", "--out", str(out),
            "--quiet"]
    assert main(args) == 0
    before = out.read_bytes()
    assert main(args + ["--resume"]) == 0
    assert out.read_bytes() == before


def test_resume_refuses_a_file_with_other_columns(tmp_path, capsys):
    out = tmp_path / "r.csv"
    out.write_text("a,b\n1,2\n")
    assert main(["run", "--problem", "gaussian-cos", "--out", str(out), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and str(out) in err and "Traceback" not in err


def test_a_problem_that_cannot_be_set_up_fails_its_cells_only(monkeypatch):
    def broken(self, setting, ctx):
        raise RuntimeError("data went missing")

    monkeypatch.setattr(VAEDigits, "prepare", broken)
    sweep = Sweep(problem=["vae-digits", "gaussian-cos"], estimator=["reinforce"], checkpoint=["untrained"],
                  replicates=10, train_steps=0)
    rows = runner.run(sweep)
    vae = [r for r in rows if r["problem"] == "vae-digits"]
    assert vae and all(r["status"] == "failed" and "problem set-up failed: RuntimeError: data went missing"
                       in r["error"] for r in vae)
    assert {r["status"] for r in rows if r["problem"] == "gaussian-cos"} == {"ok"}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--problem", "vae-mnist", "--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist: no such directory"),
        (["--problem", "gaussian-cos", "--estimator", "reinforce-lo"], "Did you mean 'reinforce-loo'?"),
        (["--problem", "gaussian-cos", "--checkpoint", "trained", "--hidden", "0"], "hidden must be >= 1, got hidden=0"),
    ],
)
def test_more_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    assert main(["run", *argv, "--out", str(tmp_path / "r.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_argparse_errors_exit_2_too(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--dim", "two"])
    assert info.value.code == 2
    assert "expected an integer, got 'two'" in capsys.readouterr().err
