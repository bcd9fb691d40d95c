"""The report's figures, one function each, drawn with seaborn. Imports no model code.

Each figure function takes a :class:`Canvas` (where figures go, the estimators' colours)
and the data, draws its figure if the data allow, and returns (title, relative path) or
None. :func:`figures` draws them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.results_file import REFERENCE, atomic_write

from .drawing import draw_all, theme
from .load import axes, option_columns
from .tables import axis_slice, fmt, is_toy

FIGURES = "figures"
Made = tuple[str, str] | None


@dataclass
class Canvas:
    """Where the figures go and what they share: one colour per estimator, the reference first."""

    out: Path
    estimators: list[str]
    palette: dict[str, Any] = field(default_factory=dict)

    def save(self, fig: Any, name: str, title: str, tight: bool = True) -> tuple[str, str]:
        import matplotlib.pyplot as plt

        kw = {"bbox_inches": "tight"} if tight else {}
        atomic_write(self.out / FIGURES / name, lambda p: fig.savefig(p, dpi=110, format="png", **kw))
        plt.close(fig)
        return title, f"{FIGURES}/{name}"


def _value_ticks(grid: Any, values: pd.Series) -> None:
    """Label a log x-axis at the values run, in plain numbers, without minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ticks = sorted(values.unique())
    for ax in grid.axes.flat:
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _positive(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["variance"] > 0) | (df["status"] != "ok")]  # log axes cannot show an exact zero


def _intervals_and_zeros(c: Canvas, grid: Any, d: pd.DataFrame, zeros: pd.DataFrame, x: str) -> bool:
    """On a faceted variance figure (rows: parameter, columns: problem): each line's 95% interval as a
    band, and each zero variance, which a log axis cannot show, as a triangle at the axis floor.
    Returns whether any zero was drawn (the title then says what the triangles mean)."""
    drew = False
    for (param, problem), ax in grid.axes_dict.items():
        here = d[(d["parameter"] == param) & (d["problem"] == problem)]
        if "variance_lo" in here:
            for est, line in here.dropna(subset=["variance_lo"]).groupby("estimator"):
                line = line.sort_values(x)
                ax.fill_between(line[x], line["variance_lo"], line["variance_hi"], color=c.palette.get(est),
                                alpha=0.15, linewidth=0)
        z = zeros[(zeros["parameter"] == param) & (zeros["problem"] == problem)]
        if not z.empty:
            floor = ax.get_ylim()[0]
            for est, pts in z.groupby("estimator"):
                ax.scatter(pts[x], [floor] * len(pts), marker="v", s=40, color=c.palette.get(est), clip_on=False,
                           zorder=5)
            drew = True
    return drew


def variance_against(c: Canvas, df: pd.DataFrame, axis: str, base: dict[str, dict[str, Any]], y: str = "variance") -> Made:
    """Toy problems: variance (or MSE against the truth) against one axis, the others at the base setting."""
    import seaborn as sns

    d = axis_slice(_positive(df) if y == "variance" else df[(df[y] > 0) & (df["status"] == "ok")], axis, base)
    if not d.empty:  # a problem that ran one value of the axis (K: classes at their default) has no line here
        d = d[d.groupby("problem")[axis].transform("nunique") > 1]
    if d.empty or d[axis].nunique() < 2:
        return None
    g = sns.relplot(data=d, x=axis, y=y, hue="estimator", row="parameter", col="problem",
                    kind="line", marker="o", palette=c.palette, hue_order=c.estimators, errorbar=None,
                    height=2.8, aspect=1.2, facet_kws={"sharey": False})
    g.set(yscale="log")
    values = pd.to_numeric(d[axis], errors="coerce")
    if axis == "sigma" or (values.min() > 0 and values.max() >= 8 * values.min()):  # K: 1 to 64
        g.set(xscale="log")
        _value_ticks(g, d[axis])
    zero = False
    if y == "variance":
        zeros = axis_slice(df[(df["status"] == "ok") & (df["variance"] == 0)], axis, base)
        zero = _intervals_and_zeros(c, g, d, zeros[zeros["problem"].isin(d["problem"])], axis)
    g.set_titles("{col_name}, gradient of {row_name}")
    what = "variance of one estimate" if y == "variance" else "mean squared error against the truth"
    g.set_axis_labels(axis, what)
    g.figure.suptitle(f"{'Estimator variance' if y == 'variance' else 'MSE'} against {axis}\n"
                      f"(each problem's other axes at its base setting"
                      + ("; bands: 95% intervals" if y == "variance" else "")
                      + ("; triangles at the floor: zero variance" if zero else "") + ")")
    g.figure.subplots_adjust(top=0.84)
    name = f"{'variance' if y == 'variance' else 'mse'}_vs_{axis}.png"
    return c.save(g.figure, name, f"{'Variance' if y == 'variance' else 'MSE'} against {axis}", tight=False)


def option_effect(c: Canvas, df: pd.DataFrame) -> Made:
    """Estimators run with several values of an option (the relaxations' temperature): |bias| and
    MSE against the truth against the option's value, one line per estimator and gradient."""
    import matplotlib.pyplot as plt
    import seaborn as sns

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
    d = d.groupby(["problem", "name", "option", "value"], as_index=False)[["abs_bias", "mse"]].mean()
    problems_ = sorted(d["problem"].unique())
    fig, axes_ = plt.subplots(2, len(problems_), figsize=(4.2 * len(problems_), 6), squeeze=False)
    for j, problem in enumerate(problems_):
        for i, (col, label) in enumerate((("abs_bias", "|bias| (coordinate mean)"), ("mse", "MSE against the truth"))):
            ax = axes_[i][j]
            sns.lineplot(data=d[d["problem"] == problem], x="value", y=col, hue="name", marker="o", ax=ax)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(option)
            ax.set_ylabel(label)
            ax.set_title(problem)
    fig.suptitle(f"Biased estimators against their {option} (every other axis at its default)")
    fig.tight_layout()
    return c.save(fig, f"bias_vs_{option}.png", f"Bias and MSE against {option}")


def variance_against_n_samples(c: Canvas, df: pd.DataFrame, base: dict[str, dict[str, Any]]) -> Made:
    """Toy problems: variance against samples per estimate, with a 1/n reference line."""
    import seaborn as sns

    d = axis_slice(_positive(df), "n_samples", base)
    if d["n_samples"].nunique() < 2:
        return None
    g = sns.relplot(data=d, x="n_samples", y="variance", hue="estimator", row="parameter", col="problem",
                    kind="line", marker="o", palette=c.palette, hue_order=c.estimators, errorbar=None,
                    height=2.8, aspect=1.2, facet_kws={"sharey": False})
    g.set(xscale="log", yscale="log")
    _value_ticks(g, d["n_samples"])
    zeros = axis_slice(df[(df["status"] == "ok") & (df["variance"] == 0)], "n_samples", base)
    zero = _intervals_and_zeros(c, g, d, zeros[zeros["problem"].isin(d["problem"])], "n_samples")
    for (param, problem), ax in g.axes_dict.items():
        ref = d[(d["parameter"] == param) & (d["problem"] == problem)].sort_values("n_samples")
        if ref.empty:
            continue
        n0 = ref["n_samples"].min()
        v0 = ref[ref["n_samples"] == n0]["variance"].median()
        ns = np.array(sorted(ref["n_samples"].unique()), dtype=float)
        ax.plot(ns, v0 * n0 / ns, color="black", linestyle="--", linewidth=1, label="1/n")
    g.set_titles("{col_name}, gradient of {row_name}")
    g.set_axis_labels("samples per estimate n", "variance of one estimate")
    g.figure.suptitle("Variance against samples per estimate\n(dashed: 1/n reference; bands: 95% intervals"
                      + ("; triangles at the floor: zero variance" if zero else "") + ")")
    g.figure.subplots_adjust(top=0.84)
    return c.save(g.figure, "variance_vs_n_samples.png", "Variance against the number of samples", tight=False)


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
    """A model problem: total variance of the encoder gradient per estimator at each checkpoint, and,
    where the exact gradient is known, the MSE against it. A zero variance (``exact``) has no bar on
    the log axis; the title says so."""
    import matplotlib.pyplot as plt

    vae = df[(df["problem"] == problem) & (df["status"] == "ok")]
    if vae.empty or ("K" in vae and vae["K"].nunique() > 1):  # at several K: model_against_k instead
        return None
    has_mse = "mse" in vae and vae["mse"].notna().any()
    panels = [("total_variance", "total variance of the encoder gradient")]
    if has_mse:
        panels.append(("mse", "MSE against the exact gradient"))
    fig, axes_ = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), squeeze=False)
    order = [k for k in ("untrained", "trained") if k in set(vae["checkpoint"])]
    hue = [e for e in c.estimators if e in set(vae["estimator"])]
    for ax, (col, label) in zip(axes_[0], panels, strict=True):
        _bars(ax, c, vae[vae[col] > 0], "checkpoint", col, order, hue)
        ax.set_ylabel(label)
    axes_[0][-1].legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    zero = sorted(set(vae.loc[vae["total_variance"] == 0, "estimator"]))
    fig.suptitle(f"{problem}: ELBO gradient per estimator (error bars: 95% intervals)"
                 + (f"\n{', '.join(zero)}: zero variance, no bar" if zero else ""))
    fig.tight_layout()
    return c.save(fig, f"{problem}_gradient_variance.png", f"{problem}: encoder-gradient variance"
                  + (" and MSE" if has_mse else ""))


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
    fig, axes_ = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8))
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
    axes_[-1].legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.suptitle(f"{problem}: the K-sample bound's encoder gradient against K (bands: 95% intervals)")
    fig.tight_layout()
    return c.save(fig, f"{problem}_against_K.png", f"{problem}: encoder-gradient variance and SNR against K")


def model_test_elbo(c: Canvas, tr: pd.DataFrame | None, problem: str) -> Made:
    """A model problem's training curves: test ELBO against step and against wall time, per estimator."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if tr is None or "elbo_test" not in tr:
        return None
    tr = tr[tr["problem"] == problem]
    curves = tr.dropna(subset=["elbo_test"]).copy()
    if curves.empty:
        return None
    final = tr.sort_values("step").groupby("estimator")["status"].last()
    curves["estimator"] = curves["estimator"].map(lambda e: e if final.get(e, "ok") == "ok" else f"{e} ({final[e]})")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, x, label in ((axes[0], "step", "training step"), (axes[1], "wall_time_s", "training wall time (s)")):
        sns.lineplot(data=curves, x=x, y="elbo_test", hue="estimator", ax=ax, marker=".", errorbar=None,
                     palette=[c.palette.get(e, c.palette.get(e.split(" (")[0])) for e in curves["estimator"].unique()],
                     hue_order=list(curves["estimator"].unique()))
        ax.set_xlabel(label)
        ax.set_ylabel("test ELBO (nats per image)")
    lo = curves["elbo_test"].quantile(0.02)
    axes[0].set_ylim(bottom=lo, top=curves["elbo_test"].max() + 0.05 * abs(curves["elbo_test"].max() - lo))
    axes[0].get_legend().remove()
    axes[1].legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.suptitle(f"{problem}: test ELBO while training with each estimator (same seed, same steps, Adam)")
    return c.save(fig, f"{problem}_test_elbo.png", f"{problem}: test ELBO curves")


def efficiency(c: Canvas, df: pd.DataFrame, base: dict[str, dict[str, Any]]) -> Made:
    """Efficiency relative to the reference estimator: toys at the base setting, models per checkpoint."""
    import matplotlib.pyplot as plt

    shown = df[(df["status"] == "ok") & df["efficiency_vs_reference"].notna()]
    for problem, values in base.items():
        for axis, value in values.items():
            shown = shown[~is_toy(shown) | (shown["problem"] != problem) | (shown[axis] == value)]
    # exact (zero-variance) cells have no finite efficiency: left out rather than setting the axis at 1e+15
    exact = shown[shown["variance"] == 0]
    d = shown[np.isfinite(shown["efficiency_vs_reference"]) & (shown["efficiency_vs_reference"] > 0)]
    toy_base = d[is_toy(d)]
    cols = ["efficiency_vs_reference", "efficiency_vs_reference_lo", "efficiency_vs_reference_hi"]

    def ratio(r: pd.Series) -> dict[str, Any]:
        return {k: r.get(k, np.nan) for k in cols}

    rows = [{"cell": f"{r['problem'].removeprefix('gaussian-')} d/d{r['parameter']}", "estimator": r["estimator"],
             **ratio(r)} for _, r in toy_base.iterrows()]
    at_k = lambda r: f" K={fmt(r['K'])}" if pd.notna(r.get("K", np.nan)) else ""  # noqa: E731  the bound's K
    rows += [{"cell": f"{r['problem']} {r['checkpoint']}{at_k(r)}", "estimator": r["estimator"], **ratio(r)}
             for _, r in d[~is_toy(d)].iterrows()]
    if not rows:
        return None
    e = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * e["cell"].nunique() + 3), 4))
    _bars(ax, c, e, "cell", "efficiency_vs_reference", list(dict.fromkeys(e["cell"])),
          [x for x in c.estimators if x in set(e["estimator"])])
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xlabel("")
    ax.set_ylabel("efficiency / the reference's")
    refs = ", ".join(sorted(set(shown["reference_estimator"].dropna().astype(str)))) if "reference_estimator" in shown else ""
    ax.set_title(f"Efficiency = 1 / (variance x time per estimate), relative to each problem's reference ({refs})\n"
                 "(error bars: from the variance's 95% interval and the timing spread"
                 + (f"; left out, exact (zero variance): {', '.join(sorted(set(exact['estimator'])))}"
                    if not exact.empty else "") + ")")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return c.save(fig, "efficiency.png", "Efficiency relative to each problem's reference estimator")


def _with_biased(df: pd.DataFrame) -> list[str]:
    """Toy problems on which some estimator is flagged biased: their MSE tells what variance hides."""
    from .text import flagged_biased

    ok = df[is_toy(df) & (df["status"] == "ok")]
    return [p for p, rows in ok.groupby("problem") if flagged_biased(rows)]


def figures(df: pd.DataFrame, tr: pd.DataFrame | None, out: Path, base: dict[str, dict[str, Any]],
            processes: int | None = None) -> list[tuple[str, str]]:
    """Draw every figure the data allow (in up to ``processes`` processes, see draw_all); returns
    (title, relative path) pairs."""
    theme()
    import seaborn as sns

    names = set(df["estimator"]) | (set(tr["estimator"].dropna()) if tr is not None else set())
    estimators = sorted(names, key=lambda e: (e != REFERENCE, e))
    # one colour per estimator: tab10 repeats after 10, so larger reports take tab20's 20
    colours = sns.color_palette("tab10" if len(estimators) <= 10 else "tab20", len(estimators))
    c = Canvas(out, estimators, dict(zip(estimators, colours, strict=True)))
    toy_axes = axes(df[is_toy(df)])
    biased = df[df["problem"].isin(_with_biased(df))]
    models = df.loc[~is_toy(df), "problem"].unique()
    jobs = [
        *((variance_against, (c, df, axis, base)) for axis in toy_axes),
        *((variance_against, (c, biased, axis, base, "mse")) for axis in toy_axes),
        (option_effect, (c, df)),
        (variance_against_n_samples, (c, df, base)),
        *(job for p in models for job in ((model_gradient_variance, (c, df, p)), (model_against_k, (c, df, p)),
                                          (model_test_elbo, (c, tr, p)))),
        (efficiency, (c, df, base)),
    ]
    # the n_samples figure faces every problem: drawn first, so that it does not start last
    return [m for m in draw_all(jobs, processes, first=(variance_against_n_samples,)) if m is not None]
