"""Compare the uncertainty of two results files of the same command (for docs/uncertainty.md).

    .venv/bin/python tools/compare_runs.py A/results.csv B/results.csv    (or the report folders A B)

For each file: its cells, the estimates drawn, the widest and the median 95% variance interval (hi / lo),
and the timing spread (slowest / fastest of the 5 timed parts). Then the variance rankings the intervals
separate: pairs of estimators in one setting and gradient whose intervals do not overlap in A, and how many
of them B separates the same way, reverses, or leaves overlapping. Reads results files only (pandas).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

CELL = ["problem", "estimator", "estimator_options", "setting", "n_samples"]


def summary(name: str, df: pd.DataFrame) -> None:
    ok = df[(df["status"] == "ok") & (df["variance"] > 0)].copy()
    ok["width"] = ok["variance_hi"] / ok["variance_lo"]
    wide = ok.loc[ok["width"].idxmax()]
    cells = df[df["status"] == "ok"].drop_duplicates(CELL)
    used = cells["replicates_used"] if "replicates_used" in cells else cells["replicates"]
    spread = (ok["time_per_estimate_max_s"] / ok["time_per_estimate_min_s"]).drop_duplicates()
    print(f"{name}: {len(cells)} cells, {int(used.sum()):,} estimates (R {int(used.min()):,}-{int(used.max()):,}); "
          f"95% interval hi/lo: median {ok['width'].median():.3g}, widest {wide['width']:.3g} ({wide['problem']}, "
          f"{wide['estimator']}, {wide['parameter']}, {wide['setting']}, n={wide['n_samples']}, "
          f"R={int(wide.get('replicates_used', wide['replicates'])):,}); timing spread slowest/fastest part: "
          f"median {spread.median():.3g}, 90th percentile {spread.quantile(0.9):.3g}, max {spread.max():.3g}; "
          f"load average {df['load_avg'].min():.2f}-{df['load_avg'].max():.2f}")


def separated(df: pd.DataFrame, what: str = "variance") -> dict[tuple, int]:
    """{(problem, setting, n_samples, parameter, A, B): +1 if A's interval lies below B's, -1 above, 0 overlap},
    for the variance or (``what`` = "efficiency") the efficiency interval: the variance's 95% interval with the
    fastest and slowest timed part, as the report builds it."""
    ok = df[(df["status"] == "ok") & (df["variance"] > 0)].copy()
    if what == "efficiency":
        ok["variance_lo"] = ok["variance_lo"] * ok["time_per_estimate_min_s"]  # 1 / efficiency, its interval
        ok["variance_hi"] = ok["variance_hi"] * ok["time_per_estimate_max_s"]
    out = {}
    for key, g in ok.groupby(["problem", "setting", "n_samples", "parameter"]):
        rows = list(g.itertuples())
        for a in rows:
            for b in rows:
                if a.estimator < b.estimator or (a.estimator == b.estimator and a.estimator_options < b.estimator_options):
                    sign = 1 if a.variance_hi < b.variance_lo else -1 if b.variance_hi < a.variance_lo else 0
                    out[(*key, f"{a.estimator} {a.estimator_options}", f"{b.estimator} {b.estimator_options}")] = sign
    return out


def main(a: str, b: str) -> None:
    # a report folder stands for its results.csv
    paths = [Path(p) / "results.csv" if Path(p).is_dir() else Path(p) for p in (a, b)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"compare_runs: no results file at {', '.join(missing)} (give two results CSVs or report folders)",
              file=sys.stderr)
        sys.exit(2)
    da, db = (pd.read_csv(p, dtype={"error": str, "estimator_options": str}).fillna({"estimator_options": ""})
              for p in paths)
    summary("A", da)
    summary("B", db)
    for what in ("variance", "efficiency"):
        sa, sb = separated(da, what), separated(db, what)
        common = [k for k in sa if k in sb]
        sep = [k for k in common if sa[k] != 0]
        same = sum(sb[k] == sa[k] for k in sep)
        rev = sum(sb[k] == -sa[k] for k in sep)
        print(f"{what}: pairs compared: {len(common)}; separated in A: {len(sep)}; of those, B separates {same} the "
              f"same way, reverses {rev}, leaves {len(sep) - same - rev} overlapping; separated in B only: "
              f"{sum(sa[k] == 0 and sb[k] != 0 for k in common)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:3])
