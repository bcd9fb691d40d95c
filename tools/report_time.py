"""Where the default report's time goes: runs `estbench report` (or `--quick`) into a folder and prints the
wall time of the run and of the report build, then seconds per problem and per (problem, estimator), each
unit (cell or training curve) timed from the one before it as the run reports it.

    python tools/report_time.py DIR [--quick] [--workers N]
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Any

from benchmarks.allocator import keep_freed_memory
from estbench import api
from reports import report


def main(out: str, quick: bool, workers: int | None = None) -> None:
    keep_freed_memory()  # as `estbench report` does
    units: list[tuple[str, str, float]] = []
    ends: list[list[tuple[bool, float]]] = []  # per plan run: (a curve?, seconds since the start) of each unit

    def progress(plan: Any):
        last = [time.perf_counter()]
        curves = {id(cell) for cell, _ in plan.curves}
        ends.append([])

        def done(cell: Any) -> None:
            if cell is not None:
                now = time.perf_counter()
                units.append((cell.problem.name, str(cell.estimator_key), now - last[0]))
                last[0] = now
                ends[-1].append((id(cell) in curves, now - start))
        return done

    built: list[float] = []
    build = report.build

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            built.append(time.perf_counter() - start)

    report.build = timed_build
    start = time.perf_counter()  # read by progress
    api.default_report(out, overwrite=True, progress=progress, quick=quick, workers=workers)
    total = time.perf_counter() - start
    print(f"total {total:.1f} s: run {total - built[0]:.1f} s, report build {built[0]:.1f} s, {len(units)} units")
    sweep = ends[0] if ends else []  # the sweep's plan (then the confirmation reruns')
    cell_times = [t for curve, t in sweep if not curve]
    if cell_times and len(cell_times) < len(sweep):
        by_then = sum(1 for curve, t in sweep if curve and t <= cell_times[-1])
        print(f"the sweep's last cell at {cell_times[-1]:.1f} s ({by_then} of {len(sweep) - len(cell_times)} training "
              f"curves done by then), its last curve at {max(t for curve, t in sweep if curve):.1f} s")
    per_problem: collections.Counter = collections.Counter()
    per_estimator: collections.Counter = collections.Counter()
    for problem, estimator, seconds in units:
        per_problem[problem] += seconds
        per_estimator[(problem, estimator)] += seconds
    for problem, seconds in per_problem.most_common():
        print(f"{seconds:7.1f} s  {problem}")
    for (problem, estimator), seconds in per_estimator.most_common(15):
        print(f"{seconds:7.1f} s  {problem} / {estimator}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    workers = None
    if "--workers" in args:
        at = args.index("--workers")
        workers = int(args[at + 1])
        del args[at:at + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], "--quick" in sys.argv[1:], workers)
