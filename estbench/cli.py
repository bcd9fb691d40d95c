"""The ``estbench`` command line: list, run, report, perf.

Bad input (unknown names, impossible values, malformed files) prints one line
naming the bad value and the valid choices, and exits with status 2.
A run in which some cells failed exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import estimators
from benchmarks import allocator, compiling, problems
from benchmarks.data import DataError
from benchmarks.problems import SettingError
from benchmarks.results_file import ResultsFileError, os_error_text
from benchmarks.runner import ResumeError
from benchmarks.sweep import Sweep, SweepError, load_toml
from reports.report import ResultsError

EXIT_FAILED_CELLS = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


#: Seconds between progress lines when stderr is not a terminal (CI logs, nohup);
#: $ESTBENCH_PROGRESS_EVERY overrides it (0: a line per cell).
PROGRESS_EVERY_S = 30.0

COMPILE_HELP = ("torch.compile the replicate engine: auto compiles only cells predicted to run over a minute "
                "eagerly, on compiles every cell, off never (default: auto)")


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _add_sweep_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to run (default: everything registered)")
    g.add_argument("--problem", nargs="+", metavar="NAME", help="problems to run (default: all)")
    g.add_argument("--estimator", nargs="+", metavar="NAME", help="estimators to run (default: all)")
    g.add_argument("--config", metavar="FILE", help="TOML sweep file; command-line options override it")
    g.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="load estimators from a Python file or module (repeatable)")
    s = p.add_argument_group("toy Gaussian settings (several values give a sweep)")
    s.add_argument("--mu", nargs="+", type=float, help="mean of every coordinate (default: 1)")
    s.add_argument("--sigma", nargs="+", type=float, help="standard deviation, > 0 (default: 1)")
    s.add_argument("--k", nargs="+", type=float, help="parameter of the test function (default: 1)")
    s.add_argument("--dim", nargs="+", type=_positive_int, help="dimension, >= 1 (default: 1)")
    v = p.add_argument_group("VAE settings (vae-digits, vae-mnist)")
    v.add_argument("--checkpoint", nargs="+", choices=["untrained", "trained"],
                   help="where the encoder-gradient variance is measured (default: untrained trained)")
    v.add_argument("--hidden", nargs="+", type=_positive_int, help="hidden width of encoder and decoder (default: 256)")
    v.add_argument("--latent", nargs="+", type=_positive_int, help="latent size (default: 8)")
    v.add_argument("--batch", nargs="+", type=_positive_int, help="images per ELBO estimate (default: 128)")
    v.add_argument("--checkpoint-steps", type=_positive_int, dest="checkpoint_steps",
                   help="Adam steps with the pathwise estimator that make the trained checkpoint (default: 2000)")
    v.add_argument("--train-steps", type=_positive_int, dest="train_steps",
                   help="Adam steps of each estimator's training curve; 0 for none (default: 1000)")
    v.add_argument("--data-dir", dest="data_dir", help="directory with MNIST IDX files, for vae-mnist")
    r = p.add_argument_group("estimates")
    r.add_argument("--n-samples", nargs="+", type=_positive_int, dest="n_samples",
                   help="draws per gradient estimate (default: 4)")
    r.add_argument("--replicates", type=_positive_int, help="independent estimates per cell, >= 2 (default: 1000)")
    r.add_argument("--seed", type=int, help="seed of the whole run (default: 0)")
    r.add_argument("--dtype", choices=["float64", "float32"], help="floating point type of the samples and gradients; statistics are always accumulated in float64 (default: float32)")
    r.add_argument("--device", help="cpu or cuda (default: cpu)")
    r.add_argument("--compile", choices=compiling.MODES, help=COMPILE_HELP)


def _load_plugins(specs: Sequence[str]) -> None:
    for spec in specs:
        try:
            estimators.load_plugin(spec)
        except estimators.PluginError as exc:
            raise UsageError(str(exc)) from exc


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    _load_plugins(args.plugin)
    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    sweep = Sweep().with_overrides(**values)
    names = ["problem", "estimator", "mu", "sigma", "k", "dim", "checkpoint", "hidden", "latent", "batch",
             "checkpoint_steps", "train_steps", "data_dir", "n_samples", "replicates", "seed", "dtype", "device", "compile"]
    sweep = sweep.with_overrides(**{n: getattr(args, n) for n in names})
    return sweep.validate()


def cmd_list(args: argparse.Namespace) -> int:
    _load_plugins(args.plugin)
    print("estimators:")
    names = estimators.available()
    width = max(len(n) for n in names + problems.available())
    for name in names:
        cls = estimators.get_class(name)
        origin = estimators.origin(name)
        suffix = "" if origin == "built-in" else f"  [plugin: {origin}]"
        print(f"  {name:<{width}}  {cls.description}{suffix}")
    print("problems:")
    for name in problems.available():
        print(f"  {name:<{width}}  {problems.get(name).description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks import runner

    _check_resume_overwrite(args)
    plan = runner.make_plan(sweep_from_args(args))
    bar = _progress(plan, args.quiet)
    rows = runner.run(plan, out=args.out, progress=bar, resume=args.resume,
                      overwrite=args.overwrite)
    bar(None)
    print(f"wrote {len(rows)} rows to {args.out}" + (" (resumed)" if args.resume else ""), file=sys.stderr)
    if args.resume:  # the exit status speaks for the whole table, earlier runs' cells included
        import csv

        with open(args.out, newline="") as fh:
            rows = list(csv.DictReader(fh))
    failed = runner.n_failed(rows)
    if plan.curves:
        print(f"wrote training curves to {runner.curves_path(args.out)}", file=sys.stderr)
    if failed:
        print(f"{failed} rows failed; see the status and error columns of {args.out}", file=sys.stderr)
        return EXIT_FAILED_CELLS
    return 0


def _check_resume_overwrite(args: argparse.Namespace) -> None:
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: --resume continues --out, "
                         "--overwrite replaces it; give one")


def _progress(plan: Any, quiet: bool):
    """Progress on stderr; returns a callback(cell), closed by callback(None).

    On a terminal, a tqdm bar. Elsewhere (CI logs, nohup), a line every PROGRESS_EVERY_S
    seconds: cells done / total, elapsed, estimated remaining; and one at the end."""
    if quiet:
        return lambda cell: None
    if not sys.stderr.isatty():
        return _progress_lines(plan)
    from tqdm import tqdm

    bar = tqdm(total=len(plan), unit="cell", file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(cell: Any) -> None:
        if cell is None:
            bar.close()
            return
        bar.set_postfix_str(cell.label[-60:], refresh=False)
        bar.update(1)

    return update


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _progress_lines(plan: Any):
    """Progress lines for a log. The time left is estimated per kind of unit (a problem's cells,
    its training curves), from the mean time of the units of that kind done so far (of all
    units where none of a kind is done yet): a VAE cell takes a thousand times a toy cell's."""
    try:
        every = float(os.environ.get("ESTBENCH_PROGRESS_EVERY", PROGRESS_EVERY_S))
    except ValueError:
        every = PROGRESS_EVERY_S
    kinds = [(c.problem.name, "cell") for c, _ in plan.cells] + [(c.problem.name, "curve") for c, _ in plan.curves]
    total = len(kinds)
    start = last_line = last_unit = time.monotonic()
    spent: dict[tuple, list[float]] = {}
    done = 0

    def left() -> float:
        pooled = [t for ts in spent.values() for t in ts]
        overall = sum(pooled) / len(pooled) if pooled else 0.0
        mean = {k: sum(ts) / len(ts) for k, ts in spent.items() if ts}
        return sum(mean.get(k, overall) for k in kinds[done:])

    def update(cell: Any) -> None:
        nonlocal done, last_line, last_unit
        now = time.monotonic()
        if cell is None:
            print(f"estbench: {done}/{total} cells done in {_clock(now - start)}", file=sys.stderr, flush=True)
            return
        if now - last_unit > 1e-3:  # units kept by --resume report at once; they say nothing of the time
            spent.setdefault(kinds[min(done, total - 1)], []).append(now - last_unit)
        last_unit = now
        done += 1
        if now - last_line >= every and done < total:
            last_line = now
            print(f"estbench: {done}/{total} cells done, {_clock(now - start)} elapsed, about {_clock(left())} left "
                  f"(last: {cell.label})", file=sys.stderr, flush=True)

    return update


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks import runner
    from benchmarks.sweep import report_sweeps
    from reports.report import build, check_benchmarks, check_out_dir

    out = Path(args.out)
    command = "estbench report " + " ".join(args.argv)
    check_out_dir(out)
    if args.benchmarks:
        check_benchmarks(args.benchmarks)  # before the sweep: a bad file must not cost a run
    _check_resume_overwrite(args)
    if args.results:
        report = build(args.results, out, benchmarks=args.benchmarks, command=command, overwrite=args.overwrite)
        print(f"report rebuilt from {args.results}: {report}", file=sys.stderr)
        return 0
    _load_plugins(args.plugin)
    base = Sweep().with_overrides(estimator=args.estimator, seed=args.seed, dtype=args.dtype, device=args.device,
                                  compile=args.compile, problem=args.problem, data_dir=args.data_dir).validate()
    plan = runner.make_plan(report_sweeps(base, quick=args.quick))
    results = out / "results.csv"
    bar = _progress(plan, args.quiet)
    rows = runner.run(plan, out=results, progress=bar, resume=args.resume,
                      overwrite=args.overwrite)
    bar(None)
    if args.resume:
        import csv

        with open(results, newline="") as fh:
            rows = list(csv.DictReader(fh))
    report = build(results, out, benchmarks=args.benchmarks, command=command)
    print(f"wrote {report} ({len(rows)} result rows in {results})", file=sys.stderr)
    failed = runner.n_failed(rows)
    if failed:
        print(f"{failed} rows failed; they are listed in the report", file=sys.stderr)
        return EXIT_FAILED_CELLS
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from benchmarks import perf

    perf.main(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="estbench", description="Benchmark suite for Monte Carlo gradient estimators.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list estimators and problems")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run a sweep and write tidy results (CSV)")
    _add_sweep_options(p)
    p.add_argument("--out", default="results.csv", help="results file, written as cells complete (default: results.csv)")
    p.add_argument("--resume", action="store_true",
                   help="keep the completed cells of --out and compute only the rest (same options, same seed; "
                        "more problems, estimators or settings may be added)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never done without it)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="run the default sweep (or read --results) and write the variance report")
    p.add_argument("--out", default="reports/latest", help="report folder (default: reports/latest, ignored by git; the committed example is reports/example)")
    p.add_argument("--results", metavar="FILE", help="rebuild from this results CSV without recomputing")
    p.add_argument("--benchmarks", metavar="FILE", help="pytest-benchmark JSON to include (from --benchmark-json)")
    p.add_argument("--quick", action="store_true", help="a smaller sweep for a first look (under a minute)")
    p.add_argument("--problem", nargs="+", metavar="NAME", help="problems (default: the toys and vae-digits)")
    p.add_argument("--data-dir", dest="data_dir", help="directory with MNIST IDX files, for --problem vae-mnist")
    p.add_argument("--estimator", nargs="+", metavar="NAME", help="estimators (default: all)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE")
    p.add_argument("--seed", type=int, help="seed of the whole run (default: 0)")
    p.add_argument("--dtype", choices=["float64", "float32"])
    p.add_argument("--device", help="cpu or cuda (default: cpu)")
    p.add_argument("--compile", choices=compiling.MODES, help=COMPILE_HELP)
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted report: keep the completed cells of OUT/results.csv")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out (never done without it)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("perf", help="speed of the replicate engine against a backward() loop, JAX and a matmul")
    from benchmarks.perf import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_perf)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _terminate_as_interrupt():
    """SIGTERM and SIGINT end a run like Ctrl-C: completed cells are already on disk; say so and
    exit 130. SIGINT is set explicitly because a process started from a non-interactive shell
    inherits it ignored (Python then installs no handler). Returns a function that restores both."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    # over a file-size limit (ulimit -f) a write then fails with EFBIG, reported in one line,
    # instead of the signal killing the process part-way through a row
    old[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return lambda: [signal.signal(sig, h) for sig, h in old.items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    allocator.keep_freed_memory()
    restore = _terminate_as_interrupt()
    try:
        return args.func(args)
    except (UsageError, SweepError, SettingError, DataError, ResultsError, ResultsFileError, ResumeError,
            estimators.UnknownNameError, estimators.PluginError) as exc:
        print(f"estbench {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # what the checks before the run could not foresee: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"estbench {args.command}: error: {where}{os_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("estbench: interrupted; completed cells are in the results file (continue with --resume)",
              file=sys.stderr)
        return 130
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
