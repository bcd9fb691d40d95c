"""The report: built from a frozen results file (no model code), and end to end from a small sweep."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from estbench.cli import main
from reports import ResultsError, build, read_results

DATA = Path(__file__).parent / "data"
FIGURES = ["overview.png", "gaussian-quadratic_variance.png", "vae-digits_gradient_variance.png",
           "vae-digits_test_elbo.png", "efficiency.png"]


def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds from here on write the report's text and tables without drawing its figures (for a test that reads
    only those: the figures are checked in tests/test_figures.py and by the end-to-end test's first build)."""
    import reports.report

    monkeypatch.setattr(reports.report, "start_figures", lambda *args, **kwargs: list)


def md_tables(text: str) -> list[str]:
    """The Markdown tables of a report, as blocks of lines."""
    return re.findall(r"(?:^\|.*\|\n)+", text, flags=re.M)


def check_report(out: Path, results: pd.DataFrame) -> str:
    text = (out / "report.md").read_text()
    for name in ("results.csv", "results-training.csv", "tables.csv"):
        assert (out / name).stat().st_size > 0, name
    for fig in FIGURES:
        data = (out / "figures" / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, fig
        assert f"(figures/{fig})" in text
    tables = md_tables(text)
    ok = results[results["status"] == "ok"]
    for problem in ok["problem"].unique():
        section = text.split(f"## {problem}\n", 1)[1].split("\n## ", 1)[0]
        for est in ok[ok["problem"] == problem]["estimator"].unique():
            assert re.search(rf"^\| {re.escape(est)} \|", section, flags=re.M), (problem, est)
    assert len(tables) >= results["problem"].nunique()
    return text


@pytest.mark.slow
def test_report_from_frozen_results(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("results.csv", "results-training.csv"):
        shutil.copy(DATA / name, src / name)
    out = tmp_path / "report"
    build(src / "results.csv", out, benchmarks=DATA / "benchmarks.json")
    df = read_results(src / "results.csv")
    text = check_report(out, df)
    # provenance: seed, versions, machine
    assert "- seed: 0;" in text and "torch 2.13.0" in text and "machine: Linux" in text
    assert "- wall time:" not in text  # a report rebuilt from a file cannot know the command's wall time
    # the paragraphs are written from the numbers: the lowest-variance estimator of a table is named
    quad = df[(df["problem"] == "gaussian-quadratic") & (df["mu"] == 1) & (df["sigma"] == 1) & (df["n_samples"] == 4)
              & (df["parameter"] == "sigma")]
    lowest = quad.sort_values("variance").iloc[0]["estimator"]
    assert f"For the gradient of sigma, {lowest} has the lowest variance" in text
    assert "## pytest-benchmark timings" in text and (out / "benchmarks.json").exists()
    # efficiency relative to reparameterization is 1 for reparameterization itself
    tables = pd.read_csv(out / "tables.csv")
    ref = tables[tables["estimator"] == "reparameterization"]
    assert ref["efficiency_vs_reference"].eq(1.0).all()


@pytest.mark.slow
def test_report_end_to_end_and_rebuild_gives_same_tables(tmp_path, monkeypatch):
    out = tmp_path / "r1"
    args = ["report", "--quick", "--out", str(out), "--quiet"]
    assert main(args) == 0
    df = read_results(out / "results.csv")
    assert set(df["problem"]) == {"gaussian-quadratic", "gaussian-cos", "gaussian-exp", "bernoulli-quadratic",
                                  "bernoulli-coupled", "categorical-quadratic", "bernoulli-polynomial",
                                  "bernoulli-multisample", "gaussian-iwae", "vae-digits", "vae-digits-binary",
                                  "vae-digits-categorical", "vae-digits-multisample", "vae-digits-binary-multisample"}
    text1 = check_report(out, df)
    # the binary VAE: measured against its exact gradient, the relaxations flagged, its own figures and curves
    binary = text1.split("## vae-digits-binary\n", 1)[1].split("\n## ", 1)[0]
    flagged = binary.split("flagged biased: ", 1)[1].split("**", 1)[0].split(", ")
    assert any(e.startswith("gumbel-softmax") for e in flagged) and any(e.startswith("straight-through") for e in flagged)
    assert not set(flagged) & {"arm", "disarm", "reinforce", "reinforce-loo", "rebar", "relax", "exact"}, flagged
    assert "| MSE [95% CI] |" in binary and "max z vs exact" in binary  # R = 50 in chunks of 10: batches of 8
    assert "## vae-digits-binary: training with each estimator" in text1
    for fig in ("vae-digits-binary_gradient_variance.png", "vae-digits-binary_test_elbo.png"):
        assert f"(figures/{fig})" in text1
    # the discrete toys: the relaxations are named biased, the unbiased estimators are not
    section = text1.split("## bernoulli-quadratic\n", 1)[1].split("\n## ", 1)[0]
    flagged = section.split("flagged biased: ", 1)[1].split("**", 1)[0]
    assert "gumbel-softmax" in flagged and not any(e in flagged.split(", ") for e in ("arm", "disarm", "reinforce"))
    assert "| f evals |" in section and "(figures/bias_vs_temperature.png)" in text1
    # the 2019-2023 estimators in the discrete sections, against the exact truth; In brief per evaluation of f
    for name in ("arms", "double-cv", "gumbel-rao", "gst", "reinmax"):
        assert f"| {name}" in section, name
    assert "most efficient per evaluation of f" in text1.split("## What was run", 1)[0]
    categorical = text1.split("## vae-digits-categorical\n", 1)[1].split("\n## ", 1)[0]
    assert "max z vs exact" in categorical and "unordered-set" in categorical and "sum-and-sample" in categorical
    # the bound's VAE study: a row per K, the figure against K, the binary one against its exact gradient
    bound = text1.split("## vae-digits-multisample\n", 1)[1].split("\n## ", 1)[0]
    assert "| estimator | checkpoint | K |" in bound and "At the untrained checkpoint, K = 16, " in bound
    assert "(figures/vae-digits-multisample_against_K.png)" in text1
    binary_bound = text1.split("## vae-digits-binary-multisample\n", 1)[1].split("\n## ", 1)[0]
    assert "max z vs exact" in binary_bound
    curves = text1.split("## vae-digits-binary-multisample: training with each estimator\n", 1)[1].split("\n## ", 1)[0]
    assert "trains on the K-sample importance-weighted bound (K = 2, 4;" in curves and "| vimco (K=4) |" in curves
    # reinforce-loo beside them on the ELBO at the same cost; no curve planned for an estimator that cannot train
    assert "| reinforce-loo (ELBO, 4 draws) |" in curves and "Not applicable" not in curves
    # their ratio columns divide by their own reference, named in the header and filled
    assert "| variance / reinforce-loo [95% CI] |" in section
    tables = pd.read_csv(out / "tables.csv")
    own = tables[tables["problem"] == "bernoulli-quadratic"]
    assert set(own["reference_estimator"]) == {"reinforce-loo"} and own["variance_vs_reference"].notna().all()
    assert own.loc[own["estimator"] == "reinforce-loo", "variance_vs_reference"].eq(1.0).all()
    assert own["variance_vs_reparam"].isna().all()  # the old name only where the reference is reparameterization
    gauss = tables[tables["problem"] == "gaussian-quadratic"]
    assert gauss["variance_vs_reparam"].equals(gauss["variance_vs_reference"])
    out2 = tmp_path / "r2"
    no_figures(monkeypatch)  # the rebuild's tables against the first build's, whose figures were checked above
    assert main(["report", "--results", str(out / "results.csv"), "--out", str(out2)]) == 0
    text2 = (out2 / "report.md").read_text()
    assert md_tables(text1) == md_tables(text2)
    assert (out / "tables.csv").read_bytes() == (out2 / "tables.csv").read_bytes()


@pytest.mark.slow
def test_failed_cells_get_a_table_of_their_own(tmp_path):
    df = pd.read_csv(DATA / "results.csv", dtype={"error": str})
    i = df.index[(df["estimator"] == "reinforce") & (df["problem"] == "gaussian-cos")][0]
    df.loc[i, ["status", "error", "variance"]] = ["failed", "FloatingPointError: 3 non-finite values", float("nan")]
    df.to_csv(tmp_path / "results.csv", index=False)
    build(tmp_path / "results.csv", tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    failed = text.split("## Failed cells\n", 1)[1].split("\n## ", 1)[0]
    assert "1 rows failed" in failed and "FloatingPointError: 3 non-finite values" in failed


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "does not exist"),
        ("a,b\n1,2\n", "not an estbench results table: missing columns problem"),
        ("", "is not a readable CSV"),
    ],
)
def test_bad_results_file_is_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "results.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError, match=message):
        read_results(path)
    assert main(["report", "--results", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _frozen(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(DATA / "results.csv", dtype={"error": str})


@pytest.mark.slow
def test_a_torn_last_line_and_duplicated_rows_are_repaired_by_the_documented_rule(tmp_path, capsys):
    text = (DATA / "results.csv").read_text()
    lines = text.splitlines(keepends=True)
    path = tmp_path / "results.csv"
    path.write_text(text + "".join(lines[1:4]) + lines[4][:40])  # three rows again, then a torn line
    out = tmp_path / "out"
    assert main(["report", "--results", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: dropped the torn last line {len(lines) + 4}" in err
    assert f"warning: dropped 3 duplicated rows of results.csv (the first from line {len(lines) + 1})" in err
    assert "the first occurrence of each row is kept" in err
    df = read_results(path)
    assert len(df) == len(lines) - 1 and len(df.attrs["notes"]) == 2
    assert df.attrs["absent"] == ["variance_se", "reference"]
    assert "Read with repairs: dropped the torn last line" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_pipe_in_an_error_message_keeps_the_markdown_tables_whole(tmp_path):
    df = _frozen(tmp_path)
    i = df.index[(df["estimator"] == "reinforce") & (df["problem"] == "gaussian-cos")][0]
    df.loc[i, ["status", "error", "variance"]] = ["failed", "ValueError: shape a | b\nnext line", float("nan")]
    df.to_csv(tmp_path / "results.csv", index=False)
    build(tmp_path / "results.csv", tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    failed = text.split("## Failed cells\n", 1)[1].split("\n## ", 1)[0]
    (table,) = md_tables(failed)
    header, _, row = table.strip().splitlines()
    cells = lambda line: re.split(r"(?<!\\)\|", line.strip())[1:-1]  # noqa: E731
    assert len(cells(row)) == len(cells(header)) == 6
    assert r"ValueError: shape a \| b next line" in row


@pytest.mark.slow
def test_a_report_of_one_estimator_reads_sensibly(tmp_path):
    df = _frozen(tmp_path)
    df[df["estimator"] == "reinforce"].to_csv(tmp_path / "results.csv", index=False)
    build(tmp_path / "results.csv", tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "only reinforce ran: variance" in text and "nothing to compare it with" in text
    assert "reinforce the highest" not in text and "1x more" not in text


@pytest.mark.slow
def test_a_failing_build_leaves_the_report_folder_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "out"
    build(DATA / "results.csv", out)
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    df = _frozen(tmp_path)
    df.loc[df.index[:4], "time_per_estimate_s"] *= 2
    df.to_csv(tmp_path / "results.csv", index=False)

    def broken(*args, **kwargs):  # a figure fails while it is drawn: when the build waits for the figures
        def wait():
            raise RuntimeError("figure failed")
        return wait

    import reports.report as report_module

    monkeypatch.setattr(report_module, "start_figures", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        build(tmp_path / "results.csv", out, overwrite=True)
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_the_report_imports_no_model_code():
    import subprocess
    import sys

    code = "import sys, reports; print(sorted(m for m in ('torch', 'estimators') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _one_setting(tmp_path: Path, half_width: float, bias_z: float = 0.0) -> str:
    """A report of the quadratic at one setting, from frozen rows whose variances and 95% intervals are set:
    mu-gradient variances 1, 1.5, 3, 6 with log-scale half-widths ``half_width``, equal timings (+-5%)."""
    df = _frozen(tmp_path)
    df = df[(df["problem"] == "gaussian-quadratic") & (df["mu"] == 1) & (df["sigma"] == 1) & (df["n_samples"] == 4)]
    df = df[df["parameter"] == "mu"].copy()
    var = {"reparameterization": 1.0, "reinforce-loo": 1.5, "reinforce": 3.0, "reinforce-ema": 6.0}
    df["variance"] = df["estimator"].map(var)
    df["total_variance"] = df["variance"]
    df["variance_lo"], df["variance_hi"] = df["variance"] * math.exp(-half_width), df["variance"] * math.exp(half_width)
    df["variance_se"] = df["variance"] * half_width / 1.96
    df["total_variance_lo"], df["total_variance_hi"] = df["variance_lo"], df["variance_hi"]
    df["time_per_estimate_s"], df["time_per_estimate_min_s"], df["time_per_estimate_max_s"] = 1e-5, 0.95e-5, 1.05e-5
    df["bias_z"] = df["estimator"].map({"reparameterization": bias_z}).fillna(0.5)
    df.to_csv(tmp_path / "results.csv", index=False)
    build(tmp_path / "results.csv", tmp_path / "out")
    return (tmp_path / "out" / "report.md").read_text()


def test_overlapping_intervals_are_called_indistinguishable(tmp_path):
    """reparameterization (1 [0.74, 1.35]) against reinforce-loo (1.5 [1.11, 2.02]): the intervals overlap,
    so the text names them indistinguishable at this R, with the R that would separate them, and the
    efficiency ranking ties them."""
    text = _one_setting(tmp_path, half_width=0.3)
    r = int(_frozen(tmp_path)["replicates"].iloc[0])
    assert f"reparameterization has the lowest variance (1, indistinguishable at R = {r:,} from reinforce-loo" in text
    # widths 0.3 + 0.3 against a gap of log 1.5 = 0.405: R x (0.6 / 0.405)^2
    assert f"about R = {math.ceil(r * (0.6 / math.log(1.5)) ** 2):,} would separate it from reinforce-loo" in text
    assert "reparameterization and reinforce-loo are the most efficient, indistinguishable" in text
    assert "gradient of mu: reparameterization (tied with reinforce-loo)" in text


def test_separated_intervals_are_ranked(tmp_path):
    text = _one_setting(tmp_path, half_width=0.02)
    assert "reparameterization has the lowest variance (1) and reinforce-ema the highest (6, 6x more)" in text
    assert "counting time, reparameterization is the most efficient." in text
    assert "indistinguishable" not in text and "tied" not in text.split("## What was run")[0].split("and the bias verdict")[1]


def test_a_flagged_estimator_is_named_in_brief_and_never_called_the_lowest_or_most_efficient(tmp_path):
    text = _one_setting(tmp_path, half_width=0.02, bias_z=40.0)
    brief = text.split("## In brief")[1].split("## What was run")[0]
    assert ("**gaussian-quadratic**: lowest variance, gradient of mu: reinforce-loo; **flagged biased: "
            "reparameterization**") in brief
    assert "reinforce-loo has the lowest variance of those not flagged biased (1.5)" in text
    assert "reparameterization is the most efficient" not in text
    assert "reinforce-loo is the most efficient of those not flagged biased" in text


@pytest.mark.slow
def test_timings_of_cells_that_ran_side_by_side_are_said_not_comparable(tmp_path):
    """A cluster run's rows record their host and how many cells ran at once there: the report says beside
    the tables that their times compare only between cells that ran alike; a serial run's report does not."""
    df = _frozen(tmp_path)
    df = df[df["problem"] == "gaussian-quadratic"].assign(host="a", threads=1, concurrent_cells=1)
    df.to_csv(tmp_path / "serial.csv", index=False)
    build(tmp_path / "serial.csv", tmp_path / "serial")
    assert "Timings were taken" not in (tmp_path / "serial" / "report.md").read_text()
    df.assign(concurrent_cells=2, host=["a", "b"] * (len(df) // 2) + ["a"] * (len(df) % 2)).to_csv(
        tmp_path / "cluster.csv", index=False)
    build(tmp_path / "cluster.csv", tmp_path / "cluster")
    text = (tmp_path / "cluster" / "report.md").read_text()
    section = text.split("## gaussian-quadratic\n", 1)[1]
    assert "Timings were taken on 2 hosts and with up to 2 cells running at once on one host" in section


def test_legacy_option_label_becomes_option_columns(tmp_path):
    """A 0.1.0 file has only the readable label: the report reads its options as columns once, at load."""
    df = pd.read_csv(DATA / "results.csv", dtype={"error": str}).head(4).copy()
    df["estimator"] = "gumbel-softmax"
    df["estimator_options"] = ["temperature=0.5", "temperature=0.5", "temperature=1.0", "temperature=1.0"]
    df.to_csv(tmp_path / "r.csv", index=False)
    got = read_results(tmp_path / "r.csv")
    assert got["temperature"].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert set(got["estimator_name"]) == {"gumbel-softmax"}
    assert set(got["estimator"]) == {"gumbel-softmax(temperature=0.5)", "gumbel-softmax(temperature=1.0)"}


@pytest.mark.slow
def test_figures_drawn_in_processes_are_the_ones_drawn_here(tmp_path):
    """The figures are drawn side by side in fresh processes (reports.figures.draw_all): the same files, in the same
    order, as drawn one after the other in this process."""
    from reports.figures import start_figures
    from reports.load import read_training
    from reports.tables import add_derived, bases

    df = add_derived(read_results(DATA / "results.csv"))
    some = ["reparameterization", "reinforce", "reinforce-loo"]  # a toy's figures and a model's, quickly
    df = df[df["problem"].isin(["gaussian-quadratic", "vae-digits"]) & df["estimator"].isin(some)]
    tr = read_training(DATA / "results.csv")
    tr = tr[tr["estimator"].isin(some)]
    made = {}
    for processes in (1, 2):
        out = tmp_path / str(processes)
        made[processes] = start_figures(df, tr, out, bases(df), processes=processes)()
    assert made[1] == made[2] and {f.path for f in made[1]} >= {f"figures/{f}" for f in FIGURES}
    for f in made[1]:
        assert (tmp_path / "1" / f.path).read_bytes() == (tmp_path / "2" / f.path).read_bytes(), f.path


def test_the_reports_rebuild_hint_rebuilds_it_from_where_it_was_made(tmp_path, monkeypatch):
    import shlex

    no_figures(monkeypatch)  # the text is what is read
    monkeypatch.chdir(tmp_path)
    for name in ("results.csv", "results-training.csv"):
        shutil.copy(DATA / name, tmp_path / name)
    assert main(["report", "--results", "results.csv", "--out", "my report"]) == 0
    text = (tmp_path / "my report" / "report.md").read_text()
    pattern = r"Made by `([^`]*)`\. Rebuild it without recomputing \(from where it was made\): `([^`]*)`"
    made, hint = re.search(pattern, text).groups()
    assert made == 'estbench report --results results.csv --out my report'  # the words as given, without a trailing space
    words = shlex.split(hint)
    assert words[:2] == ["estbench", "report"] and main(words[1:]) == 0
    assert not (tmp_path / "my report" / "my report").exists()


def _draw_in_a_daemon(conn) -> None:
    from reports.drawing import draw_all, theme

    try:
        conn.send(draw_all([(theme, ())] * 3, processes=2))
    except BaseException as exc:  # noqa: BLE001 - the parent asserts on what came back
        conn.send(repr(exc))


def test_figures_are_drawn_in_process_inside_a_worker_that_may_not_start_processes():
    """A daemonic process (a Dask or multiprocessing worker) may not start processes: draw_all draws there."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    worker = ctx.Process(target=_draw_in_a_daemon, args=(child,), daemon=True)
    worker.start()
    assert parent.poll(60), "no answer from the worker"
    assert parent.recv() == [None, None, None]
    worker.join(10)


@pytest.mark.slow
def test_no_unbiased_sampling_estimator_is_exact_at_a_base_setting():
    """Each toy problem's base setting (its axes' defaults, or Problem.report_base) is where the report's tables and
    In-brief line compare estimators: no unbiased estimator that samples may have zero variance there (DisARM at
    bernoulli-quadratic theta 0, the set estimators over a domain they cover, measure-valued's mu-gradient at mu = k:
    true, and useless for choosing). The cells are the default report's own, at its base setting and n = 4."""
    import estimators
    from benchmarks.plan import make_plan
    from benchmarks.runner import run
    from benchmarks.sweep import Sweep, report_sweeps

    plan = make_plan(report_sweeps(Sweep()))
    at_base = []
    for cell, sweep in plan.cells:
        cls = type(cell.problem)
        if cls.kind != "toy" or cell.n_samples != 4 or cell.estimator == "exact":
            continue
        if estimators.get_class(cell.estimator).unbiased is not True:
            continue
        base = {a.name: cls.report_base.get(a.name, a.default[0]) for a in cls.axes}
        if all(getattr(cell.setting, k) == v for k, v in base.items()):
            at_base.append((cell, sweep.with_overrides(replicates=50)))
    assert {type(c.problem).name for c, _ in at_base} >= {"gaussian-quadratic", "bernoulli-quadratic",
                                                         "categorical-quadratic", "bernoulli-coupled"}
    plan.cells, plan.curves = at_base, []
    rows = [r for r in run(plan) if r["status"] == "ok"]  # (the estimators that do not apply are skipped rows)
    assert {r["problem"] for r in rows} == {type(c.problem).name for c, _ in at_base}
    exact = sorted({(r["problem"], r["estimator"], r["estimator_options"], r["parameter"]) for r in rows
                    if r["variance"] == 0})
    assert not exact, f"unbiased sampling estimators exact at a base setting: {exact}"


@pytest.mark.slow
def test_a_flag_near_the_threshold_is_rerun_with_ten_times_the_replicates_before_it_is_printed(tmp_path):
    """estbench report reruns each cell flagged biased at no more than NEAR x the threshold (reports.confirm) with
    10x its replicates, marked ``confirmation``: arms' flag at |z| 3.93 (threshold 3.52) is not confirmed (|z| 1.6 at
    R = 2000) and not printed as a flag; gumbel-softmax's near flag is confirmed; the reruns stay out of the tables;
    a resume reruns nothing."""
    from estbench import api
    from reports.confirm import CONFIRMATION_FACTOR, NEAR

    out = tmp_path / "r"
    opts = dict(quick=True, problem=["bernoulli-quadratic"], estimator=["arms", "reinforce-loo", "gumbel-softmax"])
    path, df = api.default_report(out, **opts)
    conf = df[df["confirmation"]]
    regular = df[~df["confirmation"]]
    assert not conf.empty and set(conf["replicates"]) == {CONFIRMATION_FACTOR * 200}
    for _, r in conf.iterrows():  # each rerun is of a cell flagged near the threshold, with other random numbers
        same = regular[(regular["estimator"] == r["estimator"]) & (regular["estimator_options"] == r["estimator_options"])
                       & (regular["setting"] == r["setting"]) & (regular["n_samples"] == r["n_samples"])
                       & (regular["parameter"] == r["parameter"])]
        assert len(same) == 1 and same["cell_seed"].iloc[0] != r["cell_seed"]
        assert abs(same["bias_z"].iloc[0]) <= NEAR * 3.52 + 0.01
    text = path.read_text()
    # the provenance gives the command's wall time, the sweep's and the reruns' apart
    times = re.search(r"^- wall time: ([\d,]+) s \(the sweep's cells and training curves ([\d,]+) s; (\d+) confirmation "
                      r"reruns ([\d,]+) s;", text, flags=re.M)
    assert times and int(times[3]) == len(conf.drop_duplicates(["estimator", "estimator_options", "setting", "n_samples"]))
    section = text.split("## bernoulli-quadratic\n", 1)[1].split("\n## ", 1)[0]
    flagged = section.split("flagged biased: ", 1)[1].split("**", 1)[0]
    assert "arms" not in flagged and "gumbel-softmax" in flagged
    assert "Not confirmed: arms (|bias z| 3.93" in section and "replicates: |bias z| 1.62), read as a false alarm" in section
    assert "confirmed by a rerun with 2,000 replicates" in section
    tables = pd.read_csv(out / "tables.csv")
    assert set(tables["replicates"]) == {200} and tables["confirmation_z"].notna().any()
    _, again = api.default_report(out, resume=True, **opts)
    assert len(again) == len(df)


def test_a_setting_where_an_estimator_is_exact_by_symmetry_is_drawn_with_its_declared_reason(tmp_path):
    """DisARM at theta 0 on one Bernoulli: a triangle in the theta figure, whose title quotes the declaration, and
    the problem's notes on exact rows quote it too; its line does not pass over theta 0."""
    from benchmarks import runner
    from benchmarks.sweep import Sweep
    from estimators import get_class

    out = tmp_path / "r.csv"
    runner.run(Sweep(problem=["bernoulli-quadratic"], estimator=["disarm", "reinforce-loo"], theta=[-1.0, 0.0, 1.0],
                     dim=[1], n_samples=[4], replicates=100).validate(), out=out)
    report = build(out, tmp_path / "rep")
    text = report.read_text()
    # no estimator here has an option: no figure against one (the derived columns, efficiency..., are not options)
    assert not list((tmp_path / "rep" / "figures").glob("bias_vs_*.png"))
    declared = get_class("disarm").exact_when
    assert f"- disarm: zero variance in 1 row: every estimate was the same; exact, as the estimator declares: {declared}." in text
    from reports.figures import Canvas
    from reports.tables import add_derived, bases
    from reports.toy_figures import variance_figure

    titles = {}

    class Titles(Canvas):
        def save(self, fig, name, title, **kw):
            titles[name] = " ".join(fig._suptitle.get_text().split())
            return super().save(fig, name, title, **kw)

    df = add_derived(read_results(out))
    variance_figure(Titles(tmp_path / "fig", ["disarm", "reinforce-loo"], check=True), df, "bernoulli-quadratic",
                    bases(df)["bernoulli-quadratic"])
    assert f"disarm at theta 0: {declared}" in titles["bernoulli-quadratic_variance.png"]


def test_the_quick_report_runs_a_librarys_adapters_at_the_base_setting_and_a_looping_one_at_few_replicates(monkeypatch):
    """report --quick: an adapter (Estimator.library) only at each toy's base setting with n_samples 4, one that loops
    over replicates (Estimator.loop) with QUICK_LOOP_REPLICATES, neither on a model problem nor in a problem's study;
    the default report sweeps both like any other."""
    import estimators
    from benchmarks import problems
    from benchmarks.plan import make_plan
    from benchmarks.sweep import QUICK_LOOP_REPLICATES, Sweep, report_sweeps

    class Batched(estimators.Reinforce):
        name, library = "testlib:batched", "testlib"

    class Looping(estimators.Reinforce):
        name, library, loop = "testlib:looping", "testlib", True

    monkeypatch.setenv("ESTBENCH_ADAPTERS", "on")  # the registry shows a library's estimators only then
    for cls in (Batched, Looping):
        estimators.register(cls, origin="test")
    names = ["reinforce", "testlib:batched", "testlib:looping"]
    problem = "bernoulli-quadratic"
    base = problems.get_class(problem).report_base

    def cells(quick: bool) -> dict[str, list]:
        plan = make_plan(report_sweeps(Sweep(problem=[problem], estimator=names), quick=quick))
        out: dict[str, list] = {}
        for cell, sw in plan.cells:
            out.setdefault(cell.estimator, []).append((cell.setting, cell.n_samples, sw.replicates))
        return out

    for quick_, model in ((True, False), (False, True)):  # a model problem, and a study run by name
        seen = {cell.problem.name for cell, _ in make_plan(report_sweeps(
            Sweep(problem=[problem, "vae-digits"], estimator=names), quick=quick_)).cells if ":" in cell.estimator}
        assert seen == ({problem, "vae-digits"} if model else {problem}), (quick_, seen)
        study = make_plan(report_sweeps(Sweep(problem=problems.defaults(), estimator=names), quick=quick_))
        assert any(":" in c.estimator and c.problem.name == "vae-digits-categorical" for c, _ in study.cells) == model

    quick, full = cells(True), cells(False)
    ((setting, n, r),) = quick["testlib:batched"]  # one cell: the base setting (report_base, the other axes' defaults)
    assert all(getattr(setting, k) == v for k, v in base.items()) and n == 4 and r == 200
    assert (setting, 4, 200) in quick["reinforce"] and len(quick["reinforce"]) > 1
    assert quick["testlib:looping"] == [(setting, 4, QUICK_LOOP_REPLICATES)]
    assert len(full["testlib:batched"]) == len(full["testlib:looping"]) == len(full["reinforce"]) > 1
