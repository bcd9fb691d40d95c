"""Bad input, one line each: every case exits 2 with one line naming the bad value and no
traceback, and docs/bad-inputs.md is the table of what estbench says (regenerated here:
``ESTBENCH_WRITE_DOCS=1 pytest tests/test_bad_inputs.py`` rewrites it; the test fails while
the committed page differs from what the commands print now)."""

from __future__ import annotations

import gzip
import os
import re
import shlex
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from estbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
DATA = Path(__file__).parent / "data"
COS = ["--problem", "gaussian-cos", "--estimator", "reinforce", "--replicates", "20", "--quiet"]


def _write(name: str, content: str | bytes) -> Callable[[], None]:
    def setup() -> None:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        (Path(name).write_bytes if isinstance(content, bytes) else Path(name).write_text)(content)
    return setup


def _idx(folder: str, n: int, rows: int, cols: int) -> Callable[[], None]:
    def setup() -> None:
        Path(folder).mkdir(exist_ok=True)
        body = bytes(max(0, n * rows * cols))
        for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
            (Path(folder) / name).write_bytes(struct.pack(">iiii", 2051, n, rows, cols) + body)
    return setup


def _results_with(change: Callable[[list[str], list[list[str]]], None], name: str = "edited.csv"):
    """The frozen results file with one edit."""
    import csv

    def setup() -> None:
        with open(DATA / "results.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        change(rows[0], rows)
        with open(name, "w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    return setup


def _set(column: str, line: int, value: str):
    def change(header: list[str], rows: list[list[str]]) -> None:
        rows[line - 1][header.index(column)] = value
    return change


def _drop(*columns: str):
    def change(header: list[str], rows: list[list[str]]) -> None:
        keep = [i for i, c in enumerate(header) if c not in columns]
        rows[:] = [[r[i] for i in keep] for r in rows]
    return change


def _run_first(*argv: str, then: Callable[[], None] | None = None) -> Callable[[], None]:
    def setup() -> None:
        assert main(list(argv)) == 0
        if then is not None:
            then()
    return setup


def _nul_bytes(name: str) -> Callable[[], None]:
    def corrupt() -> None:
        data = Path(name).read_bytes()
        Path(name).write_bytes(data[:600] + bytes(4096) + data[600:])
    return corrupt


def _edit(name: str, line: int, old: str, new: str) -> Callable[[], None]:
    """Replace ``old`` by ``new`` once in line ``line`` (1: the header) of a file."""
    def edit() -> None:
        lines = Path(name).read_bytes().split(b"\r\n")
        assert old.encode() in lines[line - 1]
        lines[line - 1] = lines[line - 1].replace(old.encode(), new.encode(), 1)
        Path(name).write_bytes(b"\r\n".join(lines))
    return edit


def _repeat(name: str, line: int) -> Callable[[], None]:
    def repeat() -> None:
        data = Path(name).read_bytes()
        Path(name).write_bytes(data + data.split(b"\r\n")[line - 1] + b"\r\n")
    return repeat


@dataclass
class Case:
    what: str
    argv: list[str]
    expect: str
    setup: Callable[[], None] | None = None


CASES = [
    # names and values
    Case("unknown problem", ["run", "--problem", "gaussian-quad"], "Did you mean 'gaussian-quadratic'?"),
    Case("unknown estimator", ["run", "--estimator", "reinforce-lo"], "Did you mean 'reinforce-loo'?"),
    Case("sigma not > 0", ["run", "--sigma", "0"], "sigma must be > 0, got sigma=0"),
    Case("dim 0", ["run", "--dim", "0"], "dim must be >= 1, got dim=0"),
    Case("n_samples 0", ["run", "--n-samples", "0"], "n_samples must be >= 1"),
    Case("one replicate", ["run", "--replicates", "1"], "replicates must be >= 2"),
    Case("a setting no problem of the run has", ["run", "--problem", "gaussian-cos", "--theta", "1"],
         "bernoulli-multisample, none of which this run has (problems: gaussian-cos)"),
    Case("an option no estimator of the run has", ["run", "--estimator", "reinforce", "--temperature", "0.5"],
         "temperature is a setting of gumbel-softmax, straight-through, gumbel-rao, gst, reinmax, none of which this run has "
         "(estimators: reinforce)"),
    Case("--train-seeds too many", ["run", "--train-seeds", "100000000000000000000"],
         "train_seeds must be between 1 and 100"),
    Case("--workers 0", ["run", "--workers", "0"], "--workers must be >= 1 (worker processes of a local cluster), got "
         "--workers 0"),
    Case("--workers -2", ["report", "--quick", "--workers", "-2", "--out", "rep"], "--workers must be >= 1"),
    Case("--workers with --scheduler", ["run", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
         "give one of them, not both"),
    Case("an unreachable scheduler", ["run", "--problem", "gaussian-cos", "--scheduler", "tcp://127.0.0.1:9"],
         "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    Case("--precision 0", ["run", "--precision", "0"], "precision must be a number between 0 and 1 (the relative "
         "standard error of each cell's variance, e.g. 0.05), got precision=0.0"),
    Case("report --precision 1.5", ["report", "--quick", "--precision", "1.5", "--out", "rep"], "got precision=1.5"),
    Case("--precision below the minimum R", ["run", "--precision", "0.1", "--replicates", "100"],
         "with precision, replicates is the most a cell draws and must be at least the minimum 400, got replicates=100"),
    Case("infinite expectation", ["run", "--problem", "gaussian-exp", "--k", "-1"], "1 + 2 k sigma^2 > 0"),
    Case("VAE width 0", ["run", "--problem", "vae-digits", "--hidden", "0"], "hidden must be >= 1"),
    Case("a dimension that cannot fit in memory", ["run", "--problem", "gaussian-cos", "--dim", "1000000000"],
         "one replicate needs about"),
    Case("n_samples that cannot fit in memory", ["run", "--problem", "vae-digits", "--n-samples", "1000000000"],
         "one replicate needs about"),
    Case("exact on a binary VAE too large to enumerate in memory", ["run", "--problem", "vae-digits-binary",
                                                                     "--estimator", "exact", "--latent", "17"],
         "estimator exact evaluates f on all 131072 outcomes"),
    Case("replicates that would take years", ["run", *COS[:4], "--replicates", "100000000000000000000"],
         "at least 1.16e+08 days at 0.1 us each"),
    Case("a seed beyond 64 bits", ["run", *COS[:4], "--seed", "99999999999999999999"],
         "seed must be between 0 and 2^63 - 1"),
    Case("an integer axis beyond 64 bits", ["run", "--problem", "bernoulli-coupled", "--w-seed",
                                            "99999999999999999999"], "w_seed must be between -2^63 and 2^63 - 1"),
    Case("a target that overflows float32", ["run", "--problem", "bernoulli-quadratic", "--t", "1e308"],
         "t must be between -1000 and 1000, got t=1e+308"),
    Case("--workers far beyond the cores", ["run", *COS[:4], "--workers", "1000000000"],
         "--workers 1000000000 is more than 4x this machine's"),
    Case("a logit that is not finite", ["run", "--problem", "bernoulli-quadratic", "--theta", "inf"],
         "theta must be a finite number, got theta=inf"),
    Case("more dimensions than enumeration holds", ["run", "--problem", "bernoulli-coupled", "--dim", "21"],
         "dim must be <= 20"),
    Case("a categorical variable of one class", ["run", "--problem", "categorical-quadratic", "--K", "1"],
         "K must be >= 2"),
    Case("a bound of no sample", ["run", "--problem", "bernoulli-multisample", "--K", "0"], "K must be >= 1"),
    Case("vimco on a one-sample bound", ["run", "--problem", "bernoulli-multisample", "--estimator", "vimco",
                                          "--K", "1"], "estimator 'vimco' needs K >= 2 samples in the bound, got K=1"),
    Case("a bound too large for memory", ["run", "--problem", "gaussian-iwae", "--estimator", "iwae", "--K", "4096",
                                          "--dim", "1000000"], "one replicate needs about 794 GiB"),
    Case("a bound too large to enumerate", ["run", "--problem", "bernoulli-multisample", "--dim", "6", "--K", "4"],
         "2^24 joint outcomes; its exact truth enumerates at most 2^20"),
    Case("an estimator option out of range", ["run", "--estimator", "gumbel-softmax", "--temperature", "0"],
         "temperature must be > 0"),
    Case("an estimator option of the wrong type", ["run", "--config", "sweep.toml"], "temperature must be a number",
         _write("sweep.toml", 'temperature = ["hot"]\n')),
    Case("a problem plugin without chunk()", ["list", "--plugin", "noc.py"], "does not implement chunk",
         _write("noc.py", "from benchmarks.problems import Problem\n\nclass P(Problem):\n    name = 'p'\n")),
    Case("a problem plugin taking a built-in name", ["list", "--plugin", "clash.py"], "clashes with a built-in problem",
         _write("clash.py", "from benchmarks.problems import GaussianQuadratic\n\n"
                "class P(GaussianQuadratic):\n    pass\n")),
    Case("a problem axis without a type", ["list", "--plugin", "axis.py"], "type must be float, int or str",
         _write("axis.py", "from estimators.options import Option\n\nA = Option('x', None, (1,))\n")),
    # sweep files
    Case("a sweep file with an empty list (no cells)", ["run", "--config", "empty.toml"], "sigma is an empty list",
         _write("empty.toml", "sigma = []\n")),
    Case("a binary sweep file", ["run", "--config", "sweep.toml"], "not a text file",
         _write("sweep.toml", bytes(range(256)))),
    Case("a sweep file with nested lists", ["run", "--config", "sweep.toml"],
         "a per-coordinate list holds numbers, not lists", _write("sweep.toml", "sigma = [[[1.0]]]\n")),
    Case("a sweep file with a list inside a vector", ["run", "--config", "sweep.toml"], "got [2.0] in [1.0, [2.0]]",
         _write("sweep.toml", "mu = [[1.0, [2.0]]]\n")),
    Case("malformed TOML", ["run", "--config", "sweep.toml"], "malformed TOML", _write("sweep.toml", "sigma = [1,\n")),
    Case("an unknown sweep-file key", ["run", "--config", "sweep.toml"], "unknown key 'sigmas'",
         _write("sweep.toml", "sigmas = [1]\n")),
    # the results file
    Case("--out a directory", ["run", *COS, "--out", "folder"], "is a directory", _write("folder/x", "")),
    Case("--out inside a file", ["run", *COS, "--out", "notes.txt/r.csv"], "cannot create the folder notes.txt",
         _write("notes.txt", "x")),
    Case("--out /dev/null", ["run", *COS, "--out", "/dev/null"], "not a regular file"),
    Case("--out /dev/full", ["run", *COS, "--out", "/dev/full"], "not a regular file"),
    Case("--out an unrelated CSV", ["run", *COS, "--out", "people.csv"], "already exists",
         _write("people.csv", "name,age\nann,3\n")),
    Case("--out a binary file", ["run", *COS, "--out", "blob.bin"], "already exists",
         _write("blob.bin", bytes(range(256)))),
    Case("--resume onto a binary file", ["run", *COS, "--out", "blob.csv", "--resume"], "not a text file",
         _write("blob.csv", bytes(range(256)))),
    Case("--resume onto another table", ["run", *COS, "--out", "people.csv", "--resume"], "its columns are not",
         _write("people.csv", "name,age\nann,3\n")),
    Case("--resume with other --replicates", ["run", *COS, "--replicates", "30", "--out", "r.csv", "--resume"],
         "replicates=20 in the file, replicates=30 in this run", _run_first("run", *COS, "--out", "r.csv")),
    Case("--resume with another --seed", ["run", *COS, "--seed", "7", "--out", "r.csv", "--resume"],
         "seed=0 in the file, seed=7 in this run", _run_first("run", *COS, "--out", "r.csv")),
    Case("--resume onto a file corrupted by NUL bytes", ["run", *COS, "--out", "r.csv", "--resume"], "NUL bytes",
         _run_first("run", *COS, "--out", "r.csv", then=_nul_bytes("r.csv"))),
    Case("--out empty", ["run", *COS, "--out", ""], "--out is empty"),
    Case("--out the current folder", ["run", *COS, "--out", "."], "--out . is a directory"),
    Case("--out the root folder", ["run", *COS, "--out", "/"], "--out / is a directory"),
    Case("--out a file with two names (a hard link)", ["run", *COS, "--out", "h.csv", "--resume"],
         "is one of 2 names (hard links) of one file", _run_first("run", *COS, "--out", "r.csv",
                                                                  then=lambda: os.link("r.csv", "h.csv"))),
    Case("--resume onto a file whose status was edited", ["run", *COS, "--out", "r.csv", "--resume"],
         "line 3 (gaussian-cos, reinforce) does not match its row_checksum",
         _run_first("run", *COS, "--out", "r.csv", then=_edit("r.csv", 3, ",ok,", ",done,"))),
    Case("--resume onto a file with a value edited", ["run", *COS, "--out", "r.csv", "--resume"],
         "line 2 (gaussian-cos, reinforce) does not match its row_checksum",
         _run_first("run", *COS, "--out", "r.csv", then=_edit("r.csv", 2, ",20,", ",21,"))),
    Case("--resume onto a file with a row copied", ["run", *COS, "--out", "r.csv", "--resume"],
         "line 4 repeats line 2 (gaussian-cos, reinforce, mu)",
         _run_first("run", *COS, "--out", "r.csv", then=_repeat("r.csv", 2))),
    Case("--resume and --overwrite", ["run", *COS, "--out", "r.csv", "--resume", "--overwrite"], "contradict"),
    # plugins and data
    Case("a plugin file that does not exist", ["run", "--plugin", "nope.py"], "no such file"),
    Case("a plugin taking a shipped name", ["list", "--plugin", "mv.py"], "already registered",
         _write("mv.py", "from estimators import Reinforce\n\nclass MV(Reinforce):\n    name = 'measure-valued'\n")),
    Case("a plugin class without surrogate", ["list", "--plugin", "nosur.py"], "does not implement surrogate",
         _write("nosur.py", "from estimators import Estimator\n\nclass NoSur(Estimator):\n    name = 'nosur'\n")),
    Case("vae-mnist without its data", ["run", "--problem", "vae-mnist", "--data-dir", "missing"],
         "no such directory"),
    Case("MNIST files with 0 images", ["run", "--problem", "vae-mnist", "--data-dir", "mnist0"], "0 images of 28x28",
         _idx("mnist0", 0, 28, 28)),
    Case("MNIST files with negative dimensions", ["run", "--problem", "vae-mnist", "--data-dir", "mnistneg"],
         "-28x28", _idx("mnistneg", 2, -28, 28)),
    Case("MNIST files of 0x0 images", ["run", "--problem", "vae-mnist", "--data-dir", "mnist00"], "images of 0x0",
         _idx("mnist00", 5, 0, 0)),
    # estbench perf
    Case("perf --dim 0", ["perf", "--dim", "0"], "--dim must be >= 1"),
    Case("perf --dim -5", ["perf", "--dim", "-5"], "--dim must be >= 1, got --dim -5"),
    Case("perf --repeats 0", ["perf", "--repeats", "0"], "--repeats must be >= 1"),
    Case("perf --json into a missing folder", ["perf", "--json", "nowhere/perf.json"], "does not exist"),
    # estbench report --results
    Case("results without a mu column", ["report", "--results", "edited.csv", "--out", "rep"], "no column mu",
         _results_with(_drop("mu"))),
    Case("results without a setting column", ["report", "--results", "edited.csv", "--out", "rep"],
         "no column setting", _results_with(_drop("setting"))),
    Case("a variance that is not a number", ["report", "--results", "edited.csv", "--out", "rep"],
         "line 4, column variance: 'abc' is not a number", _results_with(_set("variance", 4, "abc"))),
    Case("a negative variance", ["report", "--results", "edited.csv", "--out", "rep"],
         "line 5, column variance: negative variance", _results_with(_set("variance", 5, "-1"))),
    Case("a NaN variance in an ok row", ["report", "--results", "edited.csv", "--out", "rep"],
         "line 6, column variance: no variance (NaN)", _results_with(_set("variance", 6, "nan"))),
    Case("an unknown problem", ["report", "--results", "edited.csv", "--out", "rep"],
         "line 7, column problem: unknown problem 'my-problem'", _results_with(_set("problem", 7, "my-problem"))),
    Case("an unknown status", ["report", "--results", "edited.csv", "--out", "rep"],
         "line 8, column status: unknown status 'done'", _results_with(_set("status", 8, "done"))),
    Case("a long corrupted value", ["report", "--results", "edited.csv", "--out", "rep"],
         "column variance: '0.5~~~~", _results_with(_set("variance", 3, "0.5" + "~" * 500))),
    Case("results of several runs (seeds) in one file", ["report", "--results", "edited.csv", "--out", "rep"],
         "holds rows of 2 runs (seed 0, 7)", _results_with(_set("seed", 5, "7"))),
    Case("results that are not a CSV table", ["report", "--results", "blob.csv", "--out", "rep"],
         "not a readable CSV", _write("blob.csv", bytes(range(256)))),
    Case("report --out a folder holding another report", ["report", "--results", str(DATA / "results.csv"), "--out",
                                                           "mine"], "mine already holds report.md",
         _write("mine/report.md", "my notes\n")),
    Case("NUL bytes before a problem name", ["report", "--results", "edited.csv", "--out", "rep"], "line 7: NUL bytes",
         _results_with(_set("problem", 7, "\0\0gaussian-cos"))),
    Case("report --results a device", ["report", "--results", "/dev/zero", "--out", "rep"], "not a regular file"),
    Case("report --out a file", ["report", "--results", str(DATA / "results.csv"), "--out", "file.txt"],
         "is a file", _write("file.txt", "x")),
    Case("malformed --benchmarks (checked before the sweep)",
         ["report", "--quick", "--benchmarks", "bench.json", "--out", "rep"], "no list 'benchmarks'",
         _write("bench.json", '{"benchmarks": 5}')),
    Case("--benchmarks that is not JSON", ["report", "--quick", "--benchmarks", "bench.json", "--out", "rep"],
         "not readable JSON", _write("bench.json", "{")),
]


#: hostile input that is handled rather than refused with exit 2: (input, what estbench does, the test in
#: tests/test_hostile.py that reproduces it); the page lists them after the refusals
HANDLED = [
    ("a symbolic link to a results file, one run on each name", "the lock follows the link: the second run is refused "
     "in one line naming the process that writes the file", "test_a_symbolic_link_takes_the_lock_of_the_file_it_names"),
    ("--resume through a symbolic link", "rows and the resume's rewrite go to the file it names; the link stays",
     "test_a_resume_through_a_symbolic_link_writes_the_file_and_keeps_the_link"),
    ("a blank line, \\r\\r\\n, or a value with a line break (a plugin's two-line error) in a results file",
     "--resume reads it and rewrites the file without the blank lines",
     "test_a_resume_reads_blank_lines_and_values_with_line_breaks"),
    ("a plugin that turns off grad mode, sets the default dtype or device (meta), threads, the RNG or anomaly "
     "detection in surrogate", "restored after its cell: the other estimators' rows are those of a run without it",
     "test_a_plugin_that_changes_global_state_fails_alone"),
    ("a plugin that raises GeneratorExit or another BaseException, or calls os._exit(0), in surrogate",
     "failed rows naming it (`called os._exit(0)`); the run goes on and exits 1",
     "test_a_plugin_that_changes_global_state_fails_alone"),
    ("a plugin file that calls os._exit(0) at import", "refused in one line: `import failed: ExitCalled: called "
     "os._exit(0)`", "test_a_plugin_file_that_exits_at_import_is_one_line"),
    ("a results file without bias_z, mse, variance_hi, machine...", "reported; report.md names the missing columns, "
     "their figures blank", "test_a_report_of_a_file_without_figure_columns_says_so"),
    ("estbench.report([...]) or estbench.report(None)", "TypeError naming what it got",
     "test_report_of_something_that_is_not_a_table_is_a_type_error"),
    ("a plugin named `=cmd|' /C calc'!A0`, `<img src=x onerror=alert(1)>`, or with a newline", "refused in one line "
     "at registration (letters, digits and . _ : + -)",
     "test_a_plugin_name_outside_the_character_set_is_refused_at_registration"),
    ("a plugin's error text that is a formula or HTML", "results.csv and tables.csv hold it after an apostrophe; "
     "report.md escapes & < >", "test_text_from_a_plugin_reaches_no_spreadsheet_or_page_as_code"),
    ("two estimator objects of one class with other parameters in one estbench.run", "PluginError: give each its "
     "own name", "test_two_objects_of_one_class_with_other_parameters_in_one_run_are_refused"),
    ("--resume with another estimator object, or after a problem plugin file or module changed", "ResumeError naming "
     "the origins (sha256 of the code)", "test_a_resume_after_a_problem_plugin_changed_is_refused"),
    ("Ctrl-C while estbench starts (importing torch)", "one line, exit 130", "test_ctrl_c_while_starting_is_one_line"),
    ("SIGINT to a run started in the background of a non-interactive shell", "stops it as Ctrl-C does, rows kept, "
     "exit 130", "test_a_background_run_stops_on_sigint"),
    ("a file of the same cells under many seeds (a 1 GB report)", "ratios merge one to one; the report refuses "
     "several seeds in one line (above)", "test_a_file_of_many_seeds_is_merged_one_to_one"),
    ("float32 at bernoulli-quadratic theta 4 and 30, categorical-quadratic theta 30", "no bias flag for rounding, "
     "saturation or an outcome never drawn; the row says where float32 cannot resolve the gradient",
     "test_float32_rounding_and_saturation_are_never_flagged_as_bias"),
    ("a unit whose rows go missing for any reason", "one line and a non-zero exit, the rows written kept",
     "test_a_run_that_loses_a_cell_says_so"),
]


def test_the_handled_inputs_name_tests_that_exist():
    source = (Path(__file__).parent / "test_hostile.py").read_text()
    for _, _, test in HANDLED:
        assert f"def {test}(" in source, test


def _shown(text: str) -> str:
    """What the page shows: paths of this repository relative to it; machine-dependent sizes masked."""
    text = text.replace(str(ROOT) + "/", "")
    text = re.sub(r"this machine's [\d.]+ GiB", "this machine's N GiB", text)
    return re.sub(r"4x this machine's \d+ cores(.*)give at most \d+", r"4x this machine's N cores\1give at most 4N", text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def run_case(case: Case, capsys) -> str:
    capsys.readouterr()
    if case.setup:
        case.setup()
    capsys.readouterr()
    code = main(case.argv)
    err = capsys.readouterr().err
    assert code == 2, (case.what, code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (case.what, err)
    assert case.expect in err, (case.what, err)
    return err.strip()


@pytest.mark.slow
def test_every_bad_input_is_one_line_and_the_page_lists_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = []
    for i, case in enumerate(CASES):
        case_dir = tmp_path / f"case{i}"
        case_dir.mkdir()
        monkeypatch.chdir(case_dir)
        message = run_case(case, capsys)
        command = "estbench " + " ".join(shlex.quote(_shown(a)) for a in case.argv)
        rows.append(f"| {case.what} | `{_cell(command)}` | `{_cell(_shown(message))}` |")
    page = "\n".join([
        "# Bad input and what estbench says",
        "",
        "Each command below exits with status 2 and prints the one line shown, before any work where",
        "the input can be checked up front. The table is generated: `tests/test_bad_inputs.py` runs",
        "every command (in an empty folder, after writing the file the first column describes), checks",
        "the exit status, the single line and the absence of a traceback, and fails while this page",
        "differs from what the commands print. `ESTBENCH_WRITE_DOCS=1 .venv/bin/pytest tests/test_bad_inputs.py`",
        "rewrites it. Sizes that depend on the machine are shown as N.",
        "",
        "Failures during a run are not in this table: a failing estimator, problem set-up or closed form",
        "becomes a `failed` row and the run goes on (exit status 1 at the end); an OS error while writing",
        "(a full disk, a file-size limit) stops the run in one line, keeping the rows written so far",
        "for `--resume`; a second process writing the same results file is refused in one line naming",
        "the process that holds it ([results.md](results.md)).",
        "",
        "| input | command | estbench says |",
        "|---|---|---|",
        *rows,
        "",
        "## Hostile input that is handled, not refused",
        "",
        "Each is reproduced by the named test in `tests/test_hostile.py`.",
        "",
        "| input | what estbench does | test |",
        "|---|---|---|",
        *(f"| {_cell(what)} | {_cell(does)} | `{test}` |" for what, does, test in HANDLED),
        "",
    ])
    if os.environ.get("ESTBENCH_WRITE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(page)
    assert DOC.exists() and DOC.read_text() == page, (
        "docs/bad-inputs.md is out of date: ESTBENCH_WRITE_DOCS=1 .venv/bin/pytest tests/test_bad_inputs.py")


def test_malformed_benchmarks_are_refused_before_the_sweep_runs(tmp_path, capsys):
    bench = tmp_path / "b.json"
    bench.write_text('{"benchmarks": [{"stats": {"mean": "fast"}}]}')
    out = tmp_path / "rep"
    assert main(["report", "--quick", "--benchmarks", str(bench), "--out", str(out), "--quiet"]) == 2
    assert "benchmarks[0].stats.mean is 'fast', not a number" in capsys.readouterr().err
    assert not out.exists()


def test_mnist_idx_checks_name_the_file(tmp_path):
    from benchmarks.data import DataError, read_idx_images

    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">iiii", 2051, 0, 28, 28)))
    with pytest.raises(DataError, match=re.escape(f"{path}: header says 0 images of 28x28")):
        read_idx_images(path)
