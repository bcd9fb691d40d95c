"""The report's section comparing the estimators other libraries ship (the adapters: rows with a
``counterpart``) with estbench's own implementation of the same method, cell by cell.

Per problem and library estimator: how many of its cells ran, its largest |bias z| against the
exact gradient beside its counterpart's over the same cells, the verdict by the problem's bias rule
(reports.text.bias_threshold), the variance ratio library / estbench's (geometric mean over the cells
where both ran, with its 95% interval) and the time ratio (geometric mean, with the range over cells).
The findings sentence is made from these numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .tables import Z95, fmt, markdown_table
from .text import bias_threshold

KEYS = ["problem", "parameter", "setting", "n_samples"]
OWN, LIB_Z, OWN_Z = "estbench's", "max |bias z|: library", "max |bias z|: estbench's"


def _base_names(df: pd.DataFrame) -> pd.Series:
    """Each row's registered estimator name (the label can carry '(options)' where it ran with several values)."""
    return (df["estimator_name"] if "estimator_name" in df else df["estimator"]).astype(str)


def _counterpart_rows(df: pd.DataFrame, base: pd.Series, problem: str, rows: pd.DataFrame,
                      names: list[str]) -> tuple[str, pd.DataFrame]:
    """(name, ok rows) of the first of ``names`` that has ok rows on ``problem``, preferring the library
    estimator's own option values; ``base``: _base_names(df)."""
    for name in names:
        own = df[(df["problem"] == problem) & (base == name) & (df["status"] == "ok")]
        if own.empty:
            continue
        opts = own["estimator_options"].fillna("").astype(str) if "estimator_options" in own else None
        if opts is not None and opts.nunique() > 1:
            mine = set(rows["estimator_options"].fillna("").astype(str)) if "estimator_options" in rows else set()
            same = own[opts.isin(mine)]
            own = same if not same.empty else own[opts == sorted(opts.unique())[0]]
        return str(own["estimator"].iloc[0]), own
    return "", df.iloc[0:0]


def _ratio(lib: pd.DataFrame) -> str:
    """Geometric mean of variance ratios over matched cells, with the 95% interval from each cell's standard errors."""
    both = lib[(lib["variance"] > 0) & (lib["own_variance"] > 0)]
    if both.empty:
        zero = lib[(lib["variance"] == 0) & (lib["own_variance"] == 0)]
        return "both exact" if not zero.empty else ""
    logs = np.log(both["variance"] / both["own_variance"])
    centre = float(np.exp(logs.mean()))
    if "variance_se" not in both:
        return fmt(centre)
    rel = (both["variance_se"] / both["variance"]) ** 2 + (both["own_variance_se"] / both["own_variance"]) ** 2
    half = Z95 * math.sqrt(float(rel.sum())) / len(both)
    if not math.isfinite(half):
        return fmt(centre)
    return f"{fmt(centre)} [{fmt(centre / math.exp(half))}, {fmt(centre * math.exp(half))}]"


def _time_ratio(lib: pd.DataFrame) -> str:
    both = lib[(lib["time_per_estimate_s"] > 0) & (lib["own_time"] > 0)]
    if both.empty:
        return ""
    r = both["time_per_estimate_s"] / both["own_time"]
    return f"{fmt(float(np.exp(np.log(r).mean())))} [{fmt(r.min())}, {fmt(r.max())}]"


def comparison(df: pd.DataFrame) -> pd.DataFrame:
    """One row per problem and library estimator (see the module docstring); empty without adapter rows."""
    if "counterpart" not in df:
        return pd.DataFrame()
    # where an adapter does not apply (skipped: a Bernoulli method on a Gaussian) there is nothing to compare
    lib_rows = df[(df["counterpart"].fillna("").astype(str) != "") & (df["status"] != "skipped")]
    out = []
    base = _base_names(df)
    for (problem, est), rows in lib_rows.groupby(["problem", "estimator"], sort=False):
        name, own = _counterpart_rows(df, base, problem, rows, str(rows["counterpart"].iloc[0]).split())
        ok = rows[rows["status"] == "ok"]
        all_z = df.loc[(df["problem"] == problem) & (df["status"] == "ok"), "bias_z"]
        thresh = bias_threshold(int(all_z.notna().sum()))
        cols = ["variance", "variance_se", "time_per_estimate_s", "bias_z"]
        own_cols = own[KEYS + [c for c in cols if c in own]].rename(
            columns={"variance": "own_variance", "variance_se": "own_variance_se", "time_per_estimate_s": "own_time",
                     "bias_z": "own_bias_z"})
        matched = ok.merge(own_cols, on=KEYS, how="inner")
        z = ok["bias_z"].abs()
        if ok.empty:
            status = rows["status"].iloc[0]
            verdict = f"{status}: {str(rows['error'].iloc[0])[:160]}"
        elif z.notna().any():
            over = int((z > thresh).sum())
            verdict = f"**flagged biased** ({over} of {int(z.notna().sum())} cells)" if over else "not flagged"
        else:
            verdict = "no exact gradient"
        out.append({
            "problem": problem, "library estimator": est, OWN: name or "(none ran)",
            "cells ok": f"{len(ok)} of {len(rows)}",
            LIB_Z: fmt(z.max()) if z.notna().any() else "",
            OWN_Z: fmt(matched["own_bias_z"].abs().max()) if "own_bias_z" in matched and not matched.empty
            else "",
            "verdict": verdict,
            "variance ratio library / estbench's [95% CI]": _ratio(matched) if not matched.empty else "",
            "time ratio [range]": _time_ratio(matched) if not matched.empty else "",
            "_threshold": thresh, "_flagged": verdict.startswith("**"), "_failed": ok.empty,
            "_own_flagged": bool("own_bias_z" in matched and (matched["own_bias_z"].abs() > thresh).any()),
        })
    return pd.DataFrame(out)


def findings(table: pd.DataFrame) -> str:
    """One paragraph from the comparison's numbers: what is flagged biased, what failed, what passed."""
    parts = []
    flagged = table[table["_flagged"]]
    if not flagged.empty:
        said = []
        for _, r in flagged.iterrows():
            own, own_z = r[OWN], r[OWN_Z] or "n/a"
            also = ("flagged too: a biased method" if r["_own_flagged"] else "not flagged") if r[OWN_Z] else "not run"
            said.append(f"{r['library estimator']} on {r['problem']} (|bias z| up to {r[LIB_Z]} against a threshold of "
                        f"{fmt(r['_threshold'])}; estbench's {own}: {own_z}, {also})")
        parts.append("Flagged biased against the exact gradient: " + "; ".join(said) + ".")
    failed = table[table["_failed"]]
    if not failed.empty:
        parts.append("Did not run: " + "; ".join(f"{r['library estimator']} on {r['problem']} ({r['verdict']})"
                                               for _, r in failed.iterrows()) + ".")
    passed = table[~table["_flagged"] & ~table["_failed"] & (table["verdict"] == "not flagged")]
    for problem, rows in passed.groupby("problem", sort=False):
        parts.append(f"Not flagged on {problem}: " + ", ".join(rows["library estimator"]) + ".")
    return " ".join(parts)


def library_section(df: pd.DataFrame) -> list[str]:
    """The report's markdown lines for the section (none without adapter rows)."""
    table = comparison(df)
    if table.empty:
        return []
    shown = table[[c for c in table.columns if not c.startswith("_")]]
    return ["## Library estimators against estbench's own", "",
            "Each estimator another library ships (run through its adapter, as the library's users call it) beside "
            "estbench's implementation of the same method, over the cells both ran (same problem, setting, "
            "n_samples and seed): the bias verdict by each problem's rule above, the variance ratio (geometric mean "
            "over the cells, 95% interval) and the time ratio (geometric mean, range over cells).", "",
            findings(table), "", markdown_table(shown), ""]
