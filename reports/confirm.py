"""Bias flags near the threshold, confirmed by a rerun.

The bias verdict (reports.text.bias_threshold) flags a cell whose |bias z| exceeds a threshold set for a
1% false-alarm rate over all of a problem's cells; a flag just above it may be that false alarm.
``estbench report`` therefore reruns, by itself and with CONFIRMATION_FACTOR times the replicates (and
other random numbers), every cell flagged at no more than NEAR times the threshold
(``cells_to_confirm``), and writes the rerun's rows to the results file marked ``confirmation``. The
report (``attach_confirmations``) keeps them out of its tables and figures and reads the flag as
confirmed where the rerun's |bias z| is still over the threshold, not confirmed where it is not.
"""

from __future__ import annotations

import pandas as pd

from .text import bias_threshold

#: a flag with |bias z| at most this many times the threshold is rerun before it is printed
NEAR = 2.0
#: the rerun's replicates, as a multiple of the cell's
CONFIRMATION_FACTOR = 10
_ROW = ["problem", "estimator", "estimator_options", "setting", "n_samples", "parameter", "dtype", "device"]


def is_confirmation(df: pd.DataFrame) -> pd.Series:
    """The confirmation rows (a file without the column has none)."""
    if "confirmation" not in df:
        return pd.Series(False, index=df.index)
    return df["confirmation"].astype(str).str.strip().str.lower().isin(["true", "1"])


def near_flags(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows (not confirmations) flagged biased at no more than NEAR times their problem's threshold."""
    rows = df[~is_confirmation(df) & (df["status"] == "ok")] if "bias_z" in df else df.iloc[0:0]
    out = []
    for _, mine in rows.groupby("problem", sort=False):
        z = pd.to_numeric(mine["bias_z"], errors="coerce").abs()
        thresh = bias_threshold(int(z.notna().sum()))
        out.append(mine[(z > thresh) & (z <= NEAR * thresh)])
    return pd.concat(out) if out else rows.iloc[0:0]


def cells_to_confirm(df: pd.DataFrame) -> list[tuple[str, str, str, str, str]]:
    """The cells to rerun, as (problem, estimator, estimator_options, setting, n_samples) text, from a
    results table as read_results reads it (``estimator_name``: the registered name)."""
    near = near_flags(df)
    name = near["estimator_name"] if "estimator_name" in near else near["estimator"]
    opts = near["estimator_options"].fillna("").astype(str) if "estimator_options" in near else ""
    keys = zip(near["problem"].astype(str), name.astype(str), opts, near["setting"].astype(str),
               near["n_samples"].astype(int).astype(str), strict=True)
    return list(dict.fromkeys(keys))


def attach_confirmations(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without its confirmation rows, each row that has one given ``confirmation_z`` (the rerun's
    bias z) and ``confirmation_replicates``."""
    conf = is_confirmation(df)
    out = df[~conf].copy()
    reruns = df[conf & (df["status"] == "ok")]
    out["confirmation_z"], out["confirmation_replicates"] = float("nan"), float("nan")
    if reruns.empty:
        return out
    key = [c for c in _ROW if c in df]
    found = reruns[key + ["bias_z", "replicates"]].rename(columns={"bias_z": "cz", "replicates": "cr"})
    found = found.astype({c: str for c in key}).drop_duplicates(key, keep="last")
    merged = out[key].astype(str).merge(found, on=key, how="left")
    out["confirmation_z"] = pd.to_numeric(merged["cz"], errors="coerce").to_numpy()
    out["confirmation_replicates"] = pd.to_numeric(merged["cr"], errors="coerce").to_numpy()
    return out
