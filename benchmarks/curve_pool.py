"""A run's training curves side by side in forked processes (the serial executor's), beside its cells.

A curve is one core's work whatever its torch threads (300 steps of the binary VAE: 0.87-1.04 s with one thread,
0.78-1.02 s with two; docs/performance.md), so on a machine of several cores the curves train in processes of one
thread each. They start with the run: while this process measures the cells, on part of the cores
(``share_cores``), some of the curves train beside them on the others, and once the cells are done the curves left
train on every core; each problem's first curve is handed out first, then every curve's first seed (``hand_out_order``). A curve
beside the cells slows them by about 1%, where a second cell would by 12-33%, and loses 0-20% itself
(docs/performance.md). The processes are forked from this one: they have its estimators,
problems and plugins (a notebook's own classes included) without importing or shipping anything, and hand back
rows, which this process alone writes. A curve's numbers are those of training it here (each is seeded from its
identity; docs/performance.md compares them). A process that dies (a plugin that kills it, the memory killer) takes
no other curve with it: the curves it was training are run again one at a time, and one that kills its process
alone becomes a failed row. Ctrl-C stops them all at once (the processes ignore SIGINT; this one kills them).

``ESTBENCH_CURVE_PROCESSES=N`` sets the number of processes (1: every curve in this process, after the cells).
Forking needs Linux and a CPU run: elsewhere, or on a GPU, the curves train in this process, as do those not yet
done where no process can be forked (memory, the process limit).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from .cluster import WORKERS_PER_CORE, usable_cores
from .engine import _error_text
from .plan import Cell
from .rows import curve_rows, failed_curve
from .sweep import Sweep

#: in a forked process, the run's curves, read by index (set by _start from the parent's list, not pickled)
_CURVES: list[tuple[Cell, Sweep]] = []
Done = tuple[Cell, Sweep, list[dict[str, Any]]]


def curve_processes(todo_curves: list[tuple[Cell, Sweep]]) -> int:
    """How many processes train these curves: ESTBENCH_CURVE_PROCESSES where it is a positive integer, else the
    usable cores; at most one per curve and WORKERS_PER_CORE per usable core (as a local Dask cluster without
    --force); 1 (this process) where fork is unsafe, in a daemonic process, or where the curves run on a GPU."""
    if len(todo_curves) < 2 or not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return 1  # a daemonic process (a multiprocessing pool's worker) may not start processes (reports.drawing too)
    if any(torch.device(sweep.device).type != "cpu" for _, sweep in todo_curves):
        return 1  # a forked child cannot use its parent's CUDA context
    try:
        wanted = int(os.environ.get("ESTBENCH_CURVE_PROCESSES", "0"))
    except ValueError:
        wanted = 0
    cores = usable_cores()
    # more than WORKERS_PER_CORE a core would fill the memory with copies of torch's working set for no speed
    return min(wanted if wanted >= 1 else cores, WORKERS_PER_CORE * cores, len(todo_curves))


def share_cores(processes: int) -> tuple[int, int]:
    """(curves trained at once beside the cells, torch threads of this process's cells meanwhile): half the usable
    cores each (2 cores: one curve beside cells on one thread), the cells' threads at most torch's own."""
    cores = usable_cores()
    beside = max(1, min(processes, cores // 2))
    return beside, max(1, min(torch.get_num_threads(), cores - beside))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, then back."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hand_out_order(curves: list[tuple[Cell, Sweep]]) -> list[int]:
    """The order the pool hands the curves out in: each problem's first curve, then every curve of the first
    training seed, then of the second, and so on, each in the plan's order. The progress lines then know each
    problem's pace early and each estimator's once its first seed is back (its seeds take about the same time), and
    the run still ends on the plan's last, small problems' curves."""
    seen: set[str] = set()
    first = [i for i, (cell, _) in enumerate(curves) if cell.problem.name not in seen and not seen.add(cell.problem.name)]
    firsts = set(first)
    rest = sorted((i for i in range(len(curves)) if i not in firsts), key=lambda i: (curves[i][0].train_seed, i))
    return first + rest


def _start(curves: list[tuple[Cell, Sweep]]) -> None:
    global _CURVES
    _CURVES = curves
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills this process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command line's handler (KeyboardInterrupt), inherited


def _train(index: int) -> list[dict[str, Any]]:
    cell, sweep = _CURVES[index]
    return curve_rows(cell, sweep, sweep.context())


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's processes now (shutdown alone would wait for the curves they are training)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


class CurvePool:
    """Curves trained in ``processes`` forked processes, at most ``limit`` at a time (settable: fewer while the
    cells run here). A curve that finishes hands its process the next one at once (a done-callback, in the pool's
    own thread), whatever this process is doing. A context manager: leaving it by an exception (Ctrl-C, the caller
    stopped reading) kills the processes. ``start()`` hands out the first curves, ``ready()`` hands back those
    done so far without waiting, ``rest()`` every one left, each as it completes.

    Pools are created (processes forked) in this process's thread only; a pool whose process died is replaced
    there too. The lock is never held while a pool shuts down (its thread may be waiting for it)."""

    def __init__(self, curves: list[tuple[Cell, Sweep]], processes: int) -> None:
        self.curves, self.processes, self.limit = list(curves), processes, processes
        self._queue = deque(hand_out_order(self.curves))
        self._alone: set[int] = set()  # curves whose process died beside others: trained again with none beside them
        self._running: dict[Future, int] = {}
        self._done: list[Done] = []
        self._died: list[int] = []  # curves of the present pool lost when one of its processes died
        self._pool: ProcessPoolExecutor | None = None
        self._stale: list[ProcessPoolExecutor] = []  # pools given up, to shut down
        self._here = False  # no process could be forked: the curves left train in this process (rest())
        self._changed = threading.Condition(threading.RLock())
        self._context = multiprocessing.get_context("fork")  # the processes inherit the curves (not pickled)

    def __enter__(self) -> CurvePool:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        with self._changed:
            pools, self._pool, self._stale, self._here = [self._pool, *self._stale], None, [], True  # nothing more out
        for pool in pools:
            if pool is not None:
                if kind is None:
                    pool.shutdown(wait=True)
                else:
                    _kill(pool)

    def start(self) -> None:
        """Hand out the first curves (up to ``limit``)."""
        self._settle()

    def ready(self) -> list[Done]:
        """The curves finished since the last call (none waited for); more handed out, up to ``limit``."""
        self._settle()
        with self._changed:
            done, self._done = self._done, []
        return done

    def rest(self) -> Iterator[Done]:
        """Every curve not yet handed back, each as it completes."""
        while True:
            self._settle()
            with self._changed:
                while not self._done and self._running and not self._broken():
                    self._changed.wait()
                done, self._done = self._done, []
                left = bool(self._running or self._died or (self._queue and not self._here))
            yield from done
            if not left:
                break
        while self._queue:  # where no process could be forked: here, one after another
            cell, sweep = self.curves[self._queue.popleft()]
            yield cell, sweep, curve_rows(cell, sweep, sweep.context())

    def _broken(self) -> bool:
        """Whether the present pool lost a process and every curve it held has reported (lock held)."""
        return bool(self._died) and not self._running

    def _settle(self) -> None:
        """In this process's thread: replace a broken pool (its lost curves back to the queue's front, each to be
        trained alone, or, one that was, a failed row), then hand out curves up to ``limit``."""
        old = None
        with self._changed:
            if self._broken():
                died, self._died = self._died, []
                if len(died) == 1 and died[0] in self._alone:
                    cell, sweep = self.curves[died[0]]
                    self._done.append((cell, sweep, failed_curve(cell, sweep, "the process training this curve died "
                                       "(killed by a signal or the memory killer), also when it trained alone")))
                else:
                    self._alone.update(died)
                    self._queue.extendleft(reversed(died))
                old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=True)
        with self._changed:
            self._fill(may_fork=True)
            stale, self._stale = self._stale, []
        for pool in stale:
            pool.shutdown(wait=True)

    def _fill(self, may_fork: bool) -> None:
        """Hand out curves up to ``limit`` (lock held); a new pool (forked processes) only where ``may_fork``."""
        queue, running, alone = self._queue, self._running, self._alone
        while queue and not self._here and not self._died and len(running) < self.limit \
                and not alone.intersection(running.values()) and not (queue[0] in alone and running):
            if self._pool is None:
                if not may_fork:
                    return
                self._pool = ProcessPoolExecutor(self.processes, mp_context=self._context, initializer=_start,
                                                 initargs=(self.curves,))
            index = queue.popleft()
            try:
                future = self._pool.submit(_train, index)
            except BrokenProcessPool:  # a process died since: its curves' callbacks say which
                queue.appendleft(index)
                if running:
                    return
                self._stale.append(self._pool)  # it died idle: a fresh pool (shut down by _settle, not under the lock)
                self._pool = None
                continue
            except OSError:  # fork failed: what was handed out is trained again here (none of it was handed back)
                queue.extendleft(reversed([*running.values(), index]))
                running.clear()
                pool, self._pool, self._here = self._pool, None, True
                threading.Thread(target=_kill, args=(pool,), daemon=True).start()  # not under the lock
                return
            running[future] = index
            future.add_done_callback(self._finished)

    def _finished(self, future: Future) -> None:
        """A curve's future is done (the pool's thread, or this one where it was done already)."""
        with self._changed:
            index = self._running.pop(future, None)
            if index is None or future.cancelled():
                return  # a pool given up (fork failed, or the run stopped)
            cell, sweep = self.curves[index]
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                self._died.append(index)  # a broken pool ends every curve it held at once: _settle decides
            else:
                self._done.append((cell, sweep, future.result() if error is None
                                   else failed_curve(cell, sweep, _error_text(error))))
                self._fill(may_fork=False)  # its process takes the next curve now
            self._changed.notify_all()


def train_side_by_side(todo_curves: list[tuple[Cell, Sweep]], processes: int) -> Iterator[Done]:
    """Yields (cell, sweep, rows) for each curve as it completes, trained in ``processes`` forked processes."""
    with CurvePool(todo_curves, processes) as pool:
        yield from pool.rest()
