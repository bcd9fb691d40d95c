"""The training curves over seeds: each estimator trains the same model from ``train_seed`` = 0..S-1
(its own initial weights, batch order and draws per seed), and the report shows the mean test ELBO with
a 95% interval of that mean (Student's t over the seeds), in the figure as a band, in the table and in
the text, which says whose final intervals separate and whose overlap. One seed: the mean is that
curve and there is no interval, so the text ranks nothing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .tables import fmt

#: what groups one estimator's curves (over seeds)
CURVE = ["problem", "estimator", "n_samples"]


def with_seeds(tr: pd.DataFrame) -> pd.DataFrame:
    """``tr`` with a ``train_seed`` column (results files from before seeds had one curve each: seed 0)."""
    return tr if "train_seed" in tr else tr.assign(train_seed=0)


def t_half_width(values: pd.Series) -> float:
    """Half-width of the 95% interval of the mean of ``values`` (Student's t, n - 1 degrees of freedom);
    NaN for fewer than two values."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return math.nan
    from scipy.stats import t  # scipy comes with scikit-learn, a dependency

    return float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def mean_curves(tr: pd.DataFrame) -> pd.DataFrame:
    """Per estimator and logged step: the mean test ELBO over seeds, its interval (``lo``, ``hi``), the
    mean training wall time and the number of seeds with a value there."""
    tr = with_seeds(tr).dropna(subset=["elbo_test"])
    rows = []
    for (problem, est, n, step), g in tr.groupby([*CURVE, "step"], sort=False):
        mean, half = g["elbo_test"].mean(), t_half_width(g["elbo_test"])
        rows.append({"problem": problem, "estimator": est, "n_samples": n, "step": step, "elbo_test": mean,
                     "lo": mean - half, "hi": mean + half, "wall_time_s": g["wall_time_s"].mean(), "seeds": len(g)})
    return pd.DataFrame(rows)


def seeds_status(statuses: pd.Series) -> str:
    """'ok' when every seed's curve ended ok; else the other status, with how many seeds had it."""
    bad = statuses[statuses != "ok"]
    if bad.empty:
        return "ok"
    worst = bad.value_counts().index[0]
    return worst if len(bad) == len(statuses) else f"{worst} ({len(bad)} of {len(statuses)} seeds)"


def training_table(tr: pd.DataFrame) -> pd.DataFrame:
    """One row per estimator of each model problem: its seeds, the mean test ELBO at start and at the end
    over the seeds whose curve ended with a value (95% interval), the mean best, the mean training time."""
    out = []
    for (problem, est, n), g in with_seeds(tr).groupby(CURVE, sort=False):
        ends = [s.sort_values("step").iloc[[0, -1]] for _, s in g.groupby("train_seed")]
        first = pd.DataFrame([e.iloc[0] for e in ends])
        last = pd.DataFrame([e.iloc[-1] for e in ends])
        end = last["elbo_test"].dropna()
        half = t_half_width(end)
        out.append({
            "problem": problem, "estimator": est, "n_samples": int(n), "seeds": len(ends),
            "steps": int(last["step"].max()) if last["step"].notna().any() else 0,
            "test ELBO at start": first["elbo_test"].mean(),
            "test ELBO at end": end.mean() if len(end) else math.nan,
            "end lo": end.mean() - half, "end hi": end.mean() + half,
            "best test ELBO": g.groupby("train_seed")["elbo_test"].max().mean(),
            "train time (s)": last["wall_time_s"].mean(),
            "status": seeds_status(last["status"]),
        })
    return pd.DataFrame(out)


def shown_table(table: pd.DataFrame) -> pd.DataFrame:
    """The training table as the report prints it: the end's interval as one column, skipped rows out."""
    shown = table[table["status"] != "skipped"].drop(columns="problem")
    interval = shown.apply(lambda r: f"[{fmt(r['end lo'], 4)}, {fmt(r['end hi'], 4)}]" if np.isfinite(r["end lo"]) else "",
                           axis=1)
    at = list(shown.columns).index("test ELBO at end") + 1
    shown = shown.drop(columns=["end lo", "end hi"])
    for c in ("test ELBO at start", "test ELBO at end", "best test ELBO"):  # as many digits as the interval's
        shown[c] = shown[c].map(lambda v: fmt(v, 4))
    shown.insert(at, "95% interval at end", interval if len(shown) else pd.Series(dtype=str))
    return shown


def separation(table: pd.DataFrame) -> tuple[str, list[str], list[str]] | None:
    """(the estimator with the highest mean final test ELBO, those whose 95% interval overlaps its, those
    whose interval lies below it) among one problem's estimators with an interval; None where fewer than
    two have one."""
    ok = table[table["status"].eq("ok") & table["end lo"].notna() & np.isfinite(table["end lo"])]
    if len(ok) < 2:
        return None
    ok = ok.sort_values("test ELBO at end", ascending=False)
    best = ok.iloc[0]
    rest = ok.iloc[1:]
    overlap = rest[rest["end hi"] >= best["end lo"]]
    below = rest[rest["end hi"] < best["end lo"]]
    return str(best["estimator"]), list(overlap["estimator"]), list(below["estimator"])


def _interval(r: pd.Series) -> str:
    text = fmt(r["test ELBO at end"], 4)
    return f"{text}, interval [{fmt(r['end lo'], 4)}, {fmt(r['end hi'], 4)}]" if np.isfinite(r["end lo"]) else text


def training_paragraph(table: pd.DataFrame) -> str:
    """One model problem's training table (training_table rows of one problem) in words: the best and the
    worst mean final test ELBO and, with two or more seeds, whose intervals separate from the best's."""
    ok = table[table["status"] == "ok"].dropna(subset=["test ELBO at end"])
    parts = []
    if not ok.empty:
        best = ok.sort_values("test ELBO at end", ascending=False).iloc[0]
        worst = ok.sort_values("test ELBO at end").iloc[0]
        seeds = int(ok["seeds"].max())
        over = f"the mean over {seeds} seeds with its 95% interval" if seeds > 1 else "one seed, no interval"
        parts.append(
            f"After {int(best['steps'])} steps on {best['problem']} ({over}), {best['estimator']} reaches the best "
            f"test ELBO ({_interval(best)} nats per image; {fmt(best['test ELBO at start'], 4)} at the start) and "
            f"{worst['estimator']} the worst ({_interval(worst)})."
        )
        split = separation(table)
        if split is not None:
            top, overlap, below = split
            parts.append(f"Not separated from {top} (their final intervals overlap its): "
                         f"{', '.join(overlap) if overlap else 'none'}.")
            parts.append(f"Separated below it (intervals apart): {', '.join(below) if below else 'none'}; the order "
                         "among estimators whose intervals overlap is not a ranking.")
        elif seeds == 1:
            parts.append("With one seed per estimator no difference between them is established (--train-seeds).")
    bad = table[~table["status"].isin(["ok", "skipped"])]
    for _, r in bad.iterrows():
        parts.append(f"{r['estimator']}'s training {r['status']}.")
    skipped = table[table["status"] == "skipped"]
    if not skipped.empty:
        parts.append(f"Not applicable to this model (skipped): {', '.join(skipped['estimator'])}.")
    return " ".join(parts)


__all__ = ["mean_curves", "separation", "shown_table", "t_half_width", "training_paragraph", "training_table", "with_seeds"]
