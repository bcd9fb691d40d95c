"""The report's tables: formatting, ratios to the reference estimator, a table per problem,
the training table. Imports no model code."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.results_file import REFERENCE

from .load import axes, option_columns

#: the two-sided 95% normal quantile (benchmarks.stats.Z95; the report imports no model code)
Z95 = 1.959963984540054


def fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, (int, np.integer)):
        return str(x)
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{digits - 1}e}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, '|' escaped, and no HTML (a plugin's error text may hold
    '<img src=x onerror=...>': & < > are written as entities)."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_cell(fmt(row[c])) for c in cols) + " |")
    return "\n".join(lines)


def setting_text(row: pd.Series, keys: Iterable[str]) -> str:
    return ", ".join(f"{k}={fmt(row[k])}" for k in keys if k in row and not pd.isna(row[k]))


def is_toy(df: pd.DataFrame) -> pd.Series:
    """Rows of toy problems (as the problem declared its kind; see reports.load)."""
    return df["problem_kind"] == "toy"


def add_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Efficiency and ratios to the reference estimator at the same setting and parameter (the estimator options
    noted in ``attrs``, as read_results notes them: a merge may drop attrs, and these columns are not options)."""
    options = option_columns(df)
    df = df.copy()
    df["efficiency"] = 1.0 / (df["variance"] * df["time_per_estimate_s"])
    if "variance_lo" in df and "time_per_estimate_min_s" in df:
        # the variance's 95% interval with the fastest and slowest timed repetition
        df["efficiency_lo"] = 1.0 / (df["variance_hi"] * df["time_per_estimate_max_s"])
        df["efficiency_hi"] = 1.0 / (df["variance_lo"] * df["time_per_estimate_min_s"])
    # the reference cell of the same run (seed, dtype, device): a file of many runs (seeds) merges one to one, in
    # memory proportional to the file, never each row with every run's reference
    keys = ["problem", "parameter", "setting", "n_samples", *(c for c in ("seed", "dtype", "device") if c in df)]
    # each row's ratios divide by its problem's reference estimator (files before reference_estimator: reparam)
    df["reference_estimator"] = (df["reference_estimator"].fillna(REFERENCE).astype(object)
                                 if "reference_estimator" in df else REFERENCE)
    is_ref = (df["estimator"] == df["reference_estimator"]) & (df["status"] == "ok")
    ref = df[is_ref][keys + ["variance", "efficiency"]].drop_duplicates(keys)
    ref = ref.rename(columns={"variance": "_ref_var", "efficiency": "_ref_eff"})
    df = df.merge(ref, on=keys, how="left")
    df["variance_vs_reference"] = df["variance"] / df["_ref_var"]
    if "variance_se" in df:  # 95% interval of the ratio of two independent cells' variances, on the log scale
        rel = (df["variance_se"] / df["variance"]).where(df["variance"] > 0)
        refs = df[is_ref][keys + ["variance", "variance_se"]].drop_duplicates(keys)
        refs = refs.assign(_ref_rel=refs["variance_se"] / refs["variance"])[keys + ["_ref_rel"]]
        df = df.merge(refs, on=keys, how="left")
        spread = np.exp(Z95 * np.sqrt(rel**2 + df["_ref_rel"] ** 2))
        df["variance_vs_reference_lo"] = df["variance_vs_reference"] / spread
        df["variance_vs_reference_hi"] = df["variance_vs_reference"] * spread
        df = df.drop(columns="_ref_rel")
    if "f_evals" in df:  # at equal cost in evaluations of f (ARM and DisARM use 2 per draw)
        df["efficiency_per_eval"] = 1.0 / (df["variance"] * df["f_evals"])
        for end in ("", "_lo", "_hi"):  # its inverse, variance x f evals, with the variance's interval
            if f"variance{end}" in df:
                df[f"variance_x_evals{end}"] = df[f"variance{end}"] * df["f_evals"]
    df["efficiency_vs_reference"] = df["efficiency"] / df["_ref_eff"]
    if "efficiency_lo" in df:  # each end against the reference's opposite end: a conservative interval
        is_ref = (df["estimator"] == df["reference_estimator"]) & (df["status"] == "ok")
        refs = df[is_ref][keys + ["efficiency_lo", "efficiency_hi"]].drop_duplicates(keys)
        refs = refs.rename(columns={"efficiency_lo": "_ref_lo", "efficiency_hi": "_ref_hi"})
        df = df.merge(refs, on=keys, how="left")
        df["efficiency_vs_reference_lo"] = df["efficiency_lo"] / df["_ref_hi"]
        df["efficiency_vs_reference_hi"] = df["efficiency_hi"] / df["_ref_lo"]
        df = df.drop(columns=["_ref_lo", "_ref_hi"])
    df = df.drop(columns=["_ref_var", "_ref_eff"])
    df.attrs["options"] = options
    return df


def _numeric_axes(df: pd.DataFrame) -> pd.DataFrame:
    """mu and sigma as numbers; per-coordinate settings ('0.5;1.0;2.0') become NaN on these axes."""
    df = df.copy()
    for axis in axes(df):
        if pd.api.types.is_numeric_dtype(df[axis]) or df[axis].map(lambda v: isinstance(v, float)).any():
            df[axis] = pd.to_numeric(df[axis], errors="coerce")
    return df


def base_values(df: pd.DataFrame) -> dict[str, Any]:
    """The most common value of each axis of these toy rows: the setting the report's base tables show."""
    toy = _numeric_axes(df[is_toy(df) & (df["status"] == "ok")])
    out = {}
    for axis in [*axes(toy), "n_samples"]:
        if axis in toy and toy[axis].notna().any():
            counts = toy[axis].value_counts()
            out[axis] = counts[counts == counts.max()].index.min()
    return out


def bases(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each toy problem's base setting: the most common value of each of its axes (and n_samples)."""
    toy = df[is_toy(df)]
    return {p: base_values(rows) for p, rows in toy.groupby("problem", sort=False)}


def axis_slice(df: pd.DataFrame, axis: str, base: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Toy rows that have ``axis``, where every other axis of their problem is at that problem's
    base value (``bases``)."""
    toy = _numeric_axes(df[is_toy(df) & (df["status"] == "ok")])
    if axis not in toy:
        return toy.iloc[0:0]
    mask = toy[axis].notna()
    for problem, values in base.items():
        rows = toy["problem"] == problem
        for other, value in values.items():
            if other != axis and other in toy:
                mask &= ~rows | (toy[other] == value)
    return toy[mask]


TABLE_COLUMNS = {
    "estimator": "estimator",
    "parameter": "gradient of",
    "variance": "variance",
    "variance_vs_reference": "variance / reference",
    "bias_z": "bias z",
    "mse": "MSE",
    "snr": "SNR",
    "f_evals": "f evals",
    "time_us": "time / estimate (us)",
    "efficiency": "efficiency",
    "efficiency_vs_reference": "efficiency / reference",
    "efficiency_per_eval": "1 / (variance x f evals)",
}

VAE_TABLE_COLUMNS = {
    "estimator": "estimator",
    "checkpoint": "checkpoint",
    "total_variance": "total variance",
    "variance_vs_reference": "variance / reference",
    "mse": "MSE",
    "snr": "SNR",
    "agreement_z": "max z vs reference",
    "f_evals": "f evals",
    "time_us": "time / estimate (us)",
    "efficiency": "efficiency",
    "efficiency_vs_reference": "efficiency / reference",
}


def reference_label(rows: pd.DataFrame) -> str:
    """What a model problem's agreement_z compares with: 'the exact gradient', 'the mean of X' (the
    ``reference`` column; files from before it compared with reparameterization)."""
    refs = rows["reference"].dropna().unique() if "reference" in rows else []
    if len(refs) == 0:
        return f"the mean of {REFERENCE}"
    return " / ".join("the exact gradient" if r == "exact" else f"the {r}" for r in sorted(refs))


def problem_table(df: pd.DataFrame, problem: str, base: dict[str, Any]) -> pd.DataFrame:
    """The report's table for one problem (toy: at the base setting; VAE: every checkpoint)."""
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")].copy()
    rows["time_us"] = rows["time_per_estimate_s"] * 1e6
    if is_toy(df[df["problem"] == problem]).all():
        rows = _numeric_axes(rows)
        for axis, value in base.items():
            rows = rows[rows[axis] == value]
        cols = TABLE_COLUMNS
        rows = rows.sort_values(["parameter", "variance"])
    else:
        label = "max z vs exact" if reference_label(rows) == "the exact gradient" else "max z vs reference"
        cols = {**VAE_TABLE_COLUMNS, "agreement_z": label}
        order = {"untrained": 0, "trained": 1}
        by = ["_o", "total_variance"]
        if "K" in rows and rows["K"].nunique() > 1:  # the K-sample bound at several K: a row per K
            cols = {"estimator": "estimator", "checkpoint": "checkpoint", "K": "K",
                    **{k: v for k, v in cols.items() if k not in ("estimator", "checkpoint")}}
            by = ["_o", "K", "total_variance"]
        rows = rows.assign(_o=rows["checkpoint"].map(order)).sort_values(by)
        # a model problem shows what it has: MSE only against an exact gradient, ratios only where reparam ran
        cols = {k: v for k, v in cols.items() if k in rows and not (k != "estimator" and rows[k].isna().all())}
    cols = {k: v for k, v in cols.items() if k in rows}  # files from before f_evals have no such column
    if "precision" in rows and rows["precision"].notna().any():  # cells stopped at their own R (--precision)
        cols = {**cols, "replicates_used": "R used"}
    zero = rows["total_variance" if "total_variance" in cols else "variance"] == 0
    missing = {c: rows[c].isna() for c in ("variance_vs_reference", "efficiency_vs_reference") if c in rows}
    if "time_per_estimate_min_s" in rows:
        rows["time_us_lo"], rows["time_us_hi"] = rows["time_per_estimate_min_s"] * 1e6, rows["time_per_estimate_max_s"] * 1e6
    for col, lo, hi in (("time_us", "time_us_lo", "time_us_hi"), ("variance", "variance_lo", "variance_hi"),
                        ("total_variance", "total_variance_lo", "total_variance_hi"), ("snr", "snr_lo", "snr_hi"),
                        ("mse", "mse_lo", "mse_hi"),
                        ("variance_vs_reference", "variance_vs_reference_lo", "variance_vs_reference_hi"),
                        ("efficiency_vs_reference", "efficiency_vs_reference_lo", "efficiency_vs_reference_hi")):
        if col in cols and lo in rows and rows[lo].notna().any():
            rows[col] = [with_interval(v, a, b) for v, a, b in zip(rows[col], rows[lo], rows[hi], strict=True)]
            cols[col] += {"time_us": " [min, max of 5 timings]", "efficiency_vs_reference": " [interval]"}.get(col, " [95% CI]")
    # a zero variance is exact: its ratio is 0 and its efficiency has no finite value, so say so rather than
    # print 1/0 or a rounding residue 15 orders of magnitude away from the others
    for col in ("variance", "total_variance"):
        if col in cols:
            rows[col] = rows[col].astype(object).where(~zero, "0 (exact)")
    for col in ("variance_vs_reference", "efficiency", "efficiency_vs_reference", "efficiency_per_eval"):
        if col in cols:
            rows[col] = rows[col].astype(object).where(~zero | missing.get(col, False), "exact")
    ref = reference_name(rows)
    cols = {k: v.replace("/ reference", f"/ {ref}") for k, v in cols.items()}
    return rows[list(cols)].rename(columns=cols).reset_index(drop=True)


def reference_name(rows: pd.DataFrame) -> str:
    """The reference estimator the ratio columns of ``rows`` (one problem's) divide by."""
    names = rows["reference_estimator"].dropna().unique() if "reference_estimator" in rows else []
    return " / ".join(sorted(map(str, names))) or REFERENCE


def zero_variance_notes(df: pd.DataFrame, problem: str) -> list[str]:
    """One line per estimator of ``problem`` whose variance is reported as exactly 0: why (every estimate
    the same; or the same up to rounding, with the rounding's size from the ``variance_note`` column), and
    where the estimator declares when it is exact, that (the ``exact_reason`` column)."""
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    rows = rows[rows["total_variance" if not is_toy(rows).all() else "variance"] == 0]
    out = []
    for est, g in rows.groupby("estimator", sort=False):
        notes = g["variance_note"].dropna() if "variance_note" in g else pd.Series(dtype=object)
        notes = notes[notes.astype(str) != ""]
        why = ("every estimate was the same" if notes.empty else
               f"{notes.iloc[0]}" + (f"; in {len(notes)} of its {len(g)} zero-variance rows" if len(g) > 1 else ""))
        declared = g["exact_reason"].dropna() if "exact_reason" in g else pd.Series(dtype=object)
        declared = sorted(set(declared.astype(str)) - {""})
        if declared:
            why += f"; exact, as the estimator declares: {'; '.join(declared)}"
        out.append(f"- {est}: zero variance in {len(g)} row{'s' if len(g) > 1 else ''}: {why}.")
    return out


def with_interval(value: Any, lo: Any, hi: Any) -> str:
    """'0.0145 [0.0131, 0.0161]'; the value alone where it has no interval (fewer than two batches)
    or is exactly 0."""
    if pd.isna(lo) or pd.isna(hi) or value == 0:
        return fmt(value)
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


#: tables.csv's ratio columns under their names from before every problem had its own reference: filled only
#: where the reference is reparameterization, so that a name never says more than the number
LEGACY_RATIOS = {f"{what}_vs_reparam{end}": f"{what}_vs_reference{end}"
                 for what in ("variance", "efficiency") for end in ("", "_lo", "_hi")}


def all_tables(df: pd.DataFrame) -> pd.DataFrame:
    """Every ok row with the derived columns, for tables.csv."""
    keep = ["problem", "estimator", "parameter", *axes(df), "n_samples", "f_evals", "replicates", "replicates_used",
            "precision",
            "variance", "variance_se", "variance_lo", "variance_hi", "total_variance", "total_variance_lo",
            "total_variance_hi", "reference_estimator", "variance_vs_reference", "variance_vs_reference_lo",
            "variance_vs_reference_hi", "bias_z", "mse", "mse_lo", "mse_hi", "snr", "snr_lo", "snr_hi", "agreement_z",
            "reference", "time_per_estimate_s", "time_per_estimate_min_s", "time_per_estimate_max_s", "efficiency",
            "efficiency_lo", "efficiency_hi", "efficiency_vs_reference", "efficiency_vs_reference_lo",
            "efficiency_vs_reference_hi", "efficiency_per_eval", "variance_x_evals", "variance_x_evals_lo",
            "variance_x_evals_hi", "confirmation_z", "confirmation_replicates", "overview"]
    ok = df[df["status"] == "ok"].sort_values(["problem", "parameter", "estimator", "setting", "n_samples"])
    out = ok[[c for c in keep if c in ok]].reset_index(drop=True)
    if "reference_estimator" in out:
        pathwise = out["reference_estimator"] == REFERENCE
        for old, new in LEGACY_RATIOS.items():
            if new in out:
                out[old] = out[new].where(pathwise)
    return out
