"""The report's figures: laid out within their bounds, one style per estimator throughout, no empty or
single-point panel (reports.figures, reports.toy_figures, reports.overview, reports.palette)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from reports.confirm import attach_confirmations
from reports.figures import LayoutError, layout_faults, start_figures
from reports.load import read_results, read_training
from reports.overview import overview_rows
from reports.palette import FAMILIES, style
from reports.tables import add_derived, bases

EXAMPLE = Path(__file__).resolve().parents[1] / "reports" / "example"


def test_each_built_in_estimator_has_its_own_colour_and_marker_whatever_the_report():
    names = [n for members, _ in FAMILIES.values() for n in members] + ["exact"]
    looks = {(style(n).colour, style(n).marker) for n in names}
    assert len(looks) == len(names)
    assert len({style(n).colour for n in names}) == len(names)
    # a function of the name alone: the same in any report, for plugins too
    assert style("my-plugin") == style("my-plugin") and style("my-plugin").family == "other"
    # an estimator's option variants keep its marker and family, in their own shades
    variants = [style(f"gumbel-softmax(temperature={t})") for t in (0.3, 0.5, 1.0)]
    assert {v.marker for v in variants} == {style("gumbel-softmax").marker}
    assert len({v.colour for v in variants}) == 3
    # a library adapter: the style of the estimator it wraps, dashed
    assert style("storchastic:disarm").colour == style("disarm").colour and style("storchastic:disarm").linestyle == "--"


def test_the_layout_check_finds_a_cut_legend_an_overlapping_title_and_an_empty_panel():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2], [1, 2], label="a line")
    ax.legend(bbox_to_anchor=(1.6, 1), loc="upper left")
    fig.suptitle("a title placed on the panel", y=0.7)
    fig.add_axes((0.7, 0.1, 0.2, 0.2))  # nothing drawn on it
    faults = layout_faults(fig)
    plt.close(fig)
    assert "a legend is cut off" in faults and "the figure's title overlaps a panel" in faults and "an empty panel" in faults
    fig, ax = plt.subplots()
    ax.plot([1], [2], label="reinforce", color=style("disarm").colour)
    faults = layout_faults(fig, {"reinforce"})
    plt.close(fig)
    assert "a panel of single points (a dot plot's job)" in faults
    assert any(f.startswith("reinforce drawn in") for f in faults)


@pytest.mark.slow
def test_every_figure_of_the_example_report_lies_within_its_bounds(tmp_path):
    """Every figure of the committed example report (the default report's results), drawn at its saved size
    (Canvas.check, reports.figures.layout_faults, raises LayoutError): no legend or title cut off or over
    one another or a panel, no empty panel, no panel of single points but a dot plot, each estimator in its
    own colour; a figure per toy problem and the overview."""
    df = add_derived(attach_confirmations(read_results(EXAMPLE / "results.csv")))
    tr = read_training(EXAMPLE / "results.csv")
    try:
        made = start_figures(df, tr, tmp_path, bases(df), processes=2, check=True)()
    except LayoutError as exc:
        pytest.fail(str(exc))
    names = {Path(f.path).name for f in made}
    toys = df.loc[df["problem_kind"] == "toy", "problem"].unique()
    assert {f"{p}_variance.png" for p in toys} <= names and "overview.png" in names


def test_the_overview_shows_each_toy_at_its_base_setting_and_marks_biased_cells():
    df = add_derived(attach_confirmations(read_results(EXAMPLE / "results.csv")))
    base = bases(df)
    rows = overview_rows(df, base)
    toy = rows[rows["problem_kind"] == "toy"]
    for problem, got in toy.groupby("problem"):
        assert set(got["n_samples"]) == {base[problem]["n_samples"]}
        assert not got.duplicated(["estimator", "part"]).any(), problem
    # the relaxations are declared biased, so they are drawn hollow wherever they appear
    relaxed = rows[rows["estimator"].str.startswith(("gumbel-softmax", "straight-through"))]
    assert not relaxed.empty and relaxed["biased"].all()
    assert not rows.loc[rows["estimator"] == "exact", "biased"].any() and rows.loc[rows["estimator"] == "exact", "exact"].all()
    assert isinstance(rows, pd.DataFrame)


def test_minor_ticks_that_draw_nothing_are_dropped_and_the_image_is_the_same(tmp_path):
    """drop_invisible_minor_ticks: a log axis over four decades has unlabelled, unmarked minor ticks (dropped);
    one over less than a decade labels them, and an axis with minor tick marks draws them (both kept). The
    image saved is the same pixel for pixel either way."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.image import imread
    from matplotlib.ticker import NullLocator

    from reports.drawing import drop_invisible_minor_ticks, theme

    theme()

    def draw() -> tuple:
        fig, (wide, narrow, marked) = plt.subplots(1, 3, figsize=(6, 2), layout="constrained")
        for ax, (lo, hi) in ((wide, (1e-3, 10)), (narrow, (2, 7)), (marked, (1e-3, 10))):
            ax.plot([1, 2, 3], [lo, (lo * hi) ** 0.5, hi])
            ax.set_yscale("log")
        marked.tick_params(axis="y", which="minor", left=True)
        return fig, (wide, narrow, marked)

    images = []
    for drop in (False, True):
        fig, (wide, narrow, marked) = draw()
        if drop:
            drop_invisible_minor_ticks(fig)
            assert isinstance(wide.yaxis.get_minor_locator(), NullLocator)
            assert not isinstance(narrow.yaxis.get_minor_locator(), NullLocator)
            assert not isinstance(marked.yaxis.get_minor_locator(), NullLocator)
        fig.savefig(tmp_path / f"{drop}.png", dpi=80)
        plt.close(fig)
        images.append(imread(tmp_path / f"{drop}.png"))
    assert images[0].shape == images[1].shape and np.array_equal(images[0], images[1])


def test_a_figure_drawn_once_is_savefigs_image_pixel_for_pixel(tmp_path):
    """reports.figures.save_drawn (one draw, its pixels written) against savefig (a layout pass, then a render):
    a constrained-layout figure with log axes, a legend below the panels and a wrapped title, as the report's.
    Saved by a checking Canvas (the layout check's drawing written, not drawn again), the same image."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.image import imread

    from reports.drawing import finish, theme
    from reports.figures import DPI, Canvas, save_drawn

    theme()
    images = []
    for how in ("savefig", "drawn", "checked"):
        fig, grid = plt.subplots(2, 2, figsize=(7, 5), layout="constrained")
        for k, ax in enumerate(grid.flat):
            for j in range(6):
                ax.plot([1, 2, 4, 8], [10.0 ** -(j + k) * v for v in (1, 0.6, 0.3, 0.12)], marker="o", label=f"estimator {j}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"panel {k}", fontsize=9)
        finish(fig, "a title long enough to be wrapped to the width of the figure, " * 3, grid[0][0].get_lines())
        path = tmp_path / f"{how}.png"
        if how == "savefig":
            fig.savefig(path, dpi=DPI, format="png")
        elif how == "drawn":
            save_drawn(fig, path)
        else:
            path = tmp_path / Canvas(tmp_path, [], check=True).save(fig, "checked.png", "checked").path
        plt.close(fig)
        images.append(imread(path))
    assert images[0].shape == images[1].shape == images[2].shape and images[0].shape[0] > 5 * DPI
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])


def test_the_bias_interval_of_the_temperature_figure_follows_from_the_bias_and_its_z():
    """|bias| -+ 1.96 standard errors, the standard error |bias / z|; clipped at 0; an exact z (0 or infinite)
    gives the point; a missing z, no interval."""
    from reports.figures import abs_bias_interval

    lo, hi = abs_bias_interval([0.1, -0.1, 0.01, 0.2, 0.3], [2.0, -2.0, 0.5, math.inf, math.nan])
    assert lo[0] == pytest.approx(0.1 - 1.959964 * 0.05) and hi[0] == pytest.approx(0.1 + 1.959964 * 0.05)
    assert (lo[1], hi[1]) == (lo[0], hi[0])  # the sign of the bias does not matter
    assert lo[2] == 0 and hi[2] == pytest.approx(0.01 + 1.959964 * 0.02)  # within noise of 0: down to 0
    assert lo[3] == hi[3] == 0.2 and math.isnan(lo[4]) and math.isnan(hi[4])


def test_the_temperature_figure_is_drawn_with_its_bias_bands(tmp_path):
    """On the example report's results: the figure is drawn within its bounds (Canvas.check), with a band per line
    in the |bias| panels and in the MSE panels (its 95% interval, mse_lo and mse_hi)."""
    from matplotlib.collections import PolyCollection

    import reports.figures as F

    df = add_derived(attach_confirmations(read_results(EXAMPLE / "results.csv")))
    saved = []
    canvas = F.Canvas(tmp_path, sorted(df["estimator"].unique()), check=True)
    original = F.Canvas.save

    def keep(self, fig, *args, **kwargs):
        saved.append([sum(isinstance(a, PolyCollection) for a in ax.get_children()) for ax in fig.axes])
        return original(self, fig, *args, **kwargs)

    F.Canvas.save = keep
    try:
        made = F.option_effect(canvas, df)
    finally:
        F.Canvas.save = original
    assert made is not None and (tmp_path / made.path).exists()
    (bands,) = saved
    assert all(n > 0 for n in bands) and df["mse_lo"].notna().any()


def test_the_binary_vae_figure_draws_no_bar_for_an_mse_that_is_rounding(tmp_path, monkeypatch):
    """On the example report's results: `exact` on the binary VAE has variance 0 and an MSE of float32's rounding
    (~1e-16, bias z 0). Neither panel draws a bar in its colour, the MSE axis is not stretched down to the rounding,
    and the title says why; the other estimators' MSE bars are all there."""
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    import reports.figures as F

    df = add_derived(attach_confirmations(read_results(EXAMPLE / "results.csv")))
    rows = df[(df["problem"] == "vae-digits-binary") & (df["status"] == "ok")]
    exact = rows[rows["estimator"] == "exact"]
    assert not exact.empty and (exact["variance"] == 0).all() and (exact["bias_z"] == 0).all()
    assert (exact["mse"] > 0).all() and (exact["mse"] < 1e-12).all()  # the rounding this figure must not show
    canvas = F.Canvas(tmp_path, sorted(df["estimator"].unique()), check=True)
    saved, original = [], F.Canvas.save

    def keep(self, fig, *args, **kwargs):
        saved.append((fig._suptitle.get_text(), [([p.get_facecolor() for p in ax.patches if isinstance(p, Rectangle)],
                                                  ax.get_ylim()) for ax in fig.axes[:2]]))
        return original(self, fig, *args, **kwargs)

    monkeypatch.setattr(F.Canvas, "save", keep)
    assert F.model_gradient_variance(canvas, df, "vae-digits-binary") is not None
    (title, panels), = saved
    black = to_rgba(style("exact").colour)
    assert "exact: zero variance and MSE within rounding, no bar" in title.replace("\n", " ")
    for colours, _ in panels:
        assert black not in [tuple(c) for c in colours]
    others = rows[(rows["estimator"] != "exact") & (rows["mse"] > 0)]
    assert panels[1][1][0] > 1e-12 and len([c for c in panels[1][0] if c[3] > 0]) >= len(others)
