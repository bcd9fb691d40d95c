"""A run's training curves side by side in forked processes (the serial executor's, after its cells).

A curve is one core's work whatever its torch threads (300 steps of the binary VAE: 0.87-1.04 s with one thread,
0.78-1.02 s with two; docs/performance.md), so on a machine of several cores the curves train in as many
processes of one thread each. The processes are forked from this one after the cells: they have its estimators,
problems and plugins (a notebook's own classes included) without importing or shipping anything, and hand back
rows, which this process alone writes. A curve's numbers are those of training it here (each is seeded from its
identity; docs/performance.md compares them). A process that dies (a plugin that kills it, the memory killer)
takes no other curve with it: the curves it was training are run again one at a time, and one that kills its
process alone becomes a failed row. Ctrl-C stops them all at once (the processes ignore SIGINT; this one kills
them).

``ESTBENCH_CURVE_PROCESSES=N`` sets the number of processes (1: every curve in this process, one after another).
Forking needs Linux and a CPU run: elsewhere, or on a GPU, the curves train in this process, as do those not yet
done where no process can be forked (memory, the process limit).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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


def train_side_by_side(todo_curves: list[tuple[Cell, Sweep]], processes: int) -> Iterator[tuple[Cell, Sweep, list]]:
    """Yields (cell, sweep, rows) for each curve as it completes, trained in ``processes`` forked processes."""
    curves = list(todo_curves)
    queue = deque(range(len(curves)))
    alone: set[int] = set()  # curves whose process died beside others: trained again with none beside them
    context = multiprocessing.get_context("fork")  # the processes inherit ``curves`` (initargs are not pickled)
    while queue:
        pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start, initargs=(curves,))
        ended = False
        try:
            yield from _drain(pool, curves, queue, alone, processes)
            ended = True
        except _CannotFork:
            break
        finally:
            if ended:
                pool.shutdown(wait=True)
            else:  # an exception, Ctrl-C, the caller stopped reading, or no process could be forked
                _kill(pool)
    for index in queue:  # where no process could be forked: here, one after another
        cell, sweep = curves[index]
        yield cell, sweep, curve_rows(cell, sweep, sweep.context())


class _CannotFork(Exception):
    """No process could be forked (memory, the process limit): the curves not yet done train in this process."""


def _drain(pool: ProcessPoolExecutor, curves: list[tuple[Cell, Sweep]], queue: deque, alone: set[int],
           processes: int) -> Iterator[tuple[Cell, Sweep, list]]:
    """Train the queue's curves on ``pool`` until it is empty or the pool breaks (a process died): then the curves
    it was training go back to the queue's front, each to be trained alone, or, one that was, become failed rows."""
    running: dict[Future, int] = {}
    while queue or running:
        while queue and len(running) < processes and not alone.intersection(running.values()) \
                and not (queue[0] in alone and running):
            index = queue.popleft()
            try:
                running[pool.submit(_train, index)] = index
            except BrokenProcessPool:  # a process died since the last wait: its curves say which below
                queue.appendleft(index)
                if not running:
                    return
                break
            except OSError as exc:  # fork failed: what was submitted is trained again here (none of it was yielded)
                queue.extendleft(reversed([*running.values(), index]))
                raise _CannotFork from exc
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        broken = any(isinstance(f.exception(), BrokenProcessPool) for f in finished)
        if broken:
            finished, _ = wait(running)  # a broken pool ends every curve it held at once
        died = []
        for future in finished:
            index = running.pop(future)
            cell, sweep = curves[index]
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                died.append(index)
            else:
                yield cell, sweep, future.result() if error is None else failed_curve(cell, sweep, _error_text(error))
        if broken:
            if len(died) == 1 and died[0] in alone:
                cell, sweep = curves[died[0]]
                yield cell, sweep, failed_curve(cell, sweep, "the process training this curve died (killed by a "
                                                "signal or the memory killer), also when it trained alone")
            else:
                alone.update(died)
                queue.extendleft(reversed(died))
            return  # a fresh pool for the rest
