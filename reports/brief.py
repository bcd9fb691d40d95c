"""The report's In-brief lines: per problem, the lowest variance and the most efficient per evaluation
of f at its base setting (or per checkpoint), and the bias verdict. Imports no model code."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .tables import fmt, with_interval
from .text import bias_threshold, flagged_biased, model_groups, overlapping


def _lowest(g: pd.DataFrame, col: str, biased: list[str]) -> str:
    """'X' (or 'X, tied with Y' where 95% intervals overlap), the lowest nonzero ``col`` of ``g`` among
    estimators not flagged biased; exact zeros named first."""
    zero = list(g.loc[g[col] == 0, "estimator"])
    ranked = g[(g[col] > 0) & ~g["estimator"].isin(biased)].sort_values(col)
    parts = [f"{e} (zero variance)" for e in zero]
    if not ranked.empty:
        lo = ranked.iloc[0]
        tied = list(overlapping(ranked, lo, col)["estimator"])
        parts.append(lo["estimator"] + (f" (tied with {', '.join(tied)})" if tied else ""))
    return "; ".join(parts) if parts else "none"


def summary_line(df: pd.DataFrame, problem: str, base: dict[str, Any]) -> str:
    """The one-line summary of a problem: the lowest variance at its base setting (toys, per gradient) or
    per checkpoint (models), and the estimators flagged biased by the stated rule."""
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    if rows.empty:
        return f"- **{problem}**: no cell completed."
    # flagged by the rule, or declared biased (estimator_unbiased "no": a relaxation exact at some setting is not
    # recommended there as if it were unbiased)
    declared = rows.loc[rows["estimator_unbiased"].astype(str).eq("no"), "estimator"] if "estimator_unbiased" in rows \
        else pd.Series(dtype=str)
    biased = flagged_biased(rows)
    excluded = [*biased, *sorted(set(declared) - set(biased))]
    if "checkpoint" in rows and rows["problem_kind"].iloc[0] != "toy" and rows["checkpoint"].notna().any():
        where = model_groups(rows)
        col = "total_variance"
    else:
        at = rows
        for axis, value in base.items():
            at = at[at[axis] == value]
        where = [(f"gradient of {p}", g) for p, g in at.groupby("parameter", sort=True)]
        col = "variance"
    lowest = "; ".join(f"{w}: {_lowest(g, col, excluded)}" for w, g in where if not g.empty)
    per_eval = "; ".join(f"{w}: {e}" for w, g in where if not g.empty and (e := _per_eval(g, excluded)))
    z = rows["bias_z"].abs()
    verdict = ("no exact gradient, no bias verdict" if not z.notna().any() else
               f"**flagged biased: {', '.join(biased)}**" if biased else "none flagged biased")
    rule = f" (|bias z| > {fmt(bias_threshold(int(z.notna().sum())))})" if z.notna().any() else ""
    per_eval = f"; most efficient per evaluation of f (lowest variance x f evals, 95% interval), {per_eval}" \
        if per_eval else ""
    return f"- **{problem}**: lowest variance, {lowest}{per_eval}; {verdict}{rule}."


def _per_eval(g: pd.DataFrame, biased: list[str]) -> str:
    """'X (v [lo, hi]; tied with Y)': the lowest variance x f evals among the estimators with a nonzero
    variance not flagged biased, where f evals were counted; '' where none."""
    if "variance_x_evals" not in g:
        return ""
    ranked = g[(g["variance"] > 0) & g["variance_x_evals"].notna() & ~g["estimator"].isin(biased)]
    ranked = ranked.sort_values("variance_x_evals")
    if ranked.empty:
        return ""
    best = ranked.iloc[0]
    tied = list(overlapping(ranked, best, "variance_x_evals")["estimator"])
    value = with_interval(best["variance_x_evals"], best.get("variance_x_evals_lo"), best.get("variance_x_evals_hi"))
    return f"{best['estimator']} ({value}" + (f"; tied with {', '.join(tied)})" if tied else ")")
