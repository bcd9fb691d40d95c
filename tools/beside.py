"""Do a report's cells and its training curves slow each other? The default report's cells alone (its sweeps with
no training curves, in this process, on ``--threads N`` torch threads), or with its curves training beside them
(``--beside``: one forked process of one thread trains the report's curves one after another until the cells are
done); or ``--curves A B``: the report's curves A to B-1 in this process, one thread (run it twice at once with a
cells run to see the curves' side).

    python tools/beside.py [--threads N] [--beside]
    python tools/beside.py --curves A B
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any

import torch

from benchmarks.allocator import keep_freed_memory
from benchmarks.plan import curve_cells
from benchmarks.rows import curve_rows
from benchmarks.sweep import report_sweeps
from estbench import api


def _curves() -> list:
    return [(c, s) for s in report_sweeps(api.sweep(None, None)) for c in curve_cells(s)]


def curves(a: int, b: int) -> float:
    torch.set_num_threads(1)
    start = time.perf_counter()
    for cell, sweep in _curves()[a:b]:
        curve_rows(cell, sweep, sweep.context())
    return time.perf_counter() - start


def _train_forever(done: Any) -> None:
    torch.set_num_threads(1)
    todo = _curves()
    while True:
        for cell, sweep in todo:
            curve_rows(cell, sweep, sweep.context())
            done.value += 1


def cells(threads: int, beside: bool) -> tuple[float, int]:
    """(seconds of the cells, curves trained beside them)."""
    keep_freed_memory()  # as estbench's commands do
    fork = multiprocessing.get_context("fork")
    count = fork.Value("i", 0)
    trainer = fork.Process(target=_train_forever, args=(count,), daemon=True)
    if beside:
        trainer.start()
    torch.set_num_threads(threads)
    plan = api._plan([s.with_overrides(train_steps=0) for s in report_sweeps(api.sweep(None, None))], False)
    start = time.perf_counter()
    try:
        api._run(plan, None, None)
        return time.perf_counter() - start, count.value
    finally:
        if beside:
            trainer.kill()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--curves"] and len(args) == 3:
        print(f"curves {args[1]}-{args[2]}: {curves(int(args[1]), int(args[2])):.1f} s")
    elif set(args) - {"--beside", "--threads"} <= {a for a in args if a.isdigit()}:
        n = int(args[args.index("--threads") + 1]) if "--threads" in args else torch.get_num_threads()
        seconds, trained = cells(n, "--beside" in args)
        print(f"cells on {n} thread(s){', curves beside' if '--beside' in args else ''}: {seconds:.1f} s"
              + (f" ({trained} curves trained beside them)" if "--beside" in args else ""))
    else:
        sys.exit(__doc__)
