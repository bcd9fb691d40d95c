"""The report's figures, one function each, drawn with matplotlib (seaborn's theme). Imports no model code.

Each figure function takes a :class:`Canvas` (where figures go, the estimators in order) and the
data, draws its figure if the data allow, and returns a :class:`Figure` (title, relative path, the problem and section
it belongs to) or None. :func:`figures` draws them all. Every estimator keeps one colour and marker throughout
(reports.palette); the toy problems' figures are in reports.toy_figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from benchmarks.results_file import REFERENCE, atomic_write

from .drawing import drop_invisible_minor_ticks, finish, start_drawing, theme
from .load import option_columns
from .overview import overview
from .palette import style
from .tables import Z95, fmt, is_toy
from .toy_figures import value_ticks, variance_figure

FIGURES = "figures"
#: the figures' resolution (dots per inch)
DPI = 110
#: the training-curve figure frames its ELBO axis on the steps after this share of training
FRAMED_FROM = 0.2


class Figure(NamedTuple):
    title: str
    path: str  # relative to the report's folder
    #: the problem whose section shows it (None: the report's Figures section)
    problem: str | None = None
    #: "training" for a problem's training curves (shown in its training section)
    section: str = ""


Made = Figure | None


@dataclass
class Canvas:
    """Where the figures go and what they share: the estimators in order, the reference first, each
    with its colour (reports.palette). ``check``: before saving, draw each figure and raise
    LayoutError where a legend or title leaves the figure or a title overlaps a panel's (the tests)."""

    out: Path
    estimators: list[str]
    palette: dict[str, Any] = field(default_factory=dict)
    check: bool = False

    def __post_init__(self) -> None:
        self.palette = self.palette or {e: style(e).colour for e in self.estimators}

    def save(self, fig: Any, name: str, title: str, tight: bool = True, problem: str | None = None,
             section: str = "") -> Figure:
        import matplotlib.pyplot as plt

        drop_invisible_minor_ticks(fig)
        laid_out = not (tight and fig.get_layout_engine() is None)  # saved from one drawing; else savefig's tight box
        if self.check:
            if laid_out:
                fig.set_dpi(DPI)  # checked as saved: the check's drawing is the one whose pixels are written
            bad = layout_faults(fig, set(self.estimators))
            if bad:
                plt.close(fig)
                raise LayoutError(f"{name}: {'; '.join(bad)}")
        if laid_out:
            save_drawn(fig, self.out / FIGURES / name, drawn=self.check)
        else:
            atomic_write(self.out / FIGURES / name, lambda p: fig.savefig(p, dpi=DPI, format="png", bbox_inches="tight"))
        plt.close(fig)
        return Figure(title, f"{FIGURES}/{name}", problem, section)


def save_drawn(fig: Any, path: Path, drawn: bool = False) -> None:
    """``fig`` (a layout engine's: constrained) drawn once at DPI and its pixels written as a PNG: the same image,
    pixel for pixel, as ``fig.savefig(path, dpi=DPI)``, which draws a figure with a layout engine twice (once
    to lay it out without rendering, then to render), 8-15% of a report's build (docs/performance.md).
    ``drawn``: the figure was just drawn at DPI and not changed since (Canvas.check's drawing), so not again."""
    import matplotlib.image

    if not drawn:
        fig.set_dpi(DPI)
        fig.canvas.draw()  # the layout engine runs first, as in savefig's first pass
    pixels = np.asarray(fig.canvas.buffer_rgba())
    atomic_write(path, lambda p: matplotlib.image.imsave(p, pixels, format="png"))


class LayoutError(AssertionError):
    """A figure whose legend or title is cut off or overlaps (Canvas.check)."""


def layout_faults(fig: Any, estimators: Any = ()) -> list[str]:
    """What is wrong with ``fig`` as it would be saved: legends and titles outside the figure or over
    one another, the figure's title or legend over a panel, a panel without anything drawn or of single
    points only (but a dot plot), a line of one of ``estimators`` in another colour than its own."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    faults = []

    def inside(b: Any) -> bool:
        return b.x0 >= box.x0 - 1 and b.y0 >= box.y0 - 1 and b.x1 <= box.x1 + 1 and b.y1 <= box.y1 + 1

    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    for lg in legends:
        if not inside(lg.get_window_extent(renderer)):
            faults.append("a legend is cut off")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    sup = fig._suptitle
    texts = ([sup] if sup is not None and sup.get_text() else []) + [ax.title for ax in visible if ax.get_title()]
    for t in texts:
        if not inside(t.get_window_extent(renderer)):
            faults.append(f"title {t.get_text()[:40]!r} is cut off")
    for lg in legends:
        b = lg.get_window_extent(renderer)
        if any(t.get_window_extent(renderer).overlaps(b) for t in texts):
            faults.append("a legend overlaps a title")
        if lg in fig.legends and any(b.overlaps(ax.get_window_extent(renderer)) for ax in visible):
            faults.append("the figure's legend overlaps a panel")
    if sup is not None and sup.get_text():
        s = sup.get_window_extent(renderer)
        for ax in visible:
            title = ax.title.get_window_extent(renderer) if ax.get_title() else None
            if s.overlaps(ax.get_window_extent(renderer)) or (title is not None and s.overlaps(title)):
                faults.append("the figure's title overlaps a panel")
                break
    for ax in visible:
        if not (ax.lines or ax.collections or ax.patches or ax.images):
            faults.append("an empty panel")
            break
        drawn = [x for x in ax.get_lines() if not x.get_label().startswith("_")]
        if drawn and not getattr(ax, "dot_plot", False) and all(len(x.get_xdata()) < 2 for x in drawn):
            faults.append("a panel of single points (a dot plot's job)")
        for x in drawn:  # an estimator in another colour than its own (reports.palette)
            if x.get_label() in estimators and x.get_color() != style(x.get_label()).colour:
                faults.append(f"{x.get_label()} drawn in {x.get_color()}, not its colour {style(x.get_label()).colour}")
    return list(dict.fromkeys(faults))


def abs_bias_interval(bias: Any, bias_z: Any) -> tuple[Any, Any]:
    """95% interval of |bias| from the bias and its z (bias / its standard error, benchmarks.stats): |bias| -+ Z95
    standard errors, the lower end at least 0. A z of 0 or infinite (every estimate equal) gives the point itself;
    a missing z, no interval (NaN)."""
    bias, z = np.asarray(bias, dtype=float), np.asarray(bias_z, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(np.isfinite(z) & (z != 0), np.abs(bias / z), np.where(np.isnan(z), np.nan, 0.0))
    return np.maximum(np.abs(bias) - Z95 * se, 0.0), np.abs(bias) + Z95 * se


def option_effect(c: Canvas, df: pd.DataFrame) -> Made:
    """Estimators run with several values of an option (the relaxations' temperature): |bias| and
    MSE against the truth against the option's value, one line per estimator and gradient."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    options = [o for o in option_columns(df) if pd.api.types.is_numeric_dtype(df[o])]
    if not options or "mse" not in df:
        return None
    option = options[0]  # the first option swept with several values (the relaxations' temperature)
    for o in options:
        ran = df[df[o].notna()]
        if (ran.groupby(["problem", "estimator_name"])[o].nunique() > 1).any():
            option = o
            break
    d = df[(df["status"] == "ok") & df[option].notna() & df["mse"].notna()].copy()
    d["value"], d["name"], d["option"] = d[option], d["estimator_name"], option
    d = d[d.groupby(["problem", "name"])["value"].transform("nunique") > 1]
    if d.empty:
        return None
    d["abs_bias"] = d["bias"].abs()
    d["bias_lo"], d["bias_hi"] = abs_bias_interval(d["bias"], d["bias_z"] if "bias_z" in d else np.nan)
    # a problem's gradients (parameter groups) averaged; so are their intervals' ends (conservative)
    mse_banded = "mse_lo" in d and d["mse_lo"].notna().any()  # files from before the MSE's interval have none
    kept = ["abs_bias", "bias_lo", "bias_hi", "mse", *(["mse_lo", "mse_hi"] if mse_banded else [])]
    d = d.groupby(["problem", "name", "option", "value"], as_index=False)[kept].mean()
    problems_ = sorted(d["problem"].unique())
    names = list(dict.fromkeys(d["name"]))
    fig, axes_ = plt.subplots(2, len(problems_), figsize=(max(3.6 * len(problems_), 5), 5.6), squeeze=False,
                              layout="constrained")
    for j, problem in enumerate(problems_):
        for i, (col, label) in enumerate((("abs_bias", "|bias| (coordinate mean)"), ("mse", "MSE against the truth"))):
            ax = axes_[i][j]
            shown = d[d["problem"] == problem]
            # the bias panel's floor: a third of its lowest positive value or interval end; a band reaching 0 goes to it
            positive = pd.concat([shown["abs_bias"], shown["bias_lo"]])
            positive = positive[positive > 0]
            floor = positive.min() / 3 if col == "abs_bias" and not positive.empty else None
            for name, line in shown.groupby("name", sort=False):
                line = line.sort_values("value")
                ax.plot(line["value"], line[col], markersize=4, **style(name).line())
                if floor is not None:
                    ax.fill_between(line["value"], line["bias_lo"].clip(lower=floor), line["bias_hi"],
                                    color=style(name).colour, alpha=0.12, linewidth=0)
                elif col == "mse" and mse_banded:
                    ax.fill_between(line["value"], line["mse_lo"], line["mse_hi"], color=style(name).colour, alpha=0.12,
                                    linewidth=0)
            ax.set_xscale("log")
            value_ticks(ax, shown["value"])  # the values run, labelled (a range under a decade labelled every minor tick)
            ax.set_yscale("log")
            if floor is not None:
                ax.set_ylim(bottom=floor)
            ax.set_xlabel(option)
            ax.set_ylabel(label if j == 0 else "")
            ax.set_title(problem if i == 0 else "", fontsize=9)
    finish(fig, f"Biased estimators against their {option} (every other axis at its base setting); |bias| with its 95% "
                f"interval (from its z), MSE " + ("with its 95% interval" if mse_banded else "without one"),
           [Line2D([], [], label=n, **style(n).line()) for n in names])
    return c.save(fig, f"bias_vs_{option}.png", f"Bias and MSE against {option}")


def _bars(ax: Any, c: Canvas, d: pd.DataFrame, x: str, y: str, order: list[str], hue: list[str]) -> None:
    """Grouped bars of ``y`` per ``x`` category and estimator (log axis), each with its interval
    (``y``_lo, ``y``_hi) as an error bar where the rows have one."""
    width = 0.8 / max(len(hue), 1)
    lo, hi = f"{y}_lo", f"{y}_hi"
    for j, est in enumerate(hue):
        rows = d[d["estimator"] == est].set_index(x)
        xs = [i - 0.4 + width * (j + 0.5) for i, cat in enumerate(order) if cat in rows.index]
        cats = [cat for cat in order if cat in rows.index]
        if not cats:
            continue
        vals = rows.loc[cats, y].to_numpy(dtype=float)
        ax.bar(xs, vals, width=width, color=c.palette.get(est), label=est)
        if lo in rows and rows.loc[cats, lo].notna().any():
            err = np.vstack([vals - rows.loc[cats, lo].to_numpy(dtype=float), rows.loc[cats, hi].to_numpy(dtype=float) - vals])
            ax.errorbar(xs, vals, yerr=np.nan_to_num(err), fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_xticks(range(len(order)), order)
    ax.set_yscale("log")


def model_gradient_variance(c: Canvas, df: pd.DataFrame, problem: str) -> Made:
    """A model problem: total variance of the encoder gradient per estimator at each checkpoint, and, where the exact
    gradient is known, the MSE against it. A zero variance (``exact``) has no bar on the log axis, nor has its MSE
    where its bias is within rounding (bias z 0: the MSE is float32's rounding, ~1e-16); the title says so."""
    import matplotlib.pyplot as plt

    vae = df[(df["problem"] == problem) & (df["status"] == "ok")]
    if vae.empty or ("K" in vae and vae["K"].nunique() > 1):  # at several K: model_against_k instead
        return None
    has_mse = "mse" in vae and vae["mse"].notna().any()
    panels = [("total_variance", "total variance of the encoder gradient")]
    if has_mse:
        panels.append(("mse", "MSE against the exact gradient"))
    fig, axes_ = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), squeeze=False, layout="constrained")
    order = [k for k in ("untrained", "trained") if k in set(vae["checkpoint"])]
    hue = [e for e in c.estimators if e in set(vae["estimator"])]
    exact = (vae["total_variance"] == 0) & (vae["bias_z"] == 0 if "bias_z" in vae else False)  # its MSE: rounding
    for ax, (col, label) in zip(axes_[0], panels, strict=True):
        _bars(ax, c, vae[(vae[col] > 0) & (~exact if col == "mse" else True)], "checkpoint", col, order, hue)
        ax.set_ylabel(label)
    zero, mse = sorted(set(vae.loc[vae["total_variance"] == 0, "estimator"])), has_mse and exact.any()
    finish(fig, f"{problem}: ELBO gradient per estimator (error bars: 95% intervals)" + (f"; {', '.join(zero)}: zero variance"
           f"{' and MSE within rounding' if mse else ''}, no bar" if zero else ""), axes_[0][0].get_legend_handles_labels()[0])
    return c.save(fig, f"{problem}_gradient_variance.png", f"{problem}: encoder-gradient variance"
                  + (" and MSE" if has_mse else ""), problem=problem)


def model_against_k(c: Canvas, df: pd.DataFrame, problem: str) -> Made:
    """A model problem on the K-sample bound run at several K: the encoder gradient's total variance
    (95% bands) and its signal-to-noise ratio against K, one line per estimator and checkpoint (the
    figure of Rainforth et al. 2018 and Tucker et al. 2019)."""
    import matplotlib.pyplot as plt

    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    if "K" not in rows or rows["K"].nunique() < 2:
        return None
    panels = [("total_variance", "total variance of the encoder gradient"), ("snr", "SNR of the encoder gradient")]
    if "mse" in rows and rows["mse"].notna().any():
        panels.append(("mse", "MSE against the exact gradient"))
    fig, axes_ = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), layout="constrained")
    for (est, ckpt), line in rows.groupby(["estimator", "checkpoint"]):
        line = line.sort_values("K")
        label = est if rows["checkpoint"].nunique() == 1 else f"{est} ({ckpt})"
        style = dict(color=c.palette.get(est), marker="o", linestyle="-" if ckpt == "untrained" else "--")
        axes_[0].plot(line["K"], line["total_variance"], label=label, **style)
        if "total_variance_lo" in line and line["total_variance_lo"].notna().any():
            axes_[0].fill_between(line["K"], line["total_variance_lo"], line["total_variance_hi"],
                                  color=c.palette.get(est), alpha=0.15, linewidth=0)
        for ax, (col, _) in zip(axes_[1:], panels[1:], strict=True):
            ax.plot(line["K"], line[col], label=label, **style)
            if f"{col}_lo" in line and line[f"{col}_lo"].notna().any():
                ax.fill_between(line["K"], line[f"{col}_lo"].clip(lower=1e-300), line[f"{col}_hi"],
                                color=c.palette.get(est), alpha=0.15, linewidth=0)
    r_used = rows["replicates_used"] if "replicates_used" in rows else rows["replicates"]
    floor = math.sqrt(2 / (math.pi * float(r_used.min())))  # E|mean| / std of a zero-mean normal at R estimates
    axes_[1].axhline(floor, color="grey", linestyle=":", linewidth=1,
                     label=f"SNR that zero-mean normal estimates show at R = {int(r_used.min())}")
    for ax, (_, label) in zip(axes_, panels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("K, samples in the bound")
        ax.set_ylabel(label)
    handles = {h.get_label(): h for ax in axes_ for h in ax.get_legend_handles_labels()[0]}
    finish(fig, f"{problem}: the K-sample bound's encoder gradient against K (bands: 95% intervals)", list(handles.values()))
    return c.save(fig, f"{problem}_against_K.png", f"{problem}: encoder-gradient variance and SNR against K",
                  problem=problem)


def model_test_elbo(c: Canvas, tr: pd.DataFrame | None, problem: str) -> Made:
    """A model problem's training curves: the mean test ELBO over the seeds with its 95% band
    (reports.training), against step and against training wall time, per estimator."""
    import matplotlib.pyplot as plt

    from .training import CURVE, mean_curves, seeds_status, with_seeds

    if tr is None or "elbo_test" not in tr:
        return None
    tr = with_seeds(tr[tr["problem"] == problem])
    curves = mean_curves(tr)
    if curves.empty:
        return None
    ends = tr.sort_values("step").groupby([*CURVE, "train_seed"], sort=False)["status"].last()
    final = ends.groupby(level="estimator").agg(seeds_status)  # as the training table says it
    seeds = int(curves["seeds"].max())
    # the whole run; then, framed on the steps after the first FRAMED_FROM of training (where the estimators
    # differ, not the first steps' rise), against step and against wall time
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9), layout="constrained", gridspec_kw={"width_ratios": [0.55, 1, 1]})
    axes[2].sharey(axes[1])
    panels = ((axes[0], "step", "training step (whole run)"), (axes[1], "step", "training step"),
              (axes[2], "wall_time_s", "training wall time (s, mean over seeds)"))
    for ax, x, label in panels:
        for est, line in curves.groupby("estimator", sort=False):
            line = line.sort_values(x)
            name = ("exact (the ceiling: the exact gradient)" if est == "exact" else
                    est if final.get(est, "ok") == "ok" else f"{est}: {final[est]}")
            look = style(est)
            ax.plot(line[x], line["elbo_test"], label=name, markersize=3, linewidth=1.2, **{**look.line(), "marker": "."})
            if seeds > 1 and ax is not axes[0]:
                ax.fill_between(line[x], line["lo"], line["hi"], color=look.colour, alpha=0.12, linewidth=0)
        ax.set_xlabel(label)
        ax.set_ylabel("test ELBO (nats per image)" if ax is not axes[2] else "")
    late = curves[curves["step"] >= FRAMED_FROM * curves["step"].max()]
    lo, hi = late["lo"].fillna(late["elbo_test"]).min(), late["hi"].fillna(late["elbo_test"]).max()
    axes[1].set_ylim(lo - 0.08 * (hi - lo + 1e-9), hi + 0.08 * (hi - lo + 1e-9))
    axes[1].set_xlim(left=FRAMED_FROM * curves["step"].max())
    axes[1].set_title(f"from step {fmt(FRAMED_FROM * curves['step'].max())}", fontsize=9)
    over = f"mean of {seeds} seeds, bands: 95% intervals" if seeds > 1 else "one seed"
    finish(fig, f"{problem}: test ELBO while training with each estimator ({over}; the same seeds and steps for each, "
           "Adam); left: the whole run, middle and right: framed on the later steps, where the estimators differ",
           axes[0].get_lines())
    return c.save(fig, f"{problem}_test_elbo.png", f"{problem}: test ELBO curves", problem=problem, section="training")


def _with_biased(df: pd.DataFrame) -> list[str]:
    """Toy problems on which some estimator is flagged biased: their MSE tells what variance hides."""
    from .text import flagged_biased

    ok = df[is_toy(df) & (df["status"] == "ok")]
    return [p for p, rows in ok.groupby("problem") if flagged_biased(rows)]


def start_figures(df: pd.DataFrame, tr: pd.DataFrame | None, out: Path, base: dict[str, dict[str, Any]],
                  processes: int | None = None, check: bool = False) -> Callable[[], list[Figure]]:
    """Start drawing every figure the data allow (in up to ``processes`` processes, see start_drawing); returns a function
    that waits for them and gives them in order. ``check``: Canvas.check. Confirmation reruns are not drawn."""
    from .confirm import is_confirmation

    df = df[~is_confirmation(df)]
    theme()
    names = set(df["estimator"]) | (set(tr["estimator"].dropna()) if tr is not None else set())
    estimators = sorted(names, key=lambda e: (e != REFERENCE, e))
    c = Canvas(out, estimators, check=check)
    biased = set(_with_biased(df))
    toys = df.loc[is_toy(df), "problem"].unique()
    models = df.loc[~is_toy(df), "problem"].unique()
    jobs = [
        (overview, (c, df, base)),
        *(job for p in toys for job in ((variance_figure, (c, df, p, base.get(p, {}))),
                                        *([(variance_figure, (c, df, p, base.get(p, {}), "mse"))] if p in biased else []))),
        (option_effect, (c, df)),
        *(job for p in models for job in ((model_gradient_variance, (c, df, p)), (model_against_k, (c, df, p)),
                                          (model_test_elbo, (c, tr, p)))),
        (overview, (c, df, base, "efficiency_vs_reference"))]
    pending = start_drawing(jobs, processes)
    return lambda: [m for m in pending() if m is not None]
