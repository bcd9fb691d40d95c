"""The report's text: paragraphs written from the numbers, and what was run. Imports no
model code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.schema import CELL_KEY

from .load import axes
from .tables import fmt, is_toy, reference_label, reference_name, setting_text, with_interval


def overlapping(g: pd.DataFrame, best: pd.Series, col: str) -> pd.DataFrame:
    """The other rows of ``g`` with a nonzero ``col`` whose 95% interval reaches down to ``best``'s (``best``
    being the lowest): those the intervals do not tell apart from it. None where there are no intervals."""
    lo_col, hi_col = f"{col}_lo", f"{col}_hi"
    if lo_col not in g or pd.isna(best.get(hi_col)):
        return g.iloc[0:0]
    others = g[(g["estimator"] != best["estimator"]) & (g[col] > 0)]
    return others[others[lo_col] <= best[hi_col]]


def indistinguishable(g: pd.DataFrame, best: pd.Series, col: str = "variance") -> str:
    """'' when ``best`` (the lowest ``col`` of ``g``) is told apart from every other row by the 95%
    intervals (``col``_lo, ``col``_hi); otherwise a clause naming the rows whose intervals overlap its
    own and about the R that would separate it from the nearest (standard errors shrink as 1/sqrt(R))."""
    lo_col, hi_col = f"{col}_lo", f"{col}_hi"
    if best[col] == 0:
        return ""
    overlap = overlapping(g, best, col)
    if overlap.empty:
        return ""
    near = overlap.sort_values(col).iloc[0]
    # half-widths on the log scale ~ 1.96 se / value; separated once their sum is below log(near / best)
    gap = np.log(near[col] / best[col])
    width = np.log(best[hi_col] / best[col]) + np.log(near[col] / near[lo_col])
    used = best.get("replicates_used")
    r = int(used if used is not None and not pd.isna(used) else best["replicates"])
    needed = f"; about R = {int(math.ceil(r * (width / gap) ** 2)):,} would separate it from {near['estimator']}" \
        if gap > 0 and np.isfinite(width) else ""
    return (f", indistinguishable at R = {r:,} from {', '.join(overlap['estimator'])} (95% intervals overlap"
            f"{needed})")


def most_efficient(ranked: pd.DataFrame) -> str:
    """'X is the most efficient' when X's efficiency interval (variance interval x timing spread) lies
    above every other's; otherwise the estimators whose intervals overlap the best's, together."""
    ranked = ranked.sort_values("efficiency", ascending=False)
    best = ranked.iloc[0]
    if "efficiency_lo" not in ranked or pd.isna(best["efficiency_lo"]):
        return f"{best['estimator']} is the most efficient"
    tied = ranked.iloc[1:][ranked.iloc[1:]["efficiency_hi"] >= best["efficiency_lo"]]
    if tied.empty:
        return f"{best['estimator']} is the most efficient"
    names = [best["estimator"], *tied["estimator"]]
    return (f"{', '.join(names[:-1])} and {names[-1]} are the most efficient, indistinguishable (their efficiency "
            f"intervals, from the variance's 95% interval and the timing spread, overlap)")


def ranking_text(g: pd.DataFrame, col: str, biased: list[str], what: str = "") -> str:
    """Which estimators of ``g`` (one setting's rows) have zero ``col``, the lowest and the highest, and which is
    the most efficient counting time. Named lowest or most efficient: only estimators with a nonzero variance
    that are not flagged biased (``biased``); an exact zero is named apart, and never the most efficient."""
    g = g.sort_values(col)
    zero = g[g[col] == 0]
    nonzero = g[g[col] > 0]
    ranked = nonzero[~nonzero["estimator"].isin(biased)]
    if ranked.empty:
        ranked = nonzero if not nonzero.empty else g
    text = ""
    if not zero.empty:
        text = (f"{', '.join(zero['estimator'])} {'has' if len(zero) == 1 else 'have'} zero variance (every "
                f"estimate is the same, up to rounding)")
        if nonzero.empty:
            return text + "."
        text += "; of the others, "
    if len(nonzero) == 1:
        only = nonzero.iloc[0]
        return text + f"only {only['estimator']} has a nonzero {col.replace('_', ' ')}{what} ({fmt(only[col])})."
    lo, hi = ranked.iloc[0], nonzero.iloc[-1]
    among = " of those not flagged biased" if biased and nonzero["estimator"].isin(biased).any() else ""
    more = f", {fmt(hi[col] / lo[col])}x more" if hi["estimator"] != lo["estimator"] else ""
    return (text + f"{lo['estimator']} has the lowest {col.replace('_', ' ')}{what}{among} "
            f"({fmt(lo[col])}{indistinguishable(ranked, lo, col)}) and {hi['estimator']} the highest "
            f"({fmt(hi[col])}{more}); counting time, {most_efficient(ranked)}{among}.")


def model_groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A model problem's rows by checkpoint ('untrained checkpoint', 'trained checkpoint') and, where the
    K-sample bound ran at several K, by K as well ('untrained checkpoint, K = 16'): each ranked on its own."""
    ks = sorted(rows["K"].dropna().unique()) if "K" in rows and rows["K"].nunique() > 1 else [None]
    return [(f"{c} checkpoint" + (f", K = {fmt(k)}" if k is not None else ""),
             rows[(rows["checkpoint"] == c) & ((rows["K"] == k) if k is not None else True)])
            for c in ("untrained", "trained") for k in ks]


def toy_paragraph(df: pd.DataFrame, problem: str, base: dict[str, Any]) -> str:
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    at_base = rows.copy()
    for axis, value in base.items():
        at_base = at_base[at_base[axis] == value]
    parts = []
    biased = flagged_biased(rows)
    for param, g in at_base.groupby("parameter", sort=True):
        g = g.sort_values("variance")
        if g["estimator"].nunique() == 1:
            parts.append(f"For the gradient of {param}, only {g.iloc[0]['estimator']} ran: variance "
                         f"{fmt(g.iloc[0]['variance'])}, nothing to compare it with.")
            continue
        parts.append(f"For the gradient of {param}, " + ranking_text(g, "variance", biased))
    # where, across the whole sweep, does the problem's reference estimator lose?
    swept = rows.dropna(subset=["variance_vs_reference"])
    ref = reference_name(rows)
    swept = swept[swept["estimator"] != ref]
    if not swept.empty:
        better = swept[swept["variance_vs_reference"] < 1]
        n_settings = swept.groupby(["setting", "n_samples", "parameter"]).ngroups
        if better.empty:
            parts.append(f"Over all {n_settings} settings x gradients run, no estimator has lower variance than "
                         f"{ref}, the reference.")
        else:
            best = better.sort_values("variance_vs_reference").iloc[0]
            parts.append(
                f"Over all {n_settings} settings x gradients run, another estimator beats the reference {ref}'s "
                f"variance in {better.groupby(['setting', 'n_samples', 'parameter']).ngroups} of them; the "
                f"largest gain is {best['estimator']}'s on the {best['parameter']}-gradient at "
                f"{setting_text(best, axes(df, problem))}, n={int(best['n_samples'])} "
                + (f"({fmt(1 / best['variance_vs_reference'])}x lower)." if best["variance_vs_reference"] > 0
                   else "(zero variance: every estimate was the same).")
            )
    parts.append(bias_sentence(rows, axes(df, problem)))
    return " ".join(p for p in parts if p)


#: the false-alarm rate of the bias verdict, for all the cells x gradients of one problem together
BIAS_ALARM = 0.01


def bias_threshold(n: int) -> float:
    """|bias z| above which a cell is flagged biased: a two-sided z-test at BIAS_ALARM / n each
    (Bonferroni over the n cells x gradients of a problem)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - BIAS_ALARM / (2 * max(n, 1)))


def standing_flags(rows: pd.DataFrame) -> pd.Series:
    """Of ``rows`` (one problem's ok rows), those flagged biased (|bias z| over the threshold for their
    count) but for those whose rerun with more replicates (reports.confirm) came out at most the threshold."""
    z = rows["bias_z"].abs()
    thresh = bias_threshold(int(z.notna().sum()))
    rerun = rows["confirmation_z"].abs() if "confirmation_z" in rows else pd.Series(float("nan"), index=rows.index)
    return (z > thresh) & ~(rerun <= thresh)


def flagged_biased(rows: pd.DataFrame) -> list[str]:
    """The estimators with a cell flagged biased among ``rows`` (one problem's ok rows), but for flags
    that a rerun did not confirm."""
    return sorted(set(rows.loc[standing_flags(rows), "estimator"]))


def bias_sentence(rows: pd.DataFrame, setting_axes: list[str]) -> str:
    """The bias verdict: which estimators are flagged biased, by the stated rule."""
    z = rows["bias_z"].abs()
    if not z.notna().any():
        return ""
    n = int(z.notna().sum())
    thresh = bias_threshold(n)
    worst = rows.loc[z.idxmax()]
    where = f"{worst['estimator']}, {worst['parameter']}, {setting_text(worst, [*setting_axes, 'n_samples'])}"
    rule = f"|bias z| > {fmt(thresh)}, a {BIAS_ALARM:.0%} false-alarm rate over its {n} cells x gradients"
    flagged = flagged_biased(rows)
    standing = standing_flags(rows)
    dropped = rows[(z > thresh) & ~standing]
    dismissed = "".join(
        f" Not confirmed: {r['estimator']} (|bias z| {fmt(abs(r['bias_z']))} at {r['parameter']}, "
        f"{setting_text(r, [*setting_axes, 'n_samples'])}; rerun with {int(r['confirmation_replicates']):,} replicates: "
        f"|bias z| {fmt(abs(r['confirmation_z']))}), read as a false alarm." for _, r in dropped.iterrows())
    if not flagged:
        return (f"Bias: no estimator is flagged biased ({rule}); the largest |bias z| is {fmt(z.max())} ({where})."
                + dismissed)
    cells = []
    for est in flagged:  # its largest standing flag (not one a rerun dismissed)
        mine = rows[standing & (rows["estimator"] == est)]
        w = mine.loc[mine["bias_z"].abs().idxmax()]
        n_over = len(mine)
        confirmed = f", confirmed by a rerun with {int(w['confirmation_replicates']):,} replicates (|bias z| " \
            f"{fmt(abs(w['confirmation_z']))})" if pd.notna(w.get("confirmation_z", float("nan"))) else ""
        cells.append(f"{est}: |bias z| {fmt(abs(w['bias_z']))} at {w['parameter']}, "
                     f"{setting_text(w, [*setting_axes, 'n_samples'])}{confirmed}"
                     + (f" ({n_over} cells over the threshold)" if n_over > 1 else ""))
    return (f"Bias: **flagged biased: {', '.join(flagged)}** ({rule}): " + "; ".join(cells) + "." + dismissed)


def model_threshold(rows: pd.DataFrame) -> tuple[float, int, int]:
    """(|z| threshold, coordinates, cells) of a model problem's agreement_z verdict: a two-sided z-test
    at BIAS_ALARM / (coordinates x cells) each (Bonferroni over every encoder coordinate of every cell)."""
    from statistics import NormalDist

    z = rows["agreement_z"].dropna()
    n_coords = int(round((rows["total_variance"] / rows["variance"]).replace([float("inf")], float("nan")).median()))
    n_coords = max(n_coords, 1)
    return NormalDist().inv_cdf(1 - BIAS_ALARM / (2 * n_coords * max(len(z), 1))), n_coords, len(z)


def vae_paragraph(df: pd.DataFrame, problem: str) -> str:
    rows = df[(df["problem"] == problem) & (df["status"] == "ok")]
    label = reference_label(rows)
    biased = flagged_biased(rows)  # against an exact gradient, the toys' rule (bias z); else none
    parts = []
    for where, g in model_groups(rows):
        g = g.sort_values("total_variance")
        if g.empty:
            continue
        if g["estimator"].nunique() == 1:
            parts.append(f"At the {where} only {g.iloc[0]['estimator']} ran: total variance of the encoder "
                         f"gradient {fmt(g.iloc[0]['total_variance'])}, nothing to compare it with.")
            continue
        parts.append(f"At the {where}, " + ranking_text(g, "total_variance", biased, " of the encoder gradient"))
    parts += snr_against_k(rows)
    z = rows["agreement_z"].dropna() if "agreement_z" in rows else pd.Series(dtype=float)
    if rows["bias_z"].notna().any():
        parts.append("The exact gradient is known here (every latent configuration enumerated, in float64). "
                     + bias_sentence(rows, axes(df, problem)))
        if not z.empty:
            worst = rows.loc[rows["agreement_z"].idxmax()]
            parts.append(f"In single coordinates, the largest |z| between an estimator's mean gradient and the exact "
                         f"one is {fmt(z.max())} ({worst['estimator']}, {worst['checkpoint']}), over "
                         f"{model_threshold(rows)[1]} encoder coordinates (the 'max z' column: a diagnostic, not a "
                         f"verdict; its far tail is not normal at this R for heavy-tailed estimators).")
    elif not z.empty:
        thresh, n_coords, n_cells = model_threshold(rows)
        worst = rows.loc[rows["agreement_z"].idxmax()]
        where = f"{worst['estimator']}, {setting_text(worst, [*axes(df, problem), 'n_samples'])}"
        verdict = "so the estimators agree on the mean gradient" if z.max() <= thresh else \
            f"so at least one estimator's mean gradient disagrees with {label}"
        parts.append(
            f"No exact gradient is available here: the reference is {label}. The largest |z| between an "
            f"estimator's mean and it, in any coordinate, is {fmt(z.max())} ({where}); with a {BIAS_ALARM:.0%} "
            f"false-alarm rate over {n_coords} encoder coordinates x {n_cells} cells the threshold is {fmt(thresh)}, "
            f"{verdict}.")
    return " ".join(parts)


def snr_against_k(rows: pd.DataFrame) -> list[str]:
    """A bound's encoder-gradient SNR at its smallest and largest K, per estimator and checkpoint, with 95%
    intervals; called falling or rising only where the two intervals do not overlap."""
    if "K" not in rows or rows["K"].nunique() < 2 or "snr_lo" not in rows:
        return []
    out = []
    for (est, ckpt), g in rows.groupby(["estimator", "checkpoint"], sort=False):
        g = g.dropna(subset=["snr", "snr_lo", "snr_hi"]).sort_values("K")
        if len(g) < 2:
            continue
        a, b = g.iloc[0], g.iloc[-1]
        trend = ("falls" if b["snr_hi"] < a["snr_lo"] else "rises" if b["snr_lo"] > a["snr_hi"]
                 else "does not change beyond its 95% intervals")
        out.append(f"{est}'s SNR ({ckpt}) {trend} from K = {fmt(a['K'])} to {fmt(b['K'])}: "
                   f"{with_interval(a['snr'], a['snr_lo'], a['snr_hi'])} to "
                   f"{with_interval(b['snr'], b['snr_lo'], b['snr_hi'])}.")
    return ["Signal-to-noise ratio of the encoder gradient (coordinate average of |mean| / sd; 95% intervals by "
            "a jackknife over batches of estimates): " + " ".join(out)] if out else []


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


def timing_caveat(rows: pd.DataFrame) -> str:
    """'' where every ok row of ``rows`` ran on one host with no other cell beside it; otherwise a sentence
    saying that their times (and efficiencies) are not comparable as they stand: a cluster run
    (--workers, --scheduler) spreads cells over hosts and runs several at once on one host."""
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    if "host" not in ok or ok["host"].isna().all():
        return ""
    hosts = ok["host"].dropna().nunique()
    most = pd.to_numeric(ok.get("concurrent_cells"), errors="coerce").max() if "concurrent_cells" in ok else 1
    if hosts <= 1 and not (most > 1):
        return ""
    parts = []
    if hosts > 1:
        parts.append(f"on {hosts} hosts")
    if most > 1:
        parts.append(f"with up to {int(most)} cells running at once on one host")
    return (f"Timings were taken {' and '.join(parts)} (a cluster run, or another run beside this one): times and "
            "efficiencies compare only between cells that ran alike (the host, threads and concurrent_cells "
            "columns); variances do not depend on where a cell ran.")


def _load_line(df: pd.DataFrame) -> list[str]:
    """The machine's load while the cells ran, and its matmul speed at the start (files from before
    these columns: no line). Timings are 'under load' where the 1-minute load average went above
    the machine's cores: processes other than this run competed for them."""
    if "load_avg" not in df or df["load_avg"].isna().all():
        return []
    load = df["load_avg"].dropna()
    cores = pd.to_numeric(df["machine"].astype(str).str.extract(r"(\d+) cores")[0], errors="coerce").max()
    rate = df["matmul_gflops"].dropna() if "matmul_gflops" in df else pd.Series(dtype=float)
    line = (f"- machine load: 1-minute load average {load.min():.2f}-{load.max():.2f} while the cells ran"
            + (f" ({int(cores)} cores)" if not pd.isna(cores) else "")
            + (f"; float32 matmul {fmt(rate.min())}" + (f"-{fmt(rate.max())}" if rate.max() > rate.min() else "")
               + " GFLOP/s at the start" if not rate.empty else ""))
    if not pd.isna(cores) and load.max() > cores:
        line += (f". **Timings taken under load**: in {int((load > cores).sum())} rows the load exceeded the "
                 f"cores, so other processes competed with this run; compare times within this report only")
    return [line]


def _time_line(df: pd.DataFrame) -> list[str]:
    """The cells' wall time (``cell_time_s``, one value per cell, on each of its rows), summed, and the longest
    cell; none for results written before the column existed."""
    if "cell_time_s" not in df or df["cell_time_s"].isna().all():
        return []
    cells = df.dropna(subset=["cell_time_s"]).drop_duplicates([c for c in CELL_KEY if c in df])
    longest = cells.loc[cells["cell_time_s"].idxmax()]
    return [f"- computing time: {cells['cell_time_s'].sum():,.0f} s in {len(cells):,} cells (each cell's wall time, "
            f"`cell_time_s`, summed; the set-up of each problem's data and the training curves aside); the longest "
            f"{longest['cell_time_s']:.1f} s ({longest['estimator']} on {longest['problem']} at {longest['setting']}, "
            f"n_samples = {longest['n_samples']})"]


def wall_time_line(wall_time: dict[str, float] | None) -> list[str]:
    """The wall time of the command that computed the results (``estbench report``), by part (name: seconds),
    as measured by it; none where the report is rebuilt from a results file (``--results``), which cannot know it."""
    if not wall_time:
        return []
    parts = "; ".join(f"{name} {seconds:,.0f} s" for name, seconds in wall_time.items())
    return [f"- wall time: {sum(wall_time.values()):,.0f} s ({parts}; measured by the command that computed these "
            f"results, a resumed run counting only its own part; drawing this report comes after it)"]


def provenance(df: pd.DataFrame, wall_time: dict[str, float] | None = None) -> list[str]:
    def values(col: str) -> str:
        return ", ".join(str(v) for v in sorted(df[col].dropna().astype(str).unique())) if col in df else "unknown"

    replicates = f"replicates per cell: {values('replicates')}"
    if "precision" in df and df["precision"].notna().any():
        cells = [c for c in ("problem", "estimator", "estimator_options", "setting", "n_samples") if c in df]
        used = df.drop_duplicates(cells)["replicates_used"].dropna()
        replicates = (f"replicates per cell: until the variance's relative standard error is at most "
                      f"{values('precision')} (at least 400, at most {values('replicates')}; used "
                      f"{int(used.min()):,}-{int(used.max()):,}, {int(used.sum()):,} in all)")
    lines = [
        f"- seed: {values('seed')}; {replicates}; dtype: {values('dtype')}; device: {values('device')}",
        f"- estbench {values('estbench_version')}, torch {values('torch_version')}, Python {values('python_version')}",
        f"- machine: {values('machine')}",
        *_load_line(df),
        *[f"- {caveat}" for caveat in [timing_caveat(df)] if caveat],
        *_compile_line(df),
        *_time_line(df),
        *wall_time_line(wall_time),
        f"- problems: {', '.join(df['problem'].unique())}",
        f"- estimators: {', '.join(df['estimator'].unique())}",
    ]
    toy = df[is_toy(df)]
    if not toy.empty:
        def listed(a: str) -> str:
            values = toy[a].dropna().unique()
            nums = sorted(v for v in values if not isinstance(v, str))
            vecs = sorted(v for v in values if isinstance(v, str))  # per-coordinate settings
            return ", ".join([fmt(v) for v in nums] + [f"({v})" for v in vecs])

        lines.append("- toy settings: " + "; ".join(f"{a} in {{{listed(a)}}}" for a in [*axes(toy), "n_samples"]))
    vae = df[~is_toy(df)]
    if not vae.empty:
        lines.append("- VAE settings: " + "; ".join(
            f"{a} in {{{', '.join(fmt(v) for v in sorted(vae[a].dropna().unique(), key=str))}}}"
            for a in (*axes(vae), "n_samples")))
    return lines
