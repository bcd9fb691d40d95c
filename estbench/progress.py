"""Progress of a run on stderr: a bar on a terminal, timed lines in a log (CI, nohup)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

#: Seconds between progress lines when stderr is not a terminal (CI logs, nohup);
#: $ESTBENCH_PROGRESS_EVERY overrides it (0: a line per cell).
PROGRESS_EVERY_S = 30.0


def progress(plan: Any, quiet: bool):
    """Progress on stderr; returns a callback(cell), closed by callback(None).

    On a terminal, a tqdm bar. Elsewhere (CI logs, nohup), a line every PROGRESS_EVERY_S
    seconds: cells done / total, elapsed, estimated remaining; and one at the end."""
    if quiet:
        def silent(cell: Any) -> None:
            return None

        silent.quiet = True  # type: ignore[attr-defined]  # read by a cluster run's per-worker lines
        return silent
    if not sys.stderr.isatty():
        return _progress_lines(plan)
    from tqdm import tqdm

    bar = tqdm(total=len(plan), unit="unit" if plan.curves else "cell", file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(cell: Any) -> None:
        if cell is None:
            bar.close()
            return
        bar.set_postfix_str(cell.label[-60:], refresh=False)
        bar.update(1)

    return update


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _progress_lines(plan: Any):
    """Progress lines for a log. The time left is estimated per kind of unit (a problem's cells, its training
    curves) from the mean time of the units of that kind done so far (of all units of their stream where none of a
    kind is done yet): a VAE cell takes a thousand times a toy cell's. Cells and curves are two streams, each unit
    timed from the one before it in its stream: where curves have come back while cells were left (they train
    beside the cells, benchmarks.curve_pool), the time left is the longer stream's, else the two added."""
    try:
        every = float(os.environ.get("ESTBENCH_PROGRESS_EVERY", PROGRESS_EVERY_S))
    except ValueError:
        every = PROGRESS_EVERY_S
    curve_ids = {id(c) for c, _ in plan.curves}
    remaining = Counter([(c.problem.name, "cell") for c, _ in plan.cells] + [(c.problem.name, "curve") for c, _ in plan.curves])
    total = sum(remaining.values())
    done_what = "cells and training curves done" if plan.curves else "cells done"  # both are units of the count
    start = last_line = time.monotonic()
    last_unit = {"cell": start, "curve": start}
    spent: dict[tuple, list[float]] = {}
    done, beside = 0, False

    def stream_left(stream: str) -> float:
        pooled = [t for k, ts in spent.items() if k[1] == stream for t in ts] or [t for ts in spent.values() for t in ts]
        overall = sum(pooled) / len(pooled) if pooled else 0.0
        mean = {k: sum(ts) / len(ts) for k, ts in spent.items() if ts}
        return sum(n * mean.get(k, overall) for k, n in remaining.items() if k[1] == stream)

    def left() -> float:
        cells, curves = stream_left("cell"), stream_left("curve")
        return max(cells, curves) if beside else cells + curves

    def update(cell: Any) -> None:
        nonlocal done, last_line, beside
        now = time.monotonic()
        if cell is None:  # the closing line; none where no unit was done (a run refused: its error is the line)
            if done:
                print(f"estbench: {done}/{total} {done_what} in {_clock(now - start)}", file=sys.stderr, flush=True)
            return
        stream = "curve" if id(cell) in curve_ids else "cell"
        kind = (cell.problem.name, stream)
        if stream == "curve" and any(n for k, n in remaining.items() if k[1] == "cell"):
            beside = True  # a curve came back while cells were left: the two streams run at once
        since = last_unit[stream] if beside else max(last_unit.values())  # one after the other: the last unit's end
        if now - since > 1e-3:  # units kept by --resume report at once; they say nothing of the time
            spent.setdefault(kind, []).append(now - since)
        last_unit[stream] = now
        if remaining[kind] > 0:
            remaining[kind] -= 1
        done += 1
        if now - last_line >= every and done < total:
            last_line = now
            print(f"estbench: {done}/{total} {done_what}, {_clock(now - start)} elapsed, about {_clock(left())} left "
                  f"(last: {cell.label})", file=sys.stderr, flush=True)

    return update
