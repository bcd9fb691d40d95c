"""Progress of a run on stderr: a bar on a terminal, timed lines in a log (CI, nohup)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from typing import Any

#: Seconds between progress lines when stderr is not a terminal (CI logs, nohup);
#: $ESTBENCH_PROGRESS_EVERY overrides it (0: a line per cell).
PROGRESS_EVERY_S = 30.0
#: after the cells, the curves' pace is measured once this many seconds have passed (before: the pace beside them)
PACE_AFTER_S = 10.0


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
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(max(0.0, seconds))), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _size(cell: Any, sweep: Any) -> float:
    """A curve's size: one gradient estimate's memory (the problem's replicate_bytes) times its training steps; 0
    where the problem does not say (or fails to)."""
    try:
        size = float(cell.problem.replicate_bytes(cell.setting, cell.n_samples, sweep.context())) * sweep.train_steps
    except Exception:  # noqa: BLE001 - a plugin problem's fault costs the time left its weights, not the run
        return 0.0
    return size if math.isfinite(size) and size > 0 else 0.0


def _group(cell: Any) -> str:
    """A curve's group, as the plan declares it (``Cell.group``: the same estimator, problem, setting and samples,
    any training seed); a unit that declares none is its own group."""
    return str(getattr(cell, "group", cell.label))


def _progress_lines(plan: Any) -> _Lines:
    return _Lines(plan)


class _Lines:
    """Progress lines for a log: a line every ESTBENCH_PROGRESS_EVERY seconds with the units done, the time
    elapsed and the time left.

    Cells: a cell's time is the time since the cell before it (the cells run one after the other); the cells left
    of a problem take the mean of its cells done (of all cells done where none of it is): a VAE cell takes a
    thousand times a toy cell's.

    Curves: a curve's time is its own training time where the run loop gives it (``seconds``; its rows' last
    ``wall_time_s``, which leaves out its test-set evaluations), else the time since the curve before it. Each
    curve left is weighed by its size, the memory of one gradient estimate (``Problem.replicate_bytes``) times its
    training steps, at the seconds per unit of size of the nearest curves done: its own group's (the same
    estimator, problem and setting; its other seeds), else its problem's, else every curve's (a batch of 16 trains
    in a fraction of a batch of 128's time); before any is done, at least the time they have been training. The
    pool hands out each problem's first curve, then every group's first seed, first (benchmarks.curve_pool).

    Their work W is done at the pace measured (curve-seconds come back per second, up to the last one back) while
    the cells run and, once the cells are done and PACE_AFTER_S have passed, after them. The run loop declares
    how many curves train at once beside the cells and after them (``concurrency``, from its executor); before a
    pace is measured that is the pace, and the pace after the cells is the pace beside them x after / beside. The
    time left is the cells' C plus the curve work not done beside them, (W - pace beside x C) / pace after, and
    no less than the longest curve left at one process's pace. Without a declaration, one curve at a time: then
    C + W, or where a curve came back while cells were left, the longer of the two."""

    timed = True  # the run loop passes a curve's own training time

    def __init__(self, plan: Any) -> None:
        try:
            self.every = float(os.environ.get("ESTBENCH_PROGRESS_EVERY", PROGRESS_EVERY_S))
        except ValueError:
            self.every = PROGRESS_EVERY_S
        # each curve: (its group, its problem, its size); those not done yet
        self.curves = {id(c): (_group(c), c.problem.name, _size(c, sw)) for c, sw in plan.curves}
        self.curves_left = set(self.curves)
        self.curve_times: dict[str, list[Any]] = {}  # the curves done, by group, by problem and ("") all (_curve_left)
        self.remaining = Counter(c.problem.name for c, _ in plan.cells)  # the cells left, by problem
        self.cell_times: dict[str, tuple[float, int]] = {}
        self.total = len(plan.cells) + len(plan.curves)
        self.what = "cells and training curves done" if plan.curves else "cells done"  # both are units of the count
        self.start = self.last_line = time.monotonic()
        self.last_unit = {"cell": self.start, "curve": self.start}
        self.done = 0
        self.declared: tuple[int, int] | None = None
        self.own = {"beside": 0.0, "after": 0.0}  # curves' own seconds come back while cells ran, and after
        self.returned = {"beside": self.start, "after": self.start}  # when the last of them came back
        self.cells_end: float | None = None if plan.cells else self.start
        self.beside = False

    def concurrency(self, beside: int, after: int) -> None:
        """Curves trained at once while cells are left (0: none, they follow the cells) and after the cells."""
        self.declared = (max(0, beside), max(1, after))

    def _cell_mean(self, key: str) -> float | None:
        seconds, count = self.cell_times.get(key, (0.0, 0))
        return seconds / count if count else None

    def _cells_left(self) -> float:
        overall = self._cell_mean("") or 0.0
        return sum(n * (self._cell_mean(p) or overall) for p, n in self.remaining.items() if n > 0)

    def _curve_left(self, group: str, problem: str, size: float) -> float:
        """One curve's expected training time, from the nearest curves done."""
        for key in (group, problem, ""):
            done = self.curve_times.get(key)  # [seconds of those with a size, their size, all seconds, count]
            if done:
                return size * done[0] / done[1] if size > 0 and done[1] > 0 else done[2] / done[3]
        if self.declared and self.declared[0]:  # none done yet, all of them training since the start
            return max(0.0, time.monotonic() - self.start)
        return self._cell_mean("") or 0.0

    def _pace(self) -> tuple[float, float]:
        """(curve work done per second while the cells run, after them): as measured, from the curves' own times
        (after the cells, once PACE_AFTER_S have passed), else what the declared processes would do (after: the pace
        beside the cells x after / beside)."""
        beside, after = self.declared or ((1, 1) if self.beside else (0, 1))
        b_end = self.returned["beside"]  # up to the last curve that came back: none in flight is counted as done
        measured = self.own["beside"] / (b_end - self.start) if self.own["beside"] > 0 and b_end > self.start else 0.0
        pace_beside = measured or float(beside)
        a_end = self.returned["after"]
        if self.cells_end is not None and self.own["after"] > 0 and a_end - self.cells_end >= PACE_AFTER_S:
            return pace_beside, self.own["after"] / (a_end - self.cells_end)
        return pace_beside, (pace_beside * after / beside if beside and measured else float(after))

    def left(self) -> float:
        cells = self._cells_left()
        each = [self._curve_left(*self.curves[i]) for i in self.curves_left]
        work, longest = sum(each), max(each, default=0.0)
        if not work:
            return cells
        after = (self.declared or (0, 1))[1]
        pace_beside, pace_after = self._pace()
        return cells + max(longest * after / pace_after, max(0.0, work - pace_beside * cells) / pace_after)

    def __call__(self, cell: Any, seconds: float | None = None) -> None:
        now = time.monotonic()
        if cell is None:  # the closing line; none where no unit was done (a run refused: its error is the line)
            if self.done:
                print(f"estbench: {self.done}/{self.total} {self.what} in {_clock(now - self.start)}", file=sys.stderr,
                      flush=True)
            return
        curve = self.curves.get(id(cell))
        stream = "curve" if curve else "cell"
        if curve and any(self.remaining.values()):
            self.beside = True  # a curve came back while cells were left: the two streams run at once
        concurrent = self.beside or bool(self.declared and self.declared[0])
        since = self.last_unit[stream] if concurrent else max(self.last_unit.values())
        took = seconds if curve and seconds is not None and math.isfinite(seconds) else now - since
        self.last_unit[stream] = now
        if curve:
            self.curves_left.discard(id(cell))
            if took > 1e-3:  # units kept by --resume report at once; they say nothing of the time
                for key in (curve[0], curve[1], ""):
                    sums = self.curve_times.setdefault(key, [0.0, 0.0, 0.0, 0])
                    if curve[2] > 0:
                        sums[0], sums[1] = sums[0] + took, sums[1] + curve[2]
                    sums[2], sums[3] = sums[2] + took, sums[3] + 1
                phase = "after" if self.cells_end is not None else "beside"
                self.own[phase] += took
                self.returned[phase] = now
        else:
            name = cell.problem.name
            if took > 1e-3:
                for key in (name, ""):  # a problem's cells and ("") every cell: (seconds, count)
                    seconds, count = self.cell_times.get(key, (0.0, 0))
                    self.cell_times[key] = (seconds + took, count + 1)
            if self.remaining[name] > 0:
                self.remaining[name] -= 1
            if self.cells_end is None and not any(self.remaining.values()):
                self.cells_end = now
        self.done += 1
        if now - self.last_line >= self.every and self.done < self.total:
            self.last_line = now
            print(f"estbench: {self.done}/{self.total} {self.what}, {_clock(now - self.start)} elapsed, about "
                  f"{_clock(self.left())} left (last: {cell.label})", file=sys.stderr, flush=True)
