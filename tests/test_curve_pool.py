"""The training curves side by side in forked processes (benchmarks.curve_pool): the same rows as in this
process, a process that dies taking no other curve with it, and nothing left running after a stop."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks import runner
from benchmarks.cluster import WORKERS_PER_CORE
from benchmarks.curve_pool import curve_processes, train_side_by_side
from benchmarks.plan import curve_cells
from benchmarks.rows import curve_rows
from benchmarks.sweep import Sweep
from estbench.cli import main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="curves are forked on Linux only")

VAE = ["--problem", "vae-digits-binary", "--checkpoint", "untrained", "--hidden", "8", "--latent", "3", "--batch", "4",
       "--replicates", "10", "--quiet"]
#: an estimator that kills the process it runs in when that is not the one that imported it (a forked one)
KILLS_FORKED = '''
import os
import signal
from pathlib import Path

from estimators import Reinforce

PARENT = os.getpid()


class KillsForked(Reinforce):
    name = "kills-forked"

    def surrogate(self, dist, f, n_samples, state=None):
        marker = Path({marker!r})
        if os.getpid() != PARENT and ({always!r} or not marker.exists()):
            marker.write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().surrogate(dist, f, n_samples, state)
'''


def _sweep(**kw) -> Sweep:
    return Sweep(problem=["vae-digits-binary"], estimator=["reinforce", "disarm"], checkpoint=["untrained"], hidden=[8],
                 latent=[3], batch=[4], n_samples=[4], replicates=10, train_steps=20, train_seeds=2, **kw).validate()


def test_curves_trained_side_by_side_have_the_rows_of_this_process(monkeypatch):
    todo = [(c, sw) for sw in [_sweep()] for c in curve_cells(sw)]
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "2")
    assert curve_processes(todo) == 2
    got = {}
    for cell, _, rows in train_side_by_side(todo, 2):
        got[(cell.estimator, cell.train_seed)] = rows
    here = {(c.estimator, c.train_seed): curve_rows(c, sw, sw.context()) for c, sw in todo}
    assert got.keys() == here.keys() and len(got) == 4
    for key, rows in here.items():
        theirs = pd.DataFrame(got[key]).drop(columns="wall_time_s")
        pd.testing.assert_frame_equal(theirs, pd.DataFrame(rows).drop(columns="wall_time_s"))  # seeded: the same numbers


def test_how_many_processes(monkeypatch):
    todo = [(c, sw) for sw in [_sweep()] for c in curve_cells(sw)]
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "1")
    assert curve_processes(todo) == 1  # every curve in this process
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "64")
    assert curve_processes(todo) == 4  # at most one a curve
    assert curve_processes(todo[:1]) == 1
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "100000")
    cores = len(os.sched_getaffinity(0))
    assert curve_processes(todo * 1000) == WORKERS_PER_CORE * cores  # not a process per curve: the memory
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "none")  # not a number: the usable cores
    assert curve_processes(todo) == min(4, len(os.sched_getaffinity(0)))
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert curve_processes(todo) == 1  # a pool's worker may not start processes: here
    monkeypatch.undo()
    gpu = [(c, Sweep(problem=sw.problem, estimator=sw.estimator, device="cuda")) for c, sw in todo]  # not validated
    assert curve_processes(gpu) == 1  # a forked child cannot use its parent's CUDA context


def test_where_no_process_can_be_forked_the_curves_train_here(monkeypatch):
    """The first curve is handed to a forked process, the second's fork fails (ENOMEM): the pool is stopped and
    every curve, the one already handed out included, trains in this process, each once, with the same rows."""
    from concurrent.futures import ProcessPoolExecutor

    todo = [(c, sw) for sw in [_sweep()] for c in curve_cells(sw)]
    submit, calls = ProcessPoolExecutor.submit, []

    def fails_after_one(self, *args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise OSError(12, "Cannot allocate memory")
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", fails_after_one)
    got = [(cell.estimator, cell.train_seed, rows) for cell, _, rows in train_side_by_side(todo, 2)]
    assert len(calls) == 2 and sorted(g[:2] for g in got) == sorted((c.estimator, c.train_seed) for c, _ in todo)
    here = {(c.estimator, c.train_seed): curve_rows(c, sw, sw.context()) for c, sw in todo}
    for estimator, seed, rows in got:
        pd.testing.assert_frame_equal(pd.DataFrame(rows).drop(columns="wall_time_s"),
                                      pd.DataFrame(here[(estimator, seed)]).drop(columns="wall_time_s"))


@pytest.mark.parametrize("always", [False, True])
def test_a_process_that_dies_takes_no_other_curve_with_it(tmp_path, monkeypatch, capsys, always):
    """The killed process's curves are trained again one at a time: killed once, every curve ends with the
    numbers of an undisturbed run; killed every time, that estimator's curves alone become failed rows."""
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "2")
    plugin = tmp_path / "kills.py"
    plugin.write_text(KILLS_FORKED.format(marker=str(tmp_path / "died"), always=always))
    out = tmp_path / "r.csv"
    argv = ["run", *VAE, "--plugin", str(plugin), "--estimator", "reinforce", "kills-forked", "disarm",
            "--train-steps", "10", "--train-seeds", "2"]
    assert main([*argv, "--out", str(out)]) == (1 if always else 0)  # a failed curve, as a failed cell, exits 1
    assert ("2 training curves failed; see the status and error columns of" in capsys.readouterr().err) == always
    assert (tmp_path / "died").read_text() == "died"  # it did die
    curves = pd.read_csv(runner.curves_path(out))
    ends = curves.groupby(["estimator", "train_seed"]).tail(1)
    assert len(ends) == 6 and not curves.duplicated(["estimator", "train_seed", "step"]).any()
    killer = ends["estimator"] == "kills-forked"
    if always:
        assert (ends[killer]["status"] == "failed").all() and (ends[~killer]["status"] != "failed").all()
        errors = curves[curves["estimator"] == "kills-forked"]["error"]
        assert errors.str.contains("died .* also when it trained alone").all()
    else:
        assert (ends["status"] != "failed").all()  # 'stalled' after 10 steps: a curve that ended
        monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "1")
        assert main([*argv, "--out", str(tmp_path / "here.csv")]) == 0
        here = pd.read_csv(runner.curves_path(tmp_path / "here.csv"))
        key = ["estimator", "train_seed", "step"]
        numbers = ["elbo_train", "elbo_test"]
        pd.testing.assert_frame_equal(curves.sort_values(key)[numbers].reset_index(drop=True),
                                      here.sort_values(key)[numbers].reset_index(drop=True))


def _processes_with(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (forked ones have their parent's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_ctrl_c_while_curves_train_leaves_no_process_running(tmp_path):
    out = tmp_path / "ctrl-c.csv"
    cmd = [sys.executable, "-m", "estbench", "run", *VAE, "--estimator", "reinforce", "disarm", "--train-steps", "100000",
           "--train-seeds", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).parents[1], env={**os.environ, "ESTBENCH_CURVE_PROCESSES": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_processes_with(str(out))) < 3 and time.monotonic() < deadline:  # the run and its two trainers
            time.sleep(0.1)
        assert len(_processes_with(str(out))) >= 3, "the curves never started side by side"
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, err = proc.communicate(timeout=30)  # the curves would train for minutes
        assert proc.returncode == 130, err.decode()[-2000:]
        time.sleep(0.5)
        assert _processes_with(str(out)) == []
        assert out.exists()  # the cells' rows are kept
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what a failed check left running
        proc.communicate()


def test_curves_train_beside_the_cells_on_the_cores_left(monkeypatch):
    """While the cells run here (on share_cores' threads), curves train in the processes and each finished one
    hands its process the next at once: a cell that waits until two curves are done (one at a time beside the
    cells) sees them done without this process handing anything out, and they come back before the last cell."""
    from benchmarks import curve_pool, executors

    monkeypatch.setattr(curve_pool, "usable_cores", lambda: 2)  # one curve beside cells on one thread
    pools, threads = [], []

    class Recorded(curve_pool.CurvePool):
        def __init__(self, *args):
            super().__init__(*args)
            pools.append(self)

    def fake_cell(cell, sweep, prepared, ctx):
        threads.append(torch.get_num_threads())
        if len(threads) == 3:  # the last cell but one: wait for two curves trained beside it
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with pools[0]._changed:
                    assert len(pools[0]._running) <= 1  # the limit beside the cells
                    if len(pools[0]._done) >= 2:
                        break
                time.sleep(0.01)
        return [], None

    monkeypatch.setattr(executors, "CurvePool", Recorded)
    monkeypatch.setattr(executors, "measure_cell", fake_cell)
    monkeypatch.setattr(executors, "prepare", lambda cell, ctx: None)
    sw = _sweep().with_overrides(n_samples=[1, 4]).validate()
    todo = runner.make_plan([sw]).cells
    todo_curves = [(c, sw) for c in curve_cells(sw)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        units = [(kind, cell.estimator) for kind, cell, *_ in executors.Serial().units(todo, todo_curves)]
        assert threads == [1] * 4 and torch.get_num_threads() == 2  # the cells' threads, then torch's own again
    finally:
        torch.set_num_threads(before)
    kinds = [kind for kind, _ in units]
    assert kinds.count("cell") == 4 and kinds.count("curve") == len(todo_curves) == 8
    assert kinds.index("curve") < len(kinds) - 1 - kinds[::-1].index("cell")  # a curve came back before the last cell


def test_the_run_loop_tells_the_progress_how_many_curves_train_at_once_and_each_ones_time(monkeypatch):
    """A progress callback that asks (``timed``, ``concurrency``) hears the serial executor's curve concurrency
    (2 cores: one curve beside the cells, two after) and, for each curve, its rows' last wall_time_s; cells are
    reported without a time. One that does not ask is called with the cell alone."""
    from benchmarks import curve_pool

    monkeypatch.setattr(curve_pool, "usable_cores", lambda: 2)
    monkeypatch.setenv("ESTBENCH_CURVE_PROCESSES", "2")
    heard, calls, curves = [], [], []

    class Progress:
        timed = True

        def concurrency(self, beside, after):
            heard.append((beside, after))

        def __call__(self, cell, seconds=None):
            calls.append((cell.label, seconds))

    plan = runner.make_plan([_sweep()])
    runner.run(plan, progress=Progress(), curves=curves)
    assert heard == [(1, 2)]
    timed = {label: s for label, s in calls if s is not None}
    assert len(calls) == len(plan.cells) + len(plan.curves) and len(timed) == len(plan.curves) == 4
    trained = {c.label: max(r["wall_time_s"] for r in curves if (r["estimator"], r["train_seed"]) ==
                            (c.estimator, c.train_seed)) for c, _ in plan.curves}
    assert timed == trained and all(s > 0 for s in timed.values())
    plain = []
    runner.run(plan, progress=lambda cell: plain.append(cell))
    assert len(plain) == len(plan.cells) + len(plan.curves)


def test_the_pool_hands_out_each_problems_first_curve_then_each_seed_in_turn():
    """Each problem's first curve, then the first seed's curves, then the second's, each in the plan's order: the
    progress lines learn every problem's pace, then every estimator's, early."""
    from types import SimpleNamespace

    from benchmarks.curve_pool import CurvePool, hand_out_order

    plan = [("a", 0), ("a", 1), ("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0)]
    curves = [(SimpleNamespace(problem=SimpleNamespace(name=n), train_seed=s), None) for n, s in plan]
    assert hand_out_order(curves) == [0, 4, 6, 2, 1, 3, 5]
    assert list(CurvePool(curves, 2)._queue) == [0, 4, 6, 2, 1, 3, 5]
    assert hand_out_order([]) == []
