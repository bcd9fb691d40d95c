"""The report's overview: every estimator on every problem in one picture, the variance of one estimate
relative to the problem's reference estimator at the problem's base setting, with its 95% interval.

The rows it shows (``overview_rows``): a toy problem's cells at its base setting (every axis and
n_samples at the value its table uses), one per gradient (the Gaussians' mu and sigma); a model
problem's at each checkpoint, at its most common n_samples and K. tables.csv marks them in its
``overview`` column, so the figure can be read as a table there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .drawing import finish
from .palette import FAMILIES, style
from .tables import _numeric_axes, is_toy
from .text import standing_flags

PANEL_COLUMNS = 5
PART_MARKERS = ("o", "s", "^", "D")


def overview_rows(df: pd.DataFrame, base: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The ok rows the overview shows (see the module's docstring), with ``part`` (the gradient or the
    checkpoint), ``biased`` (this cell flagged biased by the report's rule, or the estimator declared biased)
    and ``exact`` (zero variance)."""
    out = []
    ok = df[(df["status"] == "ok") & df["variance_vs_reference"].notna()] if "variance_vs_reference" in df else df.iloc[0:0]
    for problem, rows in ok.groupby("problem", sort=False):
        if is_toy(rows).all():
            rows = _numeric_axes(rows)
            for axis, value in base.get(problem, {}).items():
                if axis in rows:
                    rows = rows[rows[axis] == value]
            part = rows["parameter"]
        else:
            for axis in ("n_samples", "K"):
                if axis in rows and rows[axis].notna().any():
                    rows = rows[rows[axis] == rows[axis].mode().min()]
            part = rows["checkpoint"] if "checkpoint" in rows else rows["parameter"]
        if rows.empty:
            continue
        flagged = False
        if "bias_z" in rows:  # this cell flagged by the report's rule over all its problem's cells (reports.text)
            mine = df[(df["problem"] == problem) & (df["status"] == "ok")]
            flagged = standing_flags(mine).reindex(rows.index, fill_value=False)
        declared = rows["estimator_unbiased"].astype(str).str.lower().isin(["no", "false", "0"]) \
            if "estimator_unbiased" in rows else False
        out.append(rows.assign(part=part.astype(str), biased=flagged | declared, exact=rows["variance"] == 0))
    return pd.concat(out) if out else ok.iloc[0:0].assign(part="", biased=False, exact=False)


def _order(estimators: list[str]) -> list[str]:
    """Estimators grouped by family (reports.palette), then by name."""
    families = ["exact", *FAMILIES, "other"]
    return sorted(estimators, key=lambda e: (families.index(style(e).family), e))


def overview(c: Any, df: pd.DataFrame, base: dict[str, dict[str, Any]], y: str = "variance_vs_reference") -> Any:
    """One panel per problem: each estimator's variance / the reference's at the base setting (log axis,
    95% interval), hollow where biased, a triangle at the edge where exact (left; efficiency: right);
    ``y`` "efficiency_vs_reference": the same for efficiency (efficiency.png). None without rows."""
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    variance = y == "variance_vs_reference"
    rows = overview_rows(df, base)
    if y not in rows:
        return None
    rows = rows[(rows[y] > 0) & np.isfinite(rows[y]) | rows["exact"]]
    if rows.empty:
        return None
    problems = list(dict.fromkeys(rows["problem"]))
    order = _order(list(dict.fromkeys(rows["estimator"])))
    where = {e: i for i, e in enumerate(order)}
    ncol = min(PANEL_COLUMNS, len(problems))
    nrow = -(-len(problems) // ncol)
    fig, grid = plt.subplots(nrow, ncol, figsize=(2.6 * ncol + 1.6, nrow * (0.17 * len(order) + 0.9) + 1.0),
                             squeeze=False, layout="constrained")
    parts_seen: dict[str, str] = {}
    for k, problem in enumerate(problems):
        ax = grid[k // ncol][k % ncol]
        here = rows[rows["problem"] == problem]
        parts = list(dict.fromkeys(here["part"]))
        positive = here.loc[~here["exact"], y]
        edge = (positive.min() / 3 if variance else positive.max() * 3) if not positive.empty else 1.0
        for j, part in enumerate(parts):
            marker = PART_MARKERS[j % len(PART_MARKERS)]
            parts_seen.setdefault(part, marker)
            shift = (j - (len(parts) - 1) / 2) * 0.22
            for _, r in here[here["part"] == part].iterrows():
                at, colour = where[r["estimator"]] + shift, style(r["estimator"]).colour
                if r["exact"]:
                    ax.plot([edge], [at], marker="<" if variance else ">", color=colour, linestyle="none", clip_on=False)
                    continue
                lo, hi = r.get(f"{y}_lo", np.nan), r.get(f"{y}_hi", np.nan)
                if pd.notna(lo) and pd.notna(hi):
                    ax.plot([lo, hi], [at, at], color=colour, linewidth=1.2)
                ax.plot([r[y]], [at], marker=marker, markersize=5, linestyle="none", color=colour,
                        markerfacecolor="white" if r["biased"] else colour)
        ax.axvline(1, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ref = here["reference_estimator"].dropna().astype(str)
        ax.set_title(f"{problem}\n/ {ref.iloc[0] if not ref.empty else 'reference'}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for k in range(len(problems), nrow * ncol):
        grid[k // ncol][k % ncol].set_visible(False)
    rows_at = range(len(order))
    for k in range(len(problems)):  # one row per estimator in every panel, named in the first column's
        ax = grid[k // ncol][k % ncol]
        ax.set_ylim(len(order) - 0.5, -0.5)
        if k % ncol == 0:
            ax.set_yticks(rows_at, order)
            ax.tick_params(axis="y", labelsize=7)
        else:  # the rows' grid lines without ticks: a tick costs its layout, on every panel (a third of the figure)
            ax.set_yticks([])
            ax.add_collection(LineCollection([[(0, y), (1, y)] for y in rows_at], transform=ax.get_yaxis_transform(),
                                             colors=mpl.rcParams["grid.color"], linewidths=mpl.rcParams["grid.linewidth"],
                                             zorder=0.5))
    handles = [Line2D([], [], color="grey", marker=m, linestyle="none", label=f"{p}") for p, m in parts_seen.items()]
    handles += [Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="none",
                       label="hollow: biased (flagged in this cell, or declared)"),
                Line2D([], [], color="grey", marker="<" if variance else ">", linestyle="none",
                       label=f"at the {'left' if variance else 'right'} edge: exact (zero variance)")]
    what = ("variance of one estimate" if variance else
            "efficiency (1 / (variance x time per estimate); higher is better)")
    finish(fig, f"Every estimator on every problem: {what} / the problem's reference estimator's (named under each "
           "problem), at the base setting; lines: 95% intervals" + ("" if variance else " (with the timing spread)")
           + "; markers: the gradient or checkpoint", handles)
    if variance:
        return c.save(fig, "overview.png", "Overview: variance relative to each problem's reference at its base setting",
                      problem="", section="overview")
    return c.save(fig, "efficiency.png", "Efficiency relative to each problem's reference estimator, at each base setting")
