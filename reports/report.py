"""Build the variance report from result files. Imports no model code.

Input: the runner's tidy results CSV (and, beside it, the training curves CSV
``<stem>-training.csv`` when the VAE was trained), optionally a pytest-benchmark
JSON file. Output, in one directory:

    report.md              what was run, tables per problem, a paragraph per table, figures
    results.csv            the tidy records (copied)
    results-training.csv   the VAE training curves (copied, when present)
    tables.csv             every table row of the report, for every setting
    benchmarks.json        the pytest-benchmark JSON (copied, when given)
    figures/*.png          seaborn figures

Every file is written to a temporary name and renamed, so a report is never
left half-written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

# torch-free: the one module of benchmarks/ that the report shares (the results file's lock)
from benchmarks.results_file import writer_lock

REFERENCE = "reparameterization"
TOY_AXES = ("mu", "sigma", "k", "dim", "n_samples")
TOY_SETTING = ("mu", "sigma", "k", "dim")
VAE_SETTING = ("checkpoint", "hidden", "latent", "batch")
REQUIRED_COLUMNS = ("problem", "estimator", "parameter", "n_samples", "replicates", "seed", "variance",
                    "snr", "time_per_estimate_s", "status")
FIGURES = "figures"
TEXT_COLUMNS = ("problem", "estimator", "parameter", "status", "error", "setting", "checkpoint", "dtype", "device",
                "estbench_version", "torch_version", "python_version", "machine")


class ResultsError(ValueError):
    """An unreadable or mismatched results file; the message names it."""


# -- reading ------------------------------------------------------------------

VALID_STATUS = ("ok", "failed", "skipped")
TOY_PREFIX, VAE_PREFIX = "gaussian-", "vae-"
#: a problem's rows need these columns, by kind (recognised by name prefix)
KIND_COLUMNS = {TOY_PREFIX: (*TOY_SETTING, "setting"), VAE_PREFIX: (*VAE_SETTING, "setting")}
#: columns that hold numbers where they are filled (mu and sigma may also hold "0.5;1.0")
NUMERIC_COLUMNS = ("dim", "k", "hidden", "latent", "batch", "n_samples", "replicates", "seed", "mean", "variance",
                   "total_variance", "true_grad", "bias", "bias_z", "mse", "snr", "agreement_z",
                   "time_per_estimate_s", "compile_time_s")
#: a cell's row for one parameter group: a second row with the same key is a duplicate
ROW_KEY = ("problem", "estimator", "parameter", "setting", "n_samples", "replicates", "seed", "dtype", "device")


def _bad(path: Path, line: int, column: str, what: str) -> ResultsError:
    return ResultsError(f"results file {path}, line {line}, column {column}: {what}")


def _shown(value: Any) -> str:
    """A value quoted for an error message, cut short (a corrupted cell can be very long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_results(path: str | Path, notes: list[str] | None = None) -> pd.DataFrame:
    """Read and check a results file; ResultsError (one line naming the line and column) for
    anything the report cannot use.

    Two defects are repaired, by a documented rule, and described in ``notes``: a torn last
    line (a run killed while writing it) is dropped; a duplicated row (same problem,
    estimator, parameter, setting, n_samples, replicates, seed, dtype and device) keeps its
    first occurrence."""
    import io

    path = Path(path)
    notes = [] if notes is None else notes
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"results file {path} does not exist") from None
    except IsADirectoryError:
        raise ResultsError(f"results file {path} is a directory") from None
    except UnicodeDecodeError:
        raise ResultsError(f"results file {path} is not a readable CSV (binary content)") from None
    except OSError as exc:
        raise ResultsError(f"cannot read results file {path}: {exc.strerror}") from None
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith("\n"):
        notes.append(f"dropped the torn last line {len(lines)} of {path.name} (a run stopped while writing it)")
        text = "".join(lines[:-1])
    try:
        df = pd.read_csv(io.StringIO(text), dtype={c: "string" for c in TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ResultsError(f"results file {path} is not a readable CSV ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(
            f"results file {path} is not an estbench results table: missing columns {', '.join(missing)}"
        )
    if df.empty:
        raise ResultsError(f"results file {path} has no rows")
    _check_rows(path, df)
    key = [c for c in ROW_KEY if c in df.columns]
    dup = df.duplicated(subset=key, keep="first")
    if dup.any():
        first = int(dup.to_numpy().nonzero()[0][0]) + 2
        notes.append(f"dropped {int(dup.sum())} duplicated rows of {path.name} (the first from line {first}); "
                     f"the first occurrence of each row is kept")
        df = df[~dup].reset_index(drop=True)
    df["error"] = df["error"].fillna("").astype(object) if "error" in df else ""
    for axis in ("mu", "sigma"):  # numbers stay numbers; per-coordinate settings stay text ("0.5;1.0")
        if axis in df and not pd.api.types.is_numeric_dtype(df[axis]):
            df[axis] = df[axis].map(_number_or_text)
    for c in TEXT_COLUMNS:
        if c in df and c != "error":
            df[c] = df[c].astype(object)
    df.attrs["notes"] = notes
    return df


def _check_rows(path: Path, df: pd.DataFrame) -> None:
    """Problem names, status values, numbers and variances, each error naming its line (header = line 1)."""
    line = lambda i: int(i) + 2  # noqa: E731
    problem = df["problem"].fillna("")
    kinds = {prefix: problem.str.startswith(prefix) for prefix in KIND_COLUMNS}
    unknown = ~(kinds[TOY_PREFIX] | kinds[VAE_PREFIX])
    if unknown.any():
        i = unknown.idxmax()
        raise _bad(path, line(i), "problem", f"unknown problem {_shown(problem[i])}; this report reads the "
                   f"{TOY_PREFIX}* and {VAE_PREFIX}* problems")
    for prefix, cols in KIND_COLUMNS.items():
        absent = [c for c in cols if c not in df.columns]
        if kinds[prefix].any() and absent:
            raise ResultsError(f"results file {path} has {prefix}* rows but no column {', '.join(absent)}")
    status = df["status"].fillna("")
    odd = ~status.isin(VALID_STATUS)
    if odd.any():
        i = odd.idxmax()
        raise _bad(path, line(i), "status", f"unknown status {_shown(status[i])}; valid: {', '.join(VALID_STATUS)}")
    for c in (c for c in NUMERIC_COLUMNS if c in df.columns):
        raw = df[c]
        if pd.api.types.is_numeric_dtype(raw):
            continue
        num = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & num.isna() & ~raw.astype(str).str.strip().str.lower().isin(("nan", "inf", "-inf", ""))
        if bad.any():
            i = bad.idxmax()
            raise _bad(path, line(i), c, f"{_shown(raw[i])} is not a number")
        df[c] = num
    for c in ("mu", "sigma"):
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            for i, v in df[c].items():
                if isinstance(v, str) and any(_number_or_text(x) == x for x in v.split(";")):
                    raise _bad(path, line(i), c, f"{_shown(v)} is not a number (or numbers joined by ';')")
    ok = status == "ok"
    for c in ("variance", "total_variance"):
        if c not in df.columns:
            continue
        v = df[c]
        nan, neg = ok & v.isna(), ok & (v < 0)
        if nan.any():
            raise _bad(path, line(nan.idxmax()), c, f"no {c} (NaN) in a row whose status is ok")
        if neg.any():
            i = neg.idxmax()
            raise _bad(path, line(i), c, f"negative {c} {v[i]:g}; a variance is >= 0")


def _number_or_text(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def training_path(results: str | Path) -> Path:
    results = Path(results)
    return results.with_name(f"{results.stem}-training{results.suffix or '.csv'}")


def read_training(results: str | Path) -> pd.DataFrame | None:
    path = training_path(results)
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ResultsError(f"training file {path} is not a readable CSV ({exc})") from None
    return df if not df.empty else None


# -- atomic writes --------------------------------------------------------------

def _atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` to a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda p: p.write_text(text))


def copy_file(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    _atomic_write(dst, lambda p: shutil.copyfile(src, p))


# -- formatting -----------------------------------------------------------------

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
    """Text safe inside a Markdown table cell: '|' escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_cell(fmt(row[c])) for c in cols) + " |")
    return "\n".join(lines)


def setting_text(row: pd.Series, keys: Iterable[str]) -> str:
    return ", ".join(f"{k}={fmt(row[k])}" for k in keys if k in row and not pd.isna(row[k]))


# -- tables ---------------------------------------------------------------------

def _is_toy(df: pd.DataFrame) -> pd.Series:
    return df["problem"].str.startswith("gaussian-")


def add_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Efficiency and ratios to the reference estimator at the same setting and parameter."""
    df = df.copy()
    df["efficiency"] = 1.0 / (df["variance"] * df["time_per_estimate_s"])
    keys = ["problem", "parameter", "setting", "n_samples"]
    ref = df[(df["estimator"] == REFERENCE) & (df["status"] == "ok")][keys + ["variance", "efficiency"]]
    ref = ref.rename(columns={"variance": "_ref_var", "efficiency": "_ref_eff"})
    df = df.merge(ref, on=keys, how="left")
    df["variance_vs_reparam"] = df["variance"] / df["_ref_var"]
    df["efficiency_vs_reparam"] = df["efficiency"] / df["_ref_eff"]
    return df.drop(columns=["_ref_var", "_ref_eff"])


def _numeric_axes(df: pd.DataFrame) -> pd.DataFrame:
    """mu and sigma as numbers; per-coordinate settings ('0.5;1.0;2.0') become NaN on these axes."""
    df = df.copy()
    for axis in TOY_AXES:
        if axis in df:
            df[axis] = pd.to_numeric(df[axis], errors="coerce")
    return df


def base_values(df: pd.DataFrame) -> dict[str, Any]:
    """The most common value of each toy axis: the setting the report's base tables show."""
    toy = _numeric_axes(df[_is_toy(df)])
    out = {}
    for axis in TOY_AXES:
        if axis in toy and toy[axis].notna().any():
            counts = toy[axis].value_counts()
            out[axis] = counts[counts == counts.max()].index.min()
    return out


def axis_slice(df: pd.DataFrame, axis: str, base: dict[str, Any]) -> pd.DataFrame:
    """Toy rows where every axis but ``axis`` is at its base value."""
    toy = _numeric_axes(df[_is_toy(df) & (df["status"] == "ok")])
    mask = pd.Series(True, index=toy.index)
    for other, value in base.items():
        if other != axis:
            mask &= toy[other] == value
    return toy[mask]


TABLE_COLUMNS = {
    "estimator": "estimator",
    "parameter": "gradient of",
    "variance": "variance",
    "variance_vs_reparam": "variance / reparam",
    "bias_z": "bias z",
    "mse": "MSE",
    "snr": "SNR",
    "time_us": "time / estimate (us)",
    "efficiency": "efficiency",
    "efficiency_vs_reparam": "efficiency / reparam",
}

VAE_TABLE_COLUMNS = {
    "estimator": "estimator",
    "checkpoint": "checkpoint",
    "total_variance": "total variance",
    "variance_vs_reparam": "variance / reparam",
    "snr": "SNR",
    "agreement_z": "max z vs reparam",
    "time_us": "time / estimate (us)",
    "efficiency": "efficiency",
    "efficiency_vs_reparam": "efficiency / reparam",
}


def problem_table(df: pd.DataFrame, problem: str, base: dict[str, Any]) -> pd.DataFrame:
    """The report's table for one problem (toy: at the base setting; VAE: every checkpoint)."""
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")].copy()
    rows["time_us"] = rows["time_per_estimate_s"] * 1e6
    if problem.startswith("gaussian-"):
        for axis, value in base.items():
            rows = rows[rows[axis] == value]
        cols = TABLE_COLUMNS
        rows = rows.sort_values(["parameter", "variance"])
    else:
        cols = VAE_TABLE_COLUMNS
        order = {"untrained": 0, "trained": 1}
        rows = rows.assign(_o=rows["checkpoint"].map(order)).sort_values(["_o", "total_variance"])
    return rows[list(cols)].rename(columns=cols).reset_index(drop=True)


def all_tables(df: pd.DataFrame) -> pd.DataFrame:
    """Every ok row with the derived columns, for tables.csv."""
    keep = ["problem", "estimator", "parameter", *TOY_SETTING, *VAE_SETTING, "n_samples", "replicates",
            "variance", "total_variance", "variance_vs_reparam", "bias_z", "mse", "snr", "agreement_z",
            "time_per_estimate_s", "efficiency", "efficiency_vs_reparam"]
    ok = df[df["status"] == "ok"].sort_values(["problem", "parameter", "estimator", "setting", "n_samples"])
    return ok[[c for c in keep if c in ok]].reset_index(drop=True)


# -- paragraphs written from the numbers ----------------------------------------------

def toy_paragraph(df: pd.DataFrame, problem: str, base: dict[str, Any]) -> str:
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    at_base = rows.copy()
    for axis, value in base.items():
        at_base = at_base[at_base[axis] == value]
    parts = []
    for param, g in at_base.groupby("parameter", sort=True):
        g = g.sort_values("variance")
        lo, hi = g.iloc[0], g.iloc[-1]
        eff = g.sort_values("efficiency", ascending=False).iloc[0]
        if g["estimator"].nunique() == 1:
            parts.append(f"For the gradient of {param}, only {lo['estimator']} ran: variance {fmt(lo['variance'])}, "
                         f"nothing to compare it with.")
            continue
        parts.append(
            f"For the gradient of {param}, {lo['estimator']} has the lowest variance ({fmt(lo['variance'])}) and "
            f"{hi['estimator']} the highest ({fmt(hi['variance'])}"
            + (f", {fmt(hi['variance'] / lo['variance'])}x more); " if lo["variance"] > 0 else "); ") +
            f"counting time, {eff['estimator']} is the most efficient."
        )
    # where, across the whole sweep, does the pathwise estimator lose?
    swept = rows.dropna(subset=["variance_vs_reparam"])
    swept = swept[swept["estimator"] != REFERENCE]
    if not swept.empty:
        better = swept[swept["variance_vs_reparam"] < 1]
        n_settings = swept.groupby(["setting", "n_samples", "parameter"]).ngroups
        if better.empty:
            parts.append(f"Over all {n_settings} settings x gradients run, no estimator has lower variance than "
                         f"reparameterization.")
        else:
            best = better.sort_values("variance_vs_reparam").iloc[0]
            parts.append(
                f"Over all {n_settings} settings x gradients run, another estimator beats reparameterization's "
                f"variance in {better.groupby(['setting', 'n_samples', 'parameter']).ngroups} of them; the "
                f"largest gain is {best['estimator']}'s on the {best['parameter']}-gradient at "
                f"{setting_text(best, TOY_SETTING)}, n={int(best['n_samples'])} "
                + (f"({fmt(1 / best['variance_vs_reparam'])}x lower)." if best["variance_vs_reparam"] > 0
                   else "(zero variance: every estimate was the same).")
            )
    z = rows["bias_z"].abs()
    if z.notna().any():
        n = int(z.notna().sum())
        worst = rows.loc[z.idxmax()]
        expect = math.sqrt(2 * math.log(max(n, 2)))
        verdict = "consistent with every estimator being unbiased" if z.max() <= expect + 1.5 else \
            "larger than chance alone explains: look at that cell"
        parts.append(
            f"Bias: the largest |bias z| over the {n} cells x gradients is {fmt(z.max())} "
            f"({worst['estimator']}, {worst['parameter']}, {setting_text(worst, TOY_SETTING)}); "
            f"the largest of {n} standard normals is typically about {fmt(expect)}, so this is {verdict}."
        )
    return " ".join(parts)


def vae_paragraph(df: pd.DataFrame, problem: str) -> str:
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    parts = []
    for ckpt in ("untrained", "trained"):
        g = rows[rows["checkpoint"] == ckpt].sort_values("total_variance")
        if g.empty:
            continue
        lo, hi = g.iloc[0], g.iloc[-1]
        eff = g.sort_values("efficiency", ascending=False).iloc[0]
        if g["estimator"].nunique() == 1:
            parts.append(f"At the {ckpt} checkpoint only {lo['estimator']} ran: total variance of the encoder "
                         f"gradient {fmt(lo['total_variance'])}, nothing to compare it with.")
            continue
        parts.append(
            f"At the {ckpt} checkpoint, {lo['estimator']} has the lowest total variance of the encoder gradient "
            f"({fmt(lo['total_variance'])}) and {hi['estimator']} the highest ({fmt(hi['total_variance'] / lo['total_variance'])}x more); "
            f"{eff['estimator']} is the most efficient."
        )
    z = rows["agreement_z"].dropna() if "agreement_z" in rows else pd.Series(dtype=float)
    if not z.empty:
        n_coords = int(round((rows["total_variance"] / rows["variance"]).median()))
        from statistics import NormalDist

        thresh = NormalDist().inv_cdf(1 - 0.01 / (2 * n_coords * len(z)))
        verdict = "so the estimators agree on the mean gradient" if z.max() <= thresh else \
            "so at least one estimator's mean gradient disagrees with the pathwise one"
        parts.append(
            f"No closed-form gradient exists here: the reference is the pathwise estimator's mean. The largest "
            f"|z| between an estimator's mean and it, over {n_coords} encoder coordinates, is {fmt(z.max())}; "
            f"with a 1% false-alarm rate over all coordinates and estimators the threshold is {fmt(thresh)}, "
            f"{verdict}."
        )
    return " ".join(parts)


def training_table(tr: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (problem, est, n), g in tr.groupby(["problem", "estimator", "n_samples"], sort=False):
        g = g.sort_values("step")
        last = g.iloc[-1]
        first = g.iloc[0]
        out.append({
            "problem": problem, "estimator": est, "n_samples": int(n),
            "steps": int(last["step"]) if not pd.isna(last.get("step")) else 0,
            "test ELBO at start": first.get("elbo_test"),
            "test ELBO at end": last.get("elbo_test"),
            "best test ELBO": g["elbo_test"].max(),
            "train time (s)": last.get("wall_time_s"),
            "status": last["status"] if last["status"] != "ok" else "ok",
        })
    return pd.DataFrame(out)


def training_paragraph(table: pd.DataFrame) -> str:
    ok = table[table["status"] == "ok"].dropna(subset=["test ELBO at end"])
    parts = []
    if not ok.empty:
        best = ok.sort_values("test ELBO at end", ascending=False).iloc[0]
        worst = ok.sort_values("test ELBO at end").iloc[0]
        parts.append(
            f"After {int(best['steps'])} steps, {best['estimator']} reaches the best test ELBO "
            f"({fmt(best['test ELBO at end'], 4)} nats per image, from {fmt(best['test ELBO at start'], 4)}) and "
            f"{worst['estimator']} the worst ({fmt(worst['test ELBO at end'], 4)})."
        )
    bad = table[table["status"] != "ok"]
    for _, r in bad.iterrows():
        parts.append(f"{r['estimator']}'s training {r['status']}.")
    return " ".join(parts)


# -- figures ------------------------------------------------------------------

def _savefig(fig, path: Path, tight: bool = True) -> None:
    kw = {"bbox_inches": "tight"} if tight else {}
    _atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png", **kw))


def _value_ticks(grid, values: pd.Series) -> None:
    """Label a log x-axis at the values run, in plain numbers, without minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ticks = sorted(values.unique())
    for ax in grid.axes.flat:
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())


def figures(df: pd.DataFrame, tr: pd.DataFrame | None, out: Path, base: dict[str, Any]) -> list[tuple[str, str]]:
    """Draw every figure the data allow; returns (title, relative path) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    made: list[tuple[str, str]] = []
    estimators = sorted(df["estimator"].unique(), key=lambda e: (e != REFERENCE, e))
    palette = dict(zip(estimators, sns.color_palette("tab10", len(estimators))))

    def save(fig, name: str, title: str, tight: bool = True) -> None:
        path = out / FIGURES / name
        _savefig(fig, path, tight)
        plt.close(fig)
        made.append((title, f"{FIGURES}/{name}"))

    positive = df[(df["variance"] > 0) | (df["status"] != "ok")]  # log axes cannot show an exact zero
    for axis, label in (("sigma", "sigma"), ("mu", "mu")):
        d = axis_slice(positive, axis, base)
        if d[axis].nunique() < 2:
            continue
        g = sns.relplot(data=d, x=axis, y="variance", hue="estimator", row="parameter", col="problem",
                        kind="line", marker="o", palette=palette, hue_order=estimators, errorbar=None,
                        height=2.8, aspect=1.2, facet_kws={"sharey": False})
        g.set(yscale="log")
        if axis == "sigma":
            g.set(xscale="log")
            _value_ticks(g, d[axis])
        g.set_titles("{col_name}, gradient of {row_name}")
        g.set_axis_labels(label, "variance of one estimate")
        fixed = ", ".join(f"{k}={fmt(v)}" for k, v in base.items() if k != axis)
        g.figure.suptitle(f"Estimator variance against {label} ({fixed})")
        g.figure.subplots_adjust(top=0.88)
        save(g.figure, f"variance_vs_{axis}.png", f"Variance against {label}", tight=False)  # laid out by seaborn

    d = axis_slice(positive, "n_samples", base)
    if d["n_samples"].nunique() >= 2:
        g = sns.relplot(data=d, x="n_samples", y="variance", hue="estimator", row="parameter", col="problem",
                        kind="line", marker="o", palette=palette, hue_order=estimators, errorbar=None,
                        height=2.8, aspect=1.2, facet_kws={"sharey": False})
        g.set(xscale="log", yscale="log")
        _value_ticks(g, d["n_samples"])
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
        g.figure.suptitle("Variance against samples per estimate (dashed: 1/n reference)")
        g.figure.subplots_adjust(top=0.88)
        save(g.figure, "variance_vs_n_samples.png", "Variance against the number of samples", tight=False)

    vae = df[(~_is_toy(df)) & (df["status"] == "ok")]
    if not vae.empty:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        sns.barplot(data=vae, x="checkpoint", y="total_variance", hue="estimator", palette=palette,
                    hue_order=[e for e in estimators if e in set(vae["estimator"])],
                    order=[c for c in ("untrained", "trained") if c in set(vae["checkpoint"])], ax=ax)
        ax.set_yscale("log")
        ax.set_ylabel("total variance of the encoder gradient")
        ax.set_title(f"{', '.join(sorted(vae['problem'].unique()))}: ELBO gradient variance per estimator")
        ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
        save(fig, "vae_gradient_variance.png", "VAE encoder-gradient variance")

    if tr is not None and "elbo_test" in tr:
        curves = tr.dropna(subset=["elbo_test"]).copy()
        if not curves.empty:
            final = tr.sort_values("step").groupby("estimator")["status"].last()
            curves["estimator"] = curves["estimator"].map(
                lambda e: e if final.get(e, "ok") == "ok" else f"{e} ({final[e]})")
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
            for ax, x, label in ((axes[0], "step", "training step"), (axes[1], "wall_time_s", "training wall time (s)")):
                sns.lineplot(data=curves, x=x, y="elbo_test", hue="estimator", ax=ax, marker=".", errorbar=None,
                             palette=[palette.get(e.split(" (")[0]) for e in curves["estimator"].unique()],
                             hue_order=list(curves["estimator"].unique()))
                ax.set_xlabel(label)
                ax.set_ylabel("test ELBO (nats per image)")
            lo = curves["elbo_test"].quantile(0.02)
            axes[0].set_ylim(bottom=lo, top=curves["elbo_test"].max() + 0.05 * abs(curves["elbo_test"].max() - lo))
            axes[0].get_legend().remove()
            axes[1].legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
            fig.suptitle("VAE test ELBO while training with each estimator (same seed, same steps, Adam)")
            save(fig, "vae_test_elbo.png", "VAE test ELBO curves")

    eff_rows = []
    d = df[(df["status"] == "ok") & np.isfinite(df["efficiency_vs_reparam"]) & (df["efficiency_vs_reparam"] > 0)]
    toy_base = d[_is_toy(d)]
    for axis, value in base.items():
        toy_base = toy_base[toy_base[axis] == value]
    for _, r in toy_base.iterrows():
        eff_rows.append({"cell": f"{r['problem'].removeprefix('gaussian-')} d/d{r['parameter']}",
                         "estimator": r["estimator"], "efficiency_vs_reparam": r["efficiency_vs_reparam"]})
    for _, r in d[~_is_toy(d)].iterrows():
        eff_rows.append({"cell": f"{r['problem']} {r['checkpoint']}", "estimator": r["estimator"],
                         "efficiency_vs_reparam": r["efficiency_vs_reparam"]})
    if eff_rows:
        e = pd.DataFrame(eff_rows)
        fig, ax = plt.subplots(figsize=(max(7, 0.9 * e["cell"].nunique() + 3), 4))
        sns.barplot(data=e, x="cell", y="efficiency_vs_reparam", hue="estimator", palette=palette,
                    hue_order=[x for x in estimators if x in set(e["estimator"])], ax=ax)
        ax.set_yscale("log")
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_xlabel("")
        ax.set_ylabel("efficiency / reparameterization's")
        ax.set_title("Efficiency = 1 / (variance x time per estimate), relative to reparameterization")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
        save(fig, "efficiency.png", "Efficiency relative to reparameterization")
    return made


# -- the report ---------------------------------------------------------------

def _compile_line(df: pd.DataFrame) -> list[str]:
    """How many cells ran under torch.compile, and what compiling cost (results files from
    before the compile switch have no such columns: no line)."""
    if "compiled" not in df:
        return []
    ok = df[df["status"] == "ok"].drop_duplicates(["problem", "estimator", "setting", "n_samples"])
    compiled = ok["compiled"].astype(str).str.lower() == "true"
    if not compiled.any():
        return [f"- torch.compile: no cell compiled ({len(ok)} cells ran eagerly; `--compile on` compiles every cell)"]
    cost = pd.to_numeric(ok.loc[compiled, "compile_time_s"], errors="coerce")
    return [f"- torch.compile: {int(compiled.sum())} of {len(ok)} cells compiled, {cost.sum():.0f} s of compiling "
            f"(not in time per estimate)"]


def _provenance(df: pd.DataFrame) -> list[str]:
    def values(col: str) -> str:
        return ", ".join(str(v) for v in sorted(df[col].dropna().astype(str).unique())) if col in df else "unknown"

    lines = [
        f"- seed: {values('seed')}; replicates per cell: {values('replicates')}; dtype: {values('dtype')}; device: {values('device')}",
        f"- estbench {values('estbench_version')}, torch {values('torch_version')}, Python {values('python_version')}",
        f"- machine: {values('machine')}",
        *_compile_line(df),
        f"- problems: {', '.join(df['problem'].unique())}",
        f"- estimators: {', '.join(df['estimator'].unique())}",
    ]
    toy = df[_is_toy(df)]
    if not toy.empty:
        def listed(a: str) -> str:
            values = toy[a].dropna().unique()
            nums = sorted(v for v in values if not isinstance(v, str))
            vecs = sorted(v for v in values if isinstance(v, str))  # per-coordinate settings
            return ", ".join([fmt(v) for v in nums] + [f"({v})" for v in vecs])

        lines.append("- toy settings: " + "; ".join(f"{a} in {{{listed(a)}}}" for a in TOY_AXES))
    vae = df[~_is_toy(df)]
    if not vae.empty:
        lines.append("- VAE settings: " + "; ".join(
            f"{a} in {{{', '.join(fmt(v) for v in sorted(vae[a].dropna().unique(), key=str))}}}"
            for a in (*VAE_SETTING, "n_samples")))
    return lines


def check_out_dir(out: str | Path) -> None:
    """Refuse a report --out that exists and is not a folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file; the report is written into a folder (e.g. reports/mine)")


def check_benchmarks(path: str | Path) -> dict[str, Any]:
    """The pytest-benchmark JSON at ``path``, checked; ResultsError naming what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ResultsError(f"benchmark file {path} is not readable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"benchmark file {path} is not pytest-benchmark JSON (no list 'benchmarks')")
    for i, b in enumerate(data["benchmarks"]):
        if not isinstance(b, dict) or not isinstance(b.get("stats", {}), dict) \
                or not isinstance(b.get("extra_info", {}), dict):
            raise ResultsError(f"benchmark file {path}: benchmarks[{i}] is not a pytest-benchmark record "
                               f"(an object with 'stats' and 'extra_info' objects)")
        for key in ("mean", "stddev"):
            value = b.get("stats", {}).get(key, math.nan)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ResultsError(f"benchmark file {path}: benchmarks[{i}].stats.{key} is {value!r}, not a number")
    if not isinstance(data.get("machine_info", {}), dict):
        raise ResultsError(f"benchmark file {path}: machine_info is not an object")
    return data


def _benchmarks_section(path: Path, data: dict[str, Any]) -> list[str]:
    benches = data["benchmarks"]
    rows = []
    for b in benches:
        stats, extra = b.get("stats", {}), b.get("extra_info", {})
        rows.append({"benchmark": b.get("name"), "group": b.get("group"),
                     "mean (us)": stats.get("mean", math.nan) * 1e6, "stddev (us)": stats.get("stddev", math.nan) * 1e6,
                     "rounds": stats.get("rounds"), "variance": extra.get("variance"), "SNR": extra.get("snr")})
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    text = ["## pytest-benchmark timings", "",
            f"One gradient estimate per call, from `{path.name}` "
            f"(machine: {cpu.get('brand_raw') if isinstance(cpu, dict) and cpu.get('brand_raw') else machine.get('processor', 'unknown')}, "
            f"Python {machine.get('python_version', '?')}).", ""]
    return text + [markdown_table(pd.DataFrame(rows)), ""]


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and (a.resolve() == b.resolve() or a.read_bytes() == b.read_bytes())


def build(results: str | Path, out_dir: str | Path, benchmarks: str | Path | None = None,
          command: str | None = None, overwrite: bool = False) -> Path:
    """Write the report for ``results`` into ``out_dir``; returns the path of report.md.

    Everything is read and checked first (ResultsError names the problem), then the report
    is made in a temporary folder beside ``out_dir`` and its files moved in: a failure leaves
    ``out_dir`` as it was. Results already in ``out_dir`` that differ from ``results`` are
    replaced only with ``overwrite``."""
    results, out = Path(results), Path(out_dir)
    check_out_dir(out)
    notes: list[str] = []
    df = add_derived(read_results(results, notes))
    tr = read_training(results)
    bench = check_benchmarks(benchmarks) if benchmarks else None
    for note in notes:
        print(f"estbench report: warning: {note}", file=sys.stderr)
    with writer_lock(out / "results.csv"):  # the folder's results are written by one process at a time
        for src, name in ((results, "results.csv"), (training_path(results), "results-training.csv")):
            dst = out / name
            if not overwrite and src.exists() and dst.exists() and dst.stat().st_size > 0 and not _same_file(src, dst):
                raise ResultsError(f"{dst} already holds other results; add --overwrite to replace them, "
                                   f"or choose another --out")
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".building-"))
        try:
            report = _build_into(staging, df, tr, results, bench, benchmarks, command, notes)
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    dst = out / path.relative_to(staging)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, dst)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out / report.relative_to(staging)


def _build_into(out: Path, df: pd.DataFrame, tr: pd.DataFrame | None, results: Path, bench: dict | None,
                benchmarks: str | Path | None, command: str | None, notes: list[str]) -> Path:
    copy_file(results, out / "results.csv")
    if tr is not None:
        copy_file(training_path(results), out / "results-training.csv")
    base = base_values(df)

    md = ["# estbench variance report", ""]
    if command:
        md += [f"Made by `{command}`. Rebuild it without recomputing: `estbench report --results results.csv`.", ""]
    md += ["## What was run", "", *_provenance(df), ""]
    if notes:
        md += ["Read with repairs: " + "; ".join(notes) + ".", ""]
    md += ["Variance is that of one gradient estimate made from n_samples draws, per coordinate, averaged over "
           "coordinates (VAE: summed over the encoder's parameters, the trace of the covariance). Bias z is the "
           "bias against the closed-form gradient divided by its standard error. Efficiency = 1 / (variance x "
           "time per estimate): higher is better; '/ reparam' columns divide by reparameterization's value in "
           "the same setting.", ""]
    if base:
        md += [f"Toy tables show the base setting {', '.join(f'{k}={fmt(v)}' for k, v in base.items())}; "
               "`tables.csv` has every setting.", ""]

    for problem in df["problem"].unique():
        table = problem_table(df, problem, base)
        md += [f"## {problem}", ""]
        if table.empty:
            md += ["No cell of this problem completed.", ""]
            continue
        para = toy_paragraph(df, problem, base) if problem.startswith("gaussian-") else vae_paragraph(df, problem)
        md += [para, "", markdown_table(table), ""]

    if tr is not None:
        t = training_table(tr)
        md += ["## VAE training with each estimator", "", training_paragraph(t), "", markdown_table(t), ""]

    failed = df[df["status"] == "failed"]
    md += ["## Failed cells", ""]
    if failed.empty:
        md += ["None.", ""]
    else:
        f = failed[["problem", "estimator", "parameter", "setting", "n_samples", "error"]]
        md += [f"{len(f)} rows failed; the rest of the run went on.", "", markdown_table(f), ""]
    skipped = df[df["status"] == "skipped"]
    if not skipped.empty:
        reasons = skipped.groupby(["estimator", "error"]).size().reset_index(name="rows")
        md += ["Skipped (the estimator does not apply):", "", markdown_table(reasons), ""]

    if bench is not None and benchmarks:
        bpath = Path(benchmarks)
        md += _benchmarks_section(bpath, bench)
        copy_file(bpath, out / "benchmarks.json")

    made = figures(df, tr, out, base)
    if made:
        md += ["## Figures", ""]
        for title, rel in made:
            md += [f"### {title}", "", f"![{title}]({rel})", ""]

    tables = all_tables(df)
    _atomic_write(out / "tables.csv", lambda p: tables.to_csv(p, index=False))
    report = out / "report.md"
    write_text(report, "\n".join(md))
    return report
