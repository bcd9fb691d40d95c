"""Drawing the report's figures: matplotlib's settings, and the figures drawn side by side in processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: processes that draw the figures side by side (at most; no more than the cores this process may use)
FIGURE_PROCESSES = 4


def theme() -> None:
    """Where figures are drawn (this process or a drawing process): the Agg backend, seaborn's theme."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")


#: inches per legend row, per character of a legend label (8 pt)
LEGEND_ENTRY_H, LEGEND_CHAR_W = 0.2, 0.07


def wrap(text: str, fig: Any, points: float = 10) -> str:
    """``text`` broken into lines that fit ``fig``'s width at ``points`` (about 0.55 em per character)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(20, int(fig.get_figwidth() * 72 / (0.55 * points)) - 4)))


def legend_columns(labels: list[str], width: float) -> int:
    """Columns of a legend of ``labels`` that fit ``width`` inches."""
    column = 0.75 + LEGEND_CHAR_W * max((len(x) for x in labels), default=0)
    return max(1, min(len(labels), int((width - 0.2) / column)))


def finish(fig: Any, title: str, handles: list[Any]) -> None:
    """A constrained-layout figure's legend of ``handles`` below its panels (the figure made taller by
    its rows) and its title wrapped to its width: neither leaves the figure nor overlaps a panel."""
    import math

    if handles:
        ncol = legend_columns([h.get_label() for h in handles], fig.get_figwidth())
        fig.set_figheight(fig.get_figheight() + math.ceil(len(handles) / ncol) * LEGEND_ENTRY_H + 0.3)
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(wrap(title, fig), fontsize=10)


def _draw(job: tuple[Any, tuple[Any, ...]]) -> Any:
    function, args = job
    return function(*args)


def draw_all(jobs: list[tuple[Any, tuple[Any, ...]]], processes: int | None = None, first: tuple[Any, ...] = ()) -> list[Any]:
    """Each job's figure, (function, args) -> function(*args), in the jobs' order (start_drawing, then its result)."""
    return start_drawing(jobs, processes, first)()


def start_drawing(jobs: list[tuple[Any, tuple[Any, ...]]], processes: int | None = None,
                  first: tuple[Any, ...] = ()) -> Callable[[], list[Any]]:
    """Start drawing each job's figure, (function, args) -> function(*args); the function returned waits for them and
    gives them in the jobs' order, so that the caller may work in between. Drawing is matplotlib's
    single-threaded Python, so the figures are drawn in up to ``processes`` processes side by side (the
    cores this process may use, at most FIGURE_PROCESSES; 1: here, one after the other, when the result is
    asked for). The processes are forks of this one: they start at once, with matplotlib imported, and run no
    torch code; a fresh interpreter (spawn, forkserver) would run a calling script's unguarded top level again.
    Where fork is not offered, in a daemonic process (a Dask or multiprocessing worker, which may not start
    processes), where processes cannot be started, or where a drawing process dies, the figures not yet drawn
    are drawn here. Jobs whose function is in ``first`` (the largest figures) start first."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    if processes is None:
        processes = min(FIGURE_PROCESSES, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    processes = max(1, min(processes, len(jobs)))
    theme()
    pool, futures = None, {}
    if processes > 1 and "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon:
        try:
            pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))
            for i in sorted(range(len(jobs)), key=lambda i: jobs[i][0] not in first):
                futures[i] = pool.submit(_draw, jobs[i])
        except (BrokenProcessPool, OSError):  # none could start: the rest are drawn here
            futures = {}

    def result() -> list[Any]:
        made: dict[int, Any] = {}
        try:
            for i in range(len(jobs)):
                if i in futures:
                    made[i] = futures[i].result()
        except (BrokenProcessPool, OSError):  # a process died: the rest are drawn here
            pass
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return [made[i] if i in made else _draw(job) for i, job in enumerate(jobs)]

    return result


def drop_invisible_minor_ticks(fig: Any) -> None:
    """Remove the minor ticks of ``fig``'s axes that would draw nothing: no tick mark (seaborn's whitegrid theme
    draws none), no minor grid line, and no label (a log axis labels its minor ticks only where it spans little).
    Laying them out took about a fifth of a figure's drawing time, and the saved image is the same pixel for pixel
    (tests/test_figures.py)."""
    import matplotlib as mpl
    from matplotlib.ticker import NullLocator

    for ax in fig.axes:
        for axis, sides in ((ax.xaxis, ("bottom", "top")), (ax.yaxis, ("left", "right"))):
            if isinstance(axis.get_minor_locator(), NullLocator):
                continue
            kw = axis.get_tick_params(which="minor")
            rc = {side: mpl.rcParams[f"{axis.axis_name}tick.{side}"] for side in sides}
            marks = any(kw.get(side, rc[side]) for side in sides)
            grid = kw.get("gridOn", mpl.rcParams["axes.grid"] and mpl.rcParams["axes.grid.which"] in ("minor", "both"))
            if marks or grid or any(axis.get_minor_formatter().format_ticks(list(axis.get_minorticklocs()))):
                continue
            axis.set_minor_locator(NullLocator())
