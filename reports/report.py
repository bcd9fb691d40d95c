"""Build the variance report from result files. Imports no model code.

Input: the runner's tidy results CSV (and, beside it, the training curves CSV
``<stem>-training.csv`` when the VAE was trained), optionally a pytest-benchmark
JSON file. Output, in one directory:

    report.md              what was run, tables per problem, a paragraph per table, figures
    results.csv            the tidy records (copied)
    results-training.csv   the VAE training curves (copied, when present)
    tables.csv             every table row of the report, for every setting
    benchmarks.json        the pytest-benchmark JSON (copied, when given)
    figures/*.png          matplotlib figures (reports.figures)

Every file is written to a temporary name and renamed, so a report is never
left half-written.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

# torch-free: what the runner and the report share (the lock, atomic writes, the curves' file name)
from benchmarks.results_file import atomic_write, curves_path, writer_lock
from benchmarks.schema import csv_safe

from .brief import summary_line
from .confirm import attach_confirmations
from .figures import start_figures
from .libraries import library_section
from .load import ResultsError, read_results, read_training
from .overview import overview_rows
from .tables import (
    add_derived,
    all_tables,
    bases,
    fmt,
    is_toy,
    markdown_table,
    problem_table,
    zero_variance_notes,
)
from .text import provenance, timing_caveat, toy_paragraph, vae_paragraph
from .training import shown_table, training_paragraph, training_table


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def copy_file(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    atomic_write(dst, lambda p: shutil.copyfile(src, p))


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
                     "mean (us per call)": stats.get("mean", math.nan) * 1e6,
                     "stddev (us per call)": stats.get("stddev", math.nan) * 1e6,
                     "rounds": stats.get("rounds"), "variance (per coordinate)": extra.get("variance"),
                     "SNR": extra.get("snr")})
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    brand = cpu.get("brand_raw") if isinstance(cpu, dict) else None
    text = ["## pytest-benchmark timings", "",
            "Units: each call makes one gradient estimate alone (a chunk of one replicate), so 'us per call' is "
            "not the runner's vectorized 'time / estimate' of the tables above, which shares each chunk's work "
            "among its replicates; 'variance' is per coordinate, averaged over coordinates, as the tables' "
            "'variance' (for the VAEs not the total). "
            f"From `{path.name}` "
            f"(machine: {brand or machine.get('processor', 'unknown')}, Python {machine.get('python_version', '?')}).", ""]
    return text + [markdown_table(pd.DataFrame(rows)), ""]


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and (a.resolve() == b.resolve() or a.read_bytes() == b.read_bytes())


def build(results: str | Path, out_dir: str | Path, benchmarks: str | Path | None = None,
          command: str | None = None, overwrite: bool = False, wall_time: dict[str, float] | None = None) -> Path:
    """Write the report for ``results`` into ``out_dir``; returns the path of report.md. ``wall_time``: the
    seconds the command that computed the results took, by part (its provenance line, reports.text.wall_time_line).

    Everything is read and checked first (ResultsError names the problem), then the report
    is made in a temporary folder beside ``out_dir`` and its files moved in: a failure leaves
    ``out_dir`` as it was. Results already in ``out_dir`` that differ from ``results`` are
    replaced only with ``overwrite``."""
    results, out = Path(results), Path(out_dir)
    check_out_dir(out)
    notes: list[str] = []
    df = add_derived(attach_confirmations(read_results(results, notes)))
    tr = read_training(results)
    bench = check_benchmarks(benchmarks) if benchmarks else None
    for note in notes:
        print(f"estbench report: warning: {note}", file=sys.stderr)
    with writer_lock(out / "results.csv"):  # the folder's results are written by one process at a time
        for src, name in ((results, "results.csv"), (curves_path(results), "results-training.csv")):
            dst = out / name
            if not overwrite and src.exists() and dst.exists() and dst.stat().st_size > 0 and not _same_file(src, dst):
                raise ResultsError(f"{dst} already holds other results; add --overwrite to replace them, "
                                   f"or choose another --out")
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".building-"))
        try:
            report = _build_into(staging, df, tr, results, bench, benchmarks, command, notes, out_dir, wall_time)
            made = [p.relative_to(staging) for p in sorted(staging.rglob("*")) if p.is_file()]
            theirs = [str(p) for p in made if p.name != "results.csv" and (out / p).exists()]
            if theirs and not overwrite and not _same_file(results, out / "results.csv"):
                raise ResultsError(f"{out} already holds {', '.join(theirs[:3])}{' ...' if len(theirs) > 3 else ''} "
                                   f"of a report not made from {results}; add --overwrite to replace them, or choose "
                                   f"another --out")
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    dst = out / path.relative_to(staging)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, dst)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out / report.relative_to(staging)


def _build_into(out: Path, df: pd.DataFrame, tr: pd.DataFrame | None, results: Path, bench: dict | None,
                benchmarks: str | Path | None, command: str | None, notes: list[str], where: str | Path = ".",
                wall_time: dict[str, float] | None = None) -> Path:
    copy_file(results, out / "results.csv")
    if tr is not None:
        copy_file(curves_path(results), out / "results-training.csv")
    base = bases(df)
    pending = start_figures(df, tr, out, base)  # drawn in other processes while the text is made here
    try:
        libraries = library_section(df)
        tables = all_tables(df.assign(overview=df.index.isin(overview_rows(df, base).index)))
    finally:  # the drawing processes end here, whatever the text did
        made = pending()
    placed: set[str] = set()

    def figure_lines(problem: str, section: str = "") -> list[str]:
        lines = []
        for f in made:
            if f.problem == problem and f.section == section and f.path not in placed:
                placed.add(f.path)
                lines += [f"![{f.title}]({f.path})", ""]
        return lines

    md = ["# estbench variance report", ""]
    if command:
        folder = shlex.quote(str(where))
        md += [f"Made by `{command}`. Rebuild it without recomputing (from where it was made): "
               f"`estbench report --results {folder}/results.csv --out {folder}`.", ""]
    md += ["## In brief", "", "Per problem, among the unbiased estimators (not flagged biased here, nor declared "
           "biased), the one with the lowest variance (an exact zero first; 'tied' where the 95% intervals overlap) and "
           "the one most efficient per evaluation of f (the lowest variance x f evals), and the bias verdict:", "",
           *(summary_line(df, p, base.get(p, {})) for p in df["problem"].unique()), ""]
    md += figure_lines("", "overview")
    md += ["## What was run", "", *provenance(df, wall_time), ""]
    if notes:
        md += ["Read with repairs: " + "; ".join(notes) + ".", ""]
    if df.attrs.get("absent"):
        md += [f"The results file has no column {', '.join(df.attrs['absent'])} (an older version's file, or cut down): "
               f"read as blank, so their figures are not shown.", ""]
    md += ["Variance is that of one gradient estimate made from n_samples draws, per coordinate, averaged over "
           "coordinates (VAE: summed over the encoder's parameters, the trace of the covariance). Bias z is the "
           "bias against the exact gradient (closed form, enumeration or quadrature; where tables.csv's "
           "'reference' column says so, a high-precision Monte Carlo reference, whose standard error the z counts) "
           "divided by its standard error; 'max z' "
           "is the largest such |z| over coordinates, against the exact gradient or, where none is known, "
           "against a reference estimator's mean. MSE is against the exact gradient. Efficiency = 1 / (variance x "
           "time per estimate): higher is better; a '/ X' column divides by the value of X, the problem's "
           "reference estimator (named in each table's header), in the same setting.", ""]
    if base:
        md += ["Each toy problem's table shows its base setting, the most common value of each axis (named in "
               "its section); "
               "`tables.csv` has every setting.", ""]

    for problem in df["problem"].unique():
        table = problem_table(df, problem, base.get(problem, {}))
        md += [f"## {problem}", ""]
        if table.empty:
            md += ["No cell of this problem completed.", ""]
            continue
        rows = df[df["problem"] == problem]
        if is_toy(rows).all():
            md += ["At " + ", ".join(f"{k}={fmt(v)}" for k, v in base.get(problem, {}).items()) + ".", ""]
        para = toy_paragraph(df, problem, base.get(problem, {})) if is_toy(rows).all() else vae_paragraph(df, problem)
        md += [para, "", markdown_table(table), ""]
        caveat = timing_caveat(rows)
        if caveat:
            md += [caveat, ""]
        zero = zero_variance_notes(df, problem)
        if zero:
            md += ["Exact (variance reported as 0; ratios and efficiency shown as 'exact'):", "", *zero, ""]
        md += figure_lines(problem)

    md += libraries

    if tr is not None:
        t = training_table(tr)
        for problem, rows in t.groupby("problem", sort=False):
            shown = shown_table(rows)
            md += [f"## {problem}: training with each estimator", "", training_paragraph(rows), ""]
            ks = tr.loc[tr["problem"] == problem, "K"].dropna().unique() if "K" in tr else []
            if len(ks):  # a multi-sample problem: its curves train on the bound
                md += [f"Each estimator of the bound trains on the K-sample importance-weighted bound (K = "
                       f"{', '.join(fmt(k) for k in sorted(ks))}; the label says which; at K = 1 the bound is the "
                       f"ELBO with its KL estimated from the draw); one labelled 'ELBO, N draws' trains beside them "
                       f"on the single-sample ELBO of the same model with N draws per image, as many log-weight "
                       f"evaluations per step. The test ELBO is the yardstick of every curve.", ""]
            md += [markdown_table(shown), ""]
            md += figure_lines(problem, "training")

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

    rest = [f for f in made if f.path not in placed]
    if rest:
        md += ["## Figures", ""]
        for f in rest:
            md += [f"### {f.title}", "", f"![{f.title}]({f.path})", ""]

    atomic_write(out / "tables.csv", lambda p: tables.map(csv_safe).to_csv(p, index=False))
    report = out / "report.md"
    write_text(report, "\n".join(md))
    return report
