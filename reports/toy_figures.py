"""A toy problem's figures: its variance (and, where an estimator is biased, its MSE against the truth)
against each axis it swept and against n_samples, one figure per problem, drawn with matplotlib.

A figure holds only its problem's panels: one column per swept axis (n_samples last), one row per
gradient (the Gaussians' mu and sigma); a panel is drawn only where some estimator has two or more
values on it, and an estimator run at one value of an axis (an option variant at the base setting)
is left out of that panel rather than shown as a lone point. A problem that swept nothing gets a dot
plot of its estimators at the base setting instead. Each estimator keeps its style (reports.palette);
the legend lists the estimators drawn, below the panels and inside the figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .drawing import finish
from .load import axes
from .palette import style
from .tables import axis_slice, fmt

PANEL_W, PANEL_H = 3.5, 2.7  # inches


def value_ticks(ax: Any, values: pd.Series) -> None:
    """Ticks on the x axis at the values run, each labelled once (a log axis under a decade labels every minor tick)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xticks(sorted(values.unique()))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _panels(rows: pd.DataFrame, problem: str, base: dict[str, Any], y: str) -> list[tuple[str, pd.DataFrame]]:
    """(axis, rows) per panel column: the problem's swept axes, then n_samples; each estimator's rows
    kept only where it has two or more values of the axis."""
    out = []
    for axis in [*[a for a in axes(rows) if a != "n_samples"], "n_samples"]:
        d = axis_slice(rows, axis, {problem: base})
        d = d[d[y].notna() & (d[y] >= 0)]
        if d.empty:
            continue
        d = d[d.groupby(["estimator", "parameter"])[axis].transform("nunique") > 1]
        if not d.empty:
            out.append((axis, d))
    return out


def _figure(panels: int, rows: int) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(rows, panels, figsize=(max(panels * PANEL_W, 4.5), rows * PANEL_H + 1.1), squeeze=False,
                             layout="constrained")
    return fig, grid


def _handles(drawn: list[str], extra: list[tuple[str, dict[str, Any]]] = ()) -> list[Any]:
    from matplotlib.lines import Line2D

    return [*(Line2D([], [], label=e, **style(e).line()) for e in drawn), *(Line2D([], [], label=x, **kw) for x, kw in extra)]


def variance_figure(c: Any, df: pd.DataFrame, problem: str, base: dict[str, Any], y: str = "variance") -> Any:
    """``problem``'s ``y`` (variance, or MSE against the truth) against each axis it swept; None where
    it has no row of ``y``."""
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    if y not in rows or rows[y].notna().sum() == 0:
        return None
    panels = _panels(rows, problem, base, y)
    what = "variance of one estimate" if y == "variance" else "MSE against the truth"
    lo, hi = f"{y}_lo", f"{y}_hi"  # its 95% interval, where the file has one (files from before the MSE's have not)
    banded = lo in rows and rows[lo].notna().any()
    if not panels:
        return _dot_plot(c, rows, problem, base, y, what)
    params = list(dict.fromkeys(p for _, d in panels for p in d["parameter"]))
    drawn = [e for e in c.estimators if any((d["estimator"] == e).any() for _, d in panels)]
    extra = [("1/n from the smallest n", {"color": "black", "linestyle": ":"})] \
        if any(a == "n_samples" for a, _ in panels) else []
    fig, grid = _figure(len(panels), len(params))
    exact: dict[str, dict[str, Any]] = {}  # estimator -> {"axis value": reason}, its zero-variance points
    drawn_positive = {e for _, d in panels for e in d.loc[d[y] > 0, "estimator"]}
    for j, (axis, d) in enumerate(panels):
        for i, param in enumerate(params):
            ax, here = grid[i][j], d[d["parameter"] == param]
            if here.empty:
                ax.set_visible(False)
                continue
            positive = here[here[y] > 0]
            for est, line in here[here["estimator"].isin(positive["estimator"])].groupby("estimator", sort=False):
                line = line.sort_values(axis)
                shown = line[y] > 0  # a zero (a triangle below) breaks the line: it does not pass over that setting
                ax.plot(line[axis], line[y].where(shown), markersize=4, linewidth=1.2, label=est, **style(est).line())
                if lo in line and line[lo].notna().any():
                    ax.fill_between(line[axis], line[lo].where(shown), line[hi].where(shown),
                                    color=style(est).colour, alpha=0.13, linewidth=0)
                    alone = shown & ~shown.shift(1, fill_value=False) & ~shown.shift(-1, fill_value=False)
                    ax.vlines(line.loc[alone, axis], line.loc[alone, lo], line.loc[alone, hi],
                              color=style(est).colour, alpha=0.5, linewidth=1.2)  # a band has no width at one point
            if axis == "n_samples" and not positive.empty:
                n0 = positive["n_samples"].min()
                v0 = positive.loc[positive["n_samples"] == n0, y].median()
                ns = np.array(sorted(positive["n_samples"].unique()), dtype=float)
                ax.plot(ns, v0 * n0 / ns, color="black", linestyle=":", linewidth=1)
            ax.set_yscale("log")
            values = pd.to_numeric(here[axis], errors="coerce")
            if axis in ("n_samples", "sigma") or (values.min() > 0 and values.max() >= 8 * values.min()):
                ax.set_xscale("log")
                value_ticks(ax, here[axis])
            zeros = here[here[y] == 0]
            if not zeros.empty:  # a log axis cannot show an exact zero: a triangle at its floor
                floor = ax.get_ylim()[0]
                for est, pts in zeros.groupby("estimator", sort=False):
                    ax.scatter(pts[axis], [floor] * len(pts), marker="v", s=36, color=style(est).colour, clip_on=False,
                               zorder=5)
                    reasons = pts["exact_reason"] if "exact_reason" in pts else pd.Series("", index=pts.index)
                    for v, why in zip(pts[axis], reasons.fillna(""), strict=True):
                        exact.setdefault(est, {}).setdefault(f"{axis} {fmt(v)}", why)
            ax.set_title(f"gradient of {param}" if len(params) > 1 or param != "theta" else "", fontsize=9)
            ax.set_xlabel("samples per estimate n" if axis == "n_samples" else axis)
            ax.set_ylabel(what if j == 0 else "")
    at = ", ".join(f"{k} {fmt(v)}" for k, v in base.items() if k != "n_samples")
    title = (f"{problem}: {'variance' if y == 'variance' else 'MSE'} against each axis swept, the others at the base "
             f"setting ({at}{', n_samples ' + fmt(base['n_samples']) if 'n_samples' in base else ''})"
             + ("; bands: 95% intervals" if banded else "")
             + (f"; triangles at the floor: zero variance, exact there ({_exact_text(exact, drawn_positive)})"
                if exact else ""))
    finish(fig, title, _handles(drawn, extra))
    name = f"{problem}_{'variance' if y == 'variance' else 'mse'}.png"
    return c.save(fig, name, f"{problem}: {'variance' if y == 'variance' else 'MSE'} against each axis", problem=problem)


def _exact_text(exact: dict[str, dict[str, Any]], positive: set[str]) -> str:
    """'disarm at theta 0: <its declared reason>; ...' for the estimators drawn as triangles (exact_reason: what
    each estimator declares; none declared: every estimate was the same); 'at every setting' for one that has
    no nonzero variance in the figure."""
    parts = []
    for est, at in exact.items():
        reasons = sorted(set(at.values()) - {""})
        why = "; ".join(reasons) if reasons else "every estimate was the same"
        parts.append(f"{est} {'at ' + ', '.join(at) if est in positive else 'at every setting'}: {why}")
    return "; ".join(parts)


def _dot_plot(c: Any, rows: pd.DataFrame, problem: str, base: dict[str, Any], y: str, what: str) -> Any:
    """The problem's estimators at its base setting, one dot (and interval) each, per gradient."""
    d = rows
    for k, v in base.items():
        if k in d:
            d = d[d[k] == v]
    d = d[d[y] > 0]
    if d.empty:
        return None
    params = list(dict.fromkeys(d["parameter"]))
    order = [e for e in c.estimators if e in set(d["estimator"])]
    fig, grid = _figure(len(params), 1)
    fig.set_size_inches(len(params) * 4.5 + 1.5, 0.25 * len(order) + 1.4)
    for j, param in enumerate(params):
        ax, here = grid[0][j], d[d["parameter"] == param].set_index("estimator")
        ax.dot_plot = True  # single points on purpose (reports.figures.layout_faults)
        for k, est in enumerate(order):
            if est not in here.index:
                continue
            r = here.loc[est]
            ax.plot([r[y]], [k], linestyle="none", color=style(est).colour, marker=style(est).marker)
            if pd.notna(r.get(f"{y}_lo", np.nan)):
                ax.plot([r[f"{y}_lo"], r[f"{y}_hi"]], [k, k], color=style(est).colour, linewidth=1.5)
        ax.set_yticks(range(len(order)), order if j == 0 else [""] * len(order), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(what)
        ax.set_title(f"gradient of {param}", fontsize=9)
    finish(fig, f"{problem} at its base setting (lines: 95% intervals)", [])
    return c.save(fig, f"{problem}_{'variance' if y == 'variance' else 'mse'}.png",
                  f"{problem}: {'variance' if y == 'variance' else 'MSE'} per estimator", problem=problem)
