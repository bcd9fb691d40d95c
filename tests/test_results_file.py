"""The results file: one writer, no mixed resumes, nothing overwritten unasked, OS errors in one line."""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.results_file import lock_path
from estbench.cli import main
from tests.test_robustness import SLOW_PLUGIN, estbench, n_rows, slow_plugin_text, table

COS = ["--problem", "gaussian-cos", "--estimator", "reinforce", "--replicates", "20", "--quiet"]


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for f in fragments:
        assert f in err, (f, err)
    return err


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- one writer at a time ---------------------------------------------------------

@pytest.mark.slow
def test_a_second_writer_is_refused_and_the_first_run_is_untouched(tmp_path, capsys):
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    out = tmp_path / "r.csv"
    args = ["--problem", "gaussian-cos", "gaussian-exp", "--sigma", "0.5", "1", "2", "--estimator", "test-slow",
            "reinforce", "--plugin", str(plugin), "--replicates", "50", "--out", str(out), "--quiet"]
    first = subprocess.Popen([sys.executable, "-m", "estbench", "run", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while n_rows(out) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second could start"
    before = out.read_bytes()
    for extra in ([], ["--resume"], ["--overwrite"]):
        assert main(["run", *COS, "--out", str(out), *extra]) == 2
        one_line_error(capsys, f"{out} is being written by process {first.pid}", "estbench run")
    assert out.read_bytes()[: len(before)] == before  # the second writer changed nothing
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    got = rows(out)
    assert len(got) == 2 * 3 * 2 * 2 and {r["estimator"] for r in got} == {"test-slow", "reinforce"}
    assert b"\0" not in out.read_bytes() and not lock_path(out).exists()


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    out = tmp_path / "r.csv"
    lock_path(out).write_text("999999\nestbench run (killed)\n")  # the file stays; the OS lock died with its process
    assert main(["run", *COS, "--out", str(out)]) == 0
    assert len(rows(out)) == 2 and not lock_path(out).exists()


# -- a resume never mixes runs ----------------------------------------------------

@pytest.mark.parametrize("change,message", [
    (["--replicates", "30"], "replicates=20 in the file, replicates=30 in this run"),
    (["--seed", "1"], "seed=0 in the file, seed=1 in this run"),
    (["--dtype", "float64"], "dtype=float32 in the file, dtype=float64 in this run"),
])
def test_resume_with_options_that_change_a_cell_is_refused(tmp_path, capsys, change, message):
    out = tmp_path / "r.csv"
    assert main(["run", *COS, "--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["run", *COS, *change, "--out", str(out), "--resume"]) == 2
    one_line_error(capsys, f"cannot resume {out}", message)
    assert out.read_bytes() == before


def test_resume_of_a_vae_with_other_checkpoint_steps_is_refused(tmp_path, capsys):
    out = tmp_path / "r.csv"
    vae = ["--problem", "vae-digits", "--estimator", "reinforce", "--checkpoint", "untrained", "--hidden", "8",
           "--batch", "4", "--replicates", "10", "--train-steps", "2", "--checkpoint-steps", "5", "--quiet"]
    assert main(["run", *vae, "--out", str(out)]) == 0
    assert {r["checkpoint_steps"] for r in rows(out)} == {"5"} and {r["train_steps"] for r in rows(out)} == {"2"}
    assert {r["train_steps"] for r in rows(runner.curves_path(out))} == {"2"}
    capsys.readouterr()
    assert main(["run", *vae, "--checkpoint-steps", "6", "--out", str(out), "--resume"]) == 2
    one_line_error(capsys, "checkpoint_steps=5 in the file, checkpoint_steps=6 in this run")
    assert main(["run", *vae, "--train-steps", "3", "--out", str(out), "--resume"]) == 2
    one_line_error(capsys, "train_steps=2 in the file, train_steps=3 in this run")


@pytest.mark.slow
def test_resume_with_a_changed_plugin_file_is_refused(tmp_path, capsys):
    plugin = tmp_path / "slow.py"
    plugin.write_text(slow_plugin_text(0.0))
    out = tmp_path / "r.csv"
    args = ["run", *COS, "--estimator", "test-slow", "--plugin", str(plugin), "--out", str(out)]
    assert estbench(*args).returncode == 0
    (origin,) = {r["estimator_origin"] for r in rows(out)}
    assert origin.startswith("plugin file slow.py sha256:")
    plugin.write_text(slow_plugin_text(0.001))
    proc = estbench(*args, "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "its rows of estimator 'test-slow' come from plugin file slow.py sha256:" in proc.stderr


def test_resume_may_add_estimators_problems_and_settings(tmp_path):
    """Options that only add cells resume; the table then equals one run of everything."""
    out, whole = tmp_path / "r.csv", tmp_path / "whole.csv"
    base = ["--replicates", "20", "--quiet", "--seed", "4"]
    assert main(["run", "--problem", "gaussian-cos", "--estimator", "reinforce", "--sigma", "1", *base,
                 "--out", str(out)]) == 0
    more = ["--problem", "gaussian-cos", "gaussian-exp", "--estimator", "reinforce", "reinforce-loo", "--sigma", "1",
            "2", *base]
    assert main(["run", *more, "--out", str(out), "--resume"]) == 0
    assert main(["run", *more, "--out", str(whole)]) == 0
    assert table(out) == table(whole)


# -- nothing overwritten unasked --------------------------------------------------

@pytest.mark.parametrize("content", [b"name,age\nann,3\n", bytes(range(256)) * 4, None])
def test_an_existing_file_is_not_overwritten_without_being_asked(tmp_path, capsys, content):
    out = tmp_path / "r.csv"
    if content is None:  # a partial results file
        assert main(["run", *COS, "--sigma", "1", "2", "--out", str(out)]) == 0
        content = out.read_bytes()
        capsys.readouterr()
    else:
        out.write_bytes(content)
    assert main(["run", *COS, "--out", str(out)]) == 2
    one_line_error(capsys, f"--out {out} already exists", "--resume", "--overwrite")
    assert out.read_bytes() == content
    assert main(["run", *COS, "--out", str(out), "--overwrite"]) == 0
    assert len(rows(out)) == 2


def test_a_sweep_with_no_cells_is_an_error_and_leaves_the_file(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["run", *COS, "--sigma", "1", "2", "--out", str(out)]) == 0
    before = out.read_bytes()
    cfg = tmp_path / "empty.toml"
    cfg.write_text("sigma = []\n")
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "--out", str(out), "--overwrite", "--quiet"]) == 2
    one_line_error(capsys, "sigma is an empty list")
    assert out.read_bytes() == before


def test_report_refuses_to_replace_results_in_its_folder(tmp_path, capsys):
    data = Path(__file__).parent / "data" / "results.csv"
    out = tmp_path / "rep"
    out.mkdir()
    (out / "results.csv").write_text("my,own\n1,2\n")
    assert main(["report", "--results", str(data), "--out", str(out), "--quiet"]) == 2
    one_line_error(capsys, f"{out / 'results.csv'} already holds other results", "--overwrite")
    assert (out / "results.csv").read_text() == "my,own\n1,2\n" and sorted(p.name for p in out.iterdir()) == [
        "results.csv"]
    assert main(["report", "--quick", "--out", str(out), "--quiet", "--problem", "gaussian-cos"]) == 2
    one_line_error(capsys, "already exists", "--resume", "--overwrite")


# -- OS errors: one line, rows kept ----------------------------------------------

@pytest.mark.slow
def test_a_file_size_limit_mid_run_stops_cleanly_and_resumes(tmp_path):
    out = tmp_path / "r.csv"
    args = ["run", "--problem", "gaussian-cos", "gaussian-exp", "--sigma", "0.5", "1", "2", "--estimator", "reinforce",
            "reinforce-loo", "--replicates", "20", "--out", str(out), "--quiet"]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    proc = subprocess.run([sys.executable, "-m", "estbench", *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"writing {out} failed: File too large" in proc.stderr and "continue with --resume" in proc.stderr
    assert 0 < n_rows(out) < 24
    whole = tmp_path / "whole.csv"
    assert estbench(*args, "--resume").returncode == 0
    assert estbench(*args[:-3], "--out", str(whole), "--quiet").returncode == 0
    assert table(out) == table(whole)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files and folders")
def test_read_only_targets_are_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    assert main(["run", *COS, "--out", str(folder / "r.csv")]) == 2
    one_line_error(capsys, "cannot write", "Permission denied")
    done = tmp_path / "done.csv"
    assert main(["run", *COS, "--out", str(done)]) == 0
    done.chmod(0o444)
    capsys.readouterr()
    assert main(["run", *COS, "--out", str(done), "--resume"]) == 2
    one_line_error(capsys, "cannot write", "Permission denied")


# -- inputs that escaped ----------------------------------------------------------

@pytest.mark.parametrize("axis", [["--problem", "gaussian-quadratic", "--mu", "1e300", "1"],
                                  ["--problem", "gaussian-cos", "--sigma", "1e200", "1"],
                                  ["--problem", "gaussian-exp", "--k", "1e300", "1"]])
def test_an_overflowing_closed_form_fails_its_cell_only(tmp_path, axis):
    out = tmp_path / "r.csv"
    assert main(["run", *axis, "--dtype", "float64", "--estimator", "reparameterization", "--replicates", "10",
                 "--out", str(out), "--quiet"]) == 1
    got = rows(out)
    failed = [r for r in got if r["status"] == "failed"]
    assert failed and all("the exact gradient could not be computed: OverflowError" in r["error"] for r in failed)
    assert len(failed) == 2 and sum(r["status"] == "ok" for r in got) == 2  # the other setting ran


def test_huge_dimensions_are_refused_before_any_memory_is_taken(tmp_path, capsys):
    tracemalloc.start()
    try:
        assert main(["run", "--problem", "gaussian-cos", "--dim", "1000000000", "--out", str(tmp_path / "r.csv"),
                     "--quiet"]) == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_line_error(capsys, "dim=1000000000", "one replicate needs about", "GiB")
    assert peak < 50 << 20 and not (tmp_path / "r.csv").exists()
    assert main(["run", "--problem", "gaussian-cos", "--n-samples", "1000000000", "--out", str(tmp_path / "r.csv")]) == 2
    one_line_error(capsys, "n_samples=1000000000", "one replicate needs about")


def test_the_chunk_plan_does_not_grow_with_replicates():
    tracemalloc.start()
    try:
        plan = runner.chunk_plan(10**15, 262_144)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 16
    assert len(plan) == -(-10**15 // plan[0]) and plan[0] <= 262_144 and plan[-1] <= plan[0]
    assert plan.count * plan.size + plan.last == 10**15


VAE = ["--problem", "vae-digits", "--checkpoint", "untrained", "--hidden", "8", "--batch", "4", "--train-steps", "0",
       "--replicates", "10", "--quiet"]
BAD_SHAPES = """
import sys
from estimators import Reinforce

class ScalarLoss(Reinforce):
    name = "scalar-loss"
    def surrogate(self, dist, f, n_samples, state=None):
        s = super().surrogate(dist, f, n_samples, state)
        s.loss = s.loss.sum()
        return s

class PerSampleLoss(Reinforce):
    name = "per-sample-loss"
    def surrogate(self, dist, f, n_samples, state=None):
        s = super().surrogate(dist, f, n_samples, state)
        s.loss = s.loss.expand(n_samples, *s.loss.shape)
        return s

class Exits(Reinforce):
    name = "exits"
    def surrogate(self, dist, f, n_samples, state=None):
        sys.exit(0)
"""


@pytest.mark.slow
def test_vae_shapes_are_checked_and_an_exiting_plugin_is_a_failed_row(tmp_path):
    plugin = tmp_path / "bad.py"
    plugin.write_text(BAD_SHAPES)
    out = tmp_path / "r.csv"
    proc = estbench("run", *VAE, "--estimator", "scalar-loss", "per-sample-loss", "exits", "reinforce", "--plugin",
                    str(plugin), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    got = {r["estimator"]: r for r in rows(out)}
    assert got["scalar-loss"]["status"] == "failed" and "surrogate of shape ()" in got["scalar-loss"]["error"]
    # R = 10 in five timed chunks of 2: the warm-up call draws 2 replicates of 4 images, n_samples 4
    assert got["per-sample-loss"]["status"] == "failed" and "surrogate of shape (4, 2, 4)" in got[
        "per-sample-loss"]["error"] and "expected one value per replicate and image, (2, 4)" in got[
        "per-sample-loss"]["error"]
    assert got["exits"]["status"] == "failed" and "SystemExit: 0" in got["exits"]["error"]
    assert got["reinforce"]["status"] == "ok"


@pytest.mark.slow
def test_a_plugin_may_replace_a_shipped_estimator_only_when_it_says_so(tmp_path):
    plugin = tmp_path / "mv.py"
    plugin.write_text("from estimators import Reinforce\n\nclass MV(Reinforce):\n    name = 'measure-valued'\n")
    proc = estbench("list", "--plugin", str(plugin))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "name 'measure-valued' is already registered by" in proc.stderr and "replaces = True" in proc.stderr
    plugin.write_text(plugin.read_text() + "    replaces = True\n    description = 'mine'\n")
    proc = estbench("list", "--plugin", str(plugin))
    assert proc.returncode == 0 and "measure-valued" in proc.stdout and "mine" in proc.stdout


# -- progress -----------------------------------------------------------------------

@pytest.mark.slow
def test_long_runs_show_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    out = tmp_path / "r.csv"
    args = ["run", "--problem", "gaussian-cos", "--sigma", "1", "2", "3", "--estimator", "reinforce", "--replicates",
            "20", "--out", str(out)]
    env = {**os.environ, "ESTBENCH_PROGRESS_EVERY": "0"}
    proc = estbench(*args, env=env)
    assert proc.returncode == 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("estbench: ")]
    assert lines[:2] == [ln for ln in lines[:2] if "cells done," in ln and "elapsed, about" in ln and "left" in ln]
    assert lines[0].startswith("estbench: 1/3 cells done,") and lines[-1].startswith("estbench: 3/3 cells done in")
    quiet = estbench(*args, "--quiet", "--overwrite", env=env)
    assert quiet.returncode == 0 and "cells done" not in quiet.stderr


def test_progress_lines_count_training_curves_as_what_they_are(monkeypatch, capsys):
    """A plan with training curves counts its units as "cells and training curves"; one without, as "cells"."""
    from types import SimpleNamespace

    from estbench.progress import _progress_lines

    monkeypatch.setenv("ESTBENCH_PROGRESS_EVERY", "0")
    def unit():
        return SimpleNamespace(problem=SimpleNamespace(name="vae-digits"), label="vae-digits/reinforce")

    for curves, said in (([(unit(), None)], "cells and training curves done"), ([], "cells done")):
        cells = [(unit(), None) for _ in range(2)]
        update = _progress_lines(SimpleNamespace(cells=cells, curves=curves))
        for done, _ in cells + curves:
            update(done)
        update(None)
        lines = capsys.readouterr().err.splitlines()
        total = 2 + len(curves)
        assert lines[0].startswith(f"estbench: 1/{total} {said}, ")
        assert lines[-1].startswith(f"estbench: {total}/{total} {said} in ")


def _units(*labels: str, groups: tuple[str, ...] = ()) -> list:
    """Cells or curves of one problem "p" for the progress lines, by label (and, for curves, their groups)."""
    from types import SimpleNamespace

    units = [SimpleNamespace(problem=SimpleNamespace(name="p"), label=label) for label in labels]
    for unit, group in zip(units, groups, strict=False):
        unit.group = group
    return units


def _time_left_said(monkeypatch, capsys, cells, curves, events, concurrency=None) -> dict[str, str]:
    """The progress lines' time left after each unit of ``events`` [(t, unit, its own seconds or None)], on a fake
    clock, a line per unit: {the unit's label: the time left it said}."""
    from types import SimpleNamespace

    from estbench import progress

    monkeypatch.setenv("ESTBENCH_PROGRESS_EVERY", "0")
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    update = progress._progress_lines(SimpleNamespace(cells=[(c, None) for c in cells], curves=[(c, None) for c in curves]))
    if concurrency is not None:
        update.concurrency(*concurrency)
    for t, unit, seconds in events:
        clock[0] = t
        update(unit) if seconds is None else update(unit, seconds=seconds)
    lines = capsys.readouterr().err.splitlines()
    return {line.split(" (last: ")[1].rstrip(")"): line.split("about ")[1].split(" left")[0] for line in lines}


@pytest.mark.parametrize("beside", [True, False])
def test_the_time_left_adds_cells_and_curves_only_where_they_ran_one_after_the_other(monkeypatch, capsys, beside):
    """Four cells of 10 s and four curves of 30 s. Beside: a curve comes back every 30 s while a cell ends every 10 s;
    after two cells and one curve (t = 30 s), 2 cells x 10 s and 3 curves x 30 s are left at once: 90 s, the longer
    stream. One after the other: after the cells (40 s) and one curve (70 s), 3 x 30 s = 90 s; after two cells,
    20 s + 4 x 30 s (a curve's time unknown yet: the cells' mean, 10 s each) = 60 s."""
    cells, curves = _units(*(f"cell{i}" for i in range(4))), _units(*(f"curve{i}" for i in range(4)))
    if beside:
        events = [(10, cells[0]), (20, cells[1]), (30, curves[0]), (30.5, cells[2])]
    else:
        events = [(10, cells[0]), (20, cells[1]), (30, cells[2]), (40, cells[3]), (70, curves[0])]
    said = _time_left_said(monkeypatch, capsys, cells, curves, [(t, unit, None) for t, unit in events])
    if beside:
        assert said["curve0"] == "1:30" and said["cell2"] == "1:30"  # the curves' 90 s, not the cells' 20 s then 10 s
    else:
        assert said["cell1"] == "1:00" and said["curve0"] == "1:30"


def test_the_time_left_counts_the_curves_training_at_once_beside_the_cells_and_after(monkeypatch, capsys):
    """Declared: one curve beside the cells, two after. Four cells of 10 s, six curves of 30 s of training each.
    After the first cell (t = 10 s, no curve done: each takes at least the 10 s they have been running, at the
    declared pace): C = 3 x 10 s, W = 6 x 10 s, 30 + (60 - 30) / 2 = 45 s. The first curve back at t = 30 s with
    its own 30 s (the pace beside the cells: 30 s of work in 30 s, so 2 after them): C = 2 x 10 s and W = 5 x 30 s
    from its own time, 20 + (150 - 20) / 2 = 85 s. After the cells (t = 40 s): 150 / 2 = 75 s. One curve left
    (t = 100 s; 120 s of work came back in the 60 s after the cells): 30 s, not 15 (a curve is not split)."""
    cells, curves = _units(*(f"cell{i}" for i in range(4))), _units(*(f"curve{i}" for i in range(6)))
    events = [(10, cells[0], None), (20, cells[1], None), (30, curves[0], 30.0), (30.5, cells[2], None),
              (40, cells[3], None), (60, curves[1], 30.0), (70, curves[2], 30.0), (90, curves[3], 30.0),
              (100, curves[4], 30.0)]
    said = _time_left_said(monkeypatch, capsys, cells, curves, events, concurrency=(1, 2))
    assert said["cell0"] == "0:45" and said["curve0"] == "1:25" and said["cell3"] == "1:15"
    assert said["curve4"] == "0:30"


def test_a_curve_left_takes_its_own_estimators_time_where_one_of_its_seeds_is_back(monkeypatch, capsys):
    """No cells; estimator a's seeds train in 10 s, b's in 40 s (one problem, no size known). With a's first seed
    and b's first back (50 s of curve work in the first 50 s: pace 1), a's other seed and b's two others are left:
    10 + 2 x 40 = 90 s, where the problem's mean would say 3 x 25 = 75 s."""
    seeds = [(est, s) for est, n in (("a", 2), ("b", 3)) for s in range(n)]
    curves = _units(*(f"{est}[p-s-n=1{f'-train_seed={s}' if s else ''}]" for est, s in seeds),
                    groups=tuple(f"{est}[p-s-n=1]" for est, _ in seeds))
    said = _time_left_said(monkeypatch, capsys, [], curves, [(10, curves[0], 10.0), (50, curves[2], 40.0)],
                           concurrency=(0, 1))
    assert said["b[p-s-n=1]"] == "1:30"


def test_a_problem_whose_size_is_no_number_weighs_nothing_in_the_time_left():
    """A plugin problem's replicate_bytes that raises, is NaN or negative gives its curves no size (they take the
    mean time of the curves done); a time left that is no number prints as '?', never raises."""
    from types import SimpleNamespace

    from estbench import progress

    def curve(value):
        def replicate_bytes(*_):
            if isinstance(value, Exception):
                raise value
            return value
        return SimpleNamespace(problem=SimpleNamespace(name="p", replicate_bytes=replicate_bytes), setting=None,
                               n_samples=1)

    sweep = SimpleNamespace(context=lambda: None, train_steps=10)
    sizes = [progress._size(curve(v), sweep) for v in (ValueError("no"), float("nan"), -5, float("inf"), 3)]
    assert sizes == [0.0, 0.0, 0.0, 0.0, 30.0]
    assert progress._clock(float("nan")) == "?" and progress._clock(-2.0) == "0:00" and progress._clock(3725) == "1:02:05"


def test_resume_may_add_option_values(tmp_path):
    """--temperature 0.5, then --temperature 0.5 2 with --resume: one new cell per added value, and
    the table equals one run of both values."""
    out, whole = tmp_path / "r.csv", tmp_path / "whole.csv"
    base = ["run", "--problem", "bernoulli-quadratic", "--estimator", "gumbel-softmax", "--replicates", "50", "--quiet"]
    assert main([*base, "--temperature", "0.5", "--out", str(out)]) == 0
    assert main([*base, "--temperature", "0.5", "2", "--out", str(out), "--resume"]) == 0
    assert main([*base, "--temperature", "0.5", "2", "--out", str(whole)]) == 0
    assert table(out) == table(whole) and {r["estimator_options"] for r in rows(out)} == {"temperature=0.5",
                                                                                           "temperature=2.0"}


def test_a_fault_in_the_statistics_fails_its_cell_only(tmp_path, monkeypatch):
    """The statistics of the first cell raise: its rows say failed with the reason, the other setting's cell is ok."""
    from benchmarks.stats import GradientStats

    real, calls = GradientStats.summary, []

    def first_raises(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OverflowError("math range error")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GradientStats, "summary", first_raises)
    out = tmp_path / "r.csv"
    assert main(["run", "--problem", "gaussian-quadratic", "--mu", "0", "1", "--estimator", "reparameterization",
                 "--replicates", "64", "--out", str(out), "--quiet"]) == 1
    got = rows(out)
    failed = [r for r in got if r["status"] == "failed"]
    reason = "the statistics could not be computed: OverflowError: math range error (at "
    assert len(failed) == 2 and all(r["error"].startswith(reason) for r in failed)
    assert sum(r["status"] == "ok" for r in got) == 2
