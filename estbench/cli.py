"""The ``estbench`` command line: list, run, report, perf. A thin layer over estbench.api.

Bad input (unknown names and options, impossible values, malformed files) prints one
line naming the bad value and the valid choices, and exits with status 2. A run in
which some cells or training curves failed exits with status 1.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any

import estimators
from benchmarks import allocator, compiling, problems
from benchmarks.cluster import ClusterError
from benchmarks.data import DataError
from benchmarks.problems import SettingError
from benchmarks.results_file import ResultsFileError, os_error_text
from benchmarks.resume import ResumeError
from benchmarks.sweep import PRECISION_MIN_REPLICATES, PRECISION_REPORT_FACTOR, SweepError
from reports.load import ResultsError

from . import api
from .progress import progress

EXIT_FAILED_CELLS = 1
EXIT_USAGE = 2
#: the commands that measure: they keep freed memory in the process (benchmarks.allocator)
MEASURING = ("run", "report", "perf")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (``--replicate`` is not ``--replicates``), whose errors are
    one line (no usage dump) and, for an unknown option, name the closest valid one."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            unknown = next((w for w in message.split(":", 1)[1].split() if w.startswith("-")), None)
            valid = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(unknown.split("=")[0], valid, n=1) if unknown else []
            if close:
                message += f" (did you mean {close[0]}?)"
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


COMPILE_HELP = ("torch.compile the replicate engine: auto compiles only large cells (replicates x memory per "
                "replicate >= 64 GiB, about a minute eagerly; decided from the size, not a timing), on compiles "
                "every cell, off never (default: auto)")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _common() -> argparse.ArgumentParser:
    """Options that run and report share, declared once."""
    p = Parser(add_help=False)
    g = p.add_argument_group("what to run")
    g.add_argument("--problem", nargs="+", metavar="NAME", help="problems (default: all but those needing data)")
    g.add_argument("--estimator", nargs="+", metavar="NAME", help="estimators (default: all)")
    g.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="load estimators from a Python file or module (repeatable)")
    g.add_argument("--data-dir", dest="data_dir", help="directory with MNIST IDX files, for vae-mnist")
    r = p.add_argument_group("how")
    r.add_argument("--seed", type=int, help="seed of the whole run (default: 0)")
    r.add_argument("--dtype", choices=["float64", "float32"],
                   help="floating point type of samples and gradients; statistics are float64 (default: float32)")
    r.add_argument("--device", help="cpu or cuda[:N] (default: cpu)")
    r.add_argument("--compile", choices=compiling.MODES, help=COMPILE_HELP)
    r.add_argument("--train-seeds", type=_int, dest="train_seeds", metavar="S",
                   help="training curves per estimator (problems that train), each from its own seed; the report "
                        "shows their mean with a 95%% band (default: 3; report --quick: 1)")
    c = p.add_argument_group("on a Dask cluster (pip install -c constraints.txt -e '.[dask]'; docs/cluster.md)")
    c.add_argument("--workers", type=_int, metavar="N",
                   help="run the cells on a local Dask cluster of N worker processes (torch threads: cores / N)")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the cells on the existing Dask cluster at ADDRESS (e.g. tcp://host:8786)")
    r.add_argument("--precision", type=float, metavar="P",
                   help="draw each cell's estimates until its variance's relative standard error is at most P "
                        f"(e.g. 0.05), after at least {PRECISION_MIN_REPLICATES} and at most R (run: --replicates; "
                        f"report: {PRECISION_REPORT_FACTOR}x its fixed R); the rows record the R used (default: "
                        "exactly R estimates)")
    f = p.add_argument_group("the results file")
    f.add_argument("--resume", action="store_true",
                   help="keep the completed cells of the results file and compute only the rest (same options; "
                        "more problems, estimators or settings may be added)")
    f.add_argument("--overwrite", action="store_true", help="replace existing results (never done without it)")
    f.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--force", action="store_true",
                   help="run what estbench would refuse as a likely mistake: more than 4 local workers per core, "
                        "a run that would take more than a day")
    return p


def _plugin_option() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="load estimators from a Python file or module (repeatable)")
    return p


def _sweep_options(p: argparse.ArgumentParser) -> None:
    """The options of a sweep: the setting axes the registered problems declare and the options
    the registered estimators declare (benchmarks.sweep.declared), plus the run-wide ones."""
    from benchmarks.sweep import declarations, declared

    p.add_argument("--config", metavar="FILE", help="TOML sweep file; command-line options override it")
    groups: dict[str, Any] = {}
    for name, option in declared().items():
        who = declarations(name)
        title = "settings of " + ", ".join(who)
        group = groups.setdefault(title, p.add_argument_group(title + " (several values give a sweep)"))
        default = " ".join(str(v) for v in option.default)
        default += "".join(f"; {owner}: {' '.join(str(v) for v in mine.default)}"  # owners with another default
                           for owner, mine in who.items() if mine.default != option.default)
        meanings: dict[str, list[str]] = {}  # one name, several meanings (K: classes, or samples in a bound)
        for owner, mine in who.items():
            meanings.setdefault(mine.help, []).append(owner)
        text = option.help if len(meanings) == 1 else "; ".join(f"{', '.join(o)}: {h}" for h, o in meanings.items())
        group.add_argument(option.flag, nargs="+", dest=name, metavar=name.upper(),
                           type=_int if option.type is int else option.type, choices=option.choices,
                           help=f"{text} (default: {default})")
    v = p.add_argument_group("model problems (vae-digits, vae-mnist)")
    v.add_argument("--checkpoint-steps", type=_int, dest="checkpoint_steps",
                   help="Adam steps with the pathwise estimator that make the trained checkpoint (default: 2000)")
    v.add_argument("--train-steps", type=_int, dest="train_steps",
                   help="Adam steps of each estimator's training curve; 0 for none (default: 1000)")
    r = p.add_argument_group("estimates")
    r.add_argument("--n-samples", nargs="+", type=_int, dest="n_samples", help="draws per gradient estimate (default: 4)")
    r.add_argument("--replicates", type=_int, help="independent estimates per cell, >= 2 (default: 1000)")


#: run-wide command-line options passed to estbench.api by name (the declared axes and options too)
RUN_ARGS = ("checkpoint_steps", "train_steps", "train_seeds", "data_dir", "n_samples", "replicates", "seed", "dtype", "device",
            "compile", "precision", "workers", "scheduler", "force")


def _sweep_args(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.sweep import declared

    return {n: getattr(args, n) for n in (*RUN_ARGS, *declared())}


def _check_resume_overwrite(args: argparse.Namespace) -> None:
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: --resume continues --out, "
                         "--overwrite replaces it; give one")


def _load_plugins(specs: Sequence[str]) -> None:
    from benchmarks import plugins

    for spec in specs:
        plugins.load(spec)


def _plugins_in(argv: Sequence[str]) -> list[str]:
    """The --plugin values of a command line, read before it is parsed: a plugin's problems and
    estimators declare options that the parser must know."""
    specs, it = [], iter(argv)
    for word in it:
        if word == "--plugin":
            specs.append(next(it, ""))
        elif word.startswith("--plugin="):
            specs.append(word.split("=", 1)[1])
    return [s for s in specs if s]


#: what ``estbench list`` shows of each estimator's declarations (estimators.Estimator)
DECLARED_HEADER = ("supports", "objectives", "unbiased", "f/draw")


def _declared(cls: type) -> tuple[str, str, str, str]:
    unbiased = {True: "yes", False: "no (biased)", None: "?"}[cls.unbiased]
    per_draw = "varies" if cls.f_evals_per_draw is None else str(cls.f_evals_per_draw)
    return estimators.registry.family_names(cls), ",".join(cls.objectives), unbiased, per_draw


def cmd_list(args: argparse.Namespace) -> int:
    names = estimators.available()
    width = max(len(n) for n in names + problems.available())
    declared = {n: _declared(estimators.get_class(n)) for n in names}
    widths = [max(len(h), *(len(d[i]) for d in declared.values())) for i, h in enumerate(DECLARED_HEADER)]
    row = lambda cells: "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))  # noqa: E731
    print(f"estimators:\n  {'':<{width}}  {row(DECLARED_HEADER)}")
    for name in names:
        cls = estimators.get_class(name)
        origin = estimators.origin(name)
        library = getattr(cls, "library", None)
        suffix = "" if origin == "built-in" else f"  [{library} adapter]" if library else f"  [plugin: {origin}]"
        print(f"  {name:<{width}}  {row(declared[name])}  {cls.description}{suffix}")
    missing: dict[str, list[str]] = {}
    for name, why in estimators.missing().items():
        missing.setdefault(why, []).append(name)
    for why, which in missing.items():
        print(f"  not installed: {', '.join(which)}\n    ({why.removeprefix('needs ')})")
    print("problems:")
    for name in problems.available():
        cls = problems.get_class(name)
        print(f"  {name:<{width}}  {cls.family or '?':<11}  {cls.objective:<12}  {cls.description}")
    return 0


def _failed(df: Any) -> int:
    return int((df["status"] == "failed").sum())


def _failed_curves(path: Any) -> int:
    """Training curves that failed (a failed curve is one row) in the training file at ``path``, if there is one
    (``estbench report``'s table has the cells only; ``estbench run``'s holds the training file in its attrs)."""
    import pandas as pd

    try:
        return _failed(pd.read_csv(path, usecols=["status"])) if path.exists() else 0
    except (OSError, ValueError):  # unreadable: the run's own messages say more
        return 0


def _progress(args: argparse.Namespace) -> api.Progress:
    return lambda plan: progress(plan, args.quiet)


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.results_file import curves_path

    _check_resume_overwrite(args)
    df = api.run(args.problem, args.estimator, out=args.out, resume=args.resume, overwrite=args.overwrite,
                 config=args.config, progress=_progress(args), **_sweep_args(args))
    print(f"wrote {df.attrs['computed']} rows to {args.out}" + (" (resumed)" if args.resume else ""), file=sys.stderr)
    if df.attrs["curves"] is not None:
        print(f"wrote training curves to {curves_path(args.out)}", file=sys.stderr)
    failed = _failed(df)  # the whole table, earlier runs' cells included
    if failed:
        print(f"{failed} rows failed; see the status and error columns of {args.out}", file=sys.stderr)
    failed_curves = _failed(df.attrs["curves"]) if df.attrs["curves"] is not None else 0  # the whole training file
    if failed_curves:
        print(f"{failed_curves} training curves failed; see the status and error columns of {curves_path(args.out)}",
              file=sys.stderr)
    return EXIT_FAILED_CELLS if failed or failed_curves else 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.results_file import curves_path

    _check_resume_overwrite(args)
    command = " ".join(["estbench report", *args.argv])
    if args.results:
        report = api.report(args.results, args.out, benchmarks=args.benchmarks, command=command,
                            overwrite=args.overwrite)
        print(f"report rebuilt from {args.results}: {report}", file=sys.stderr)
        return 0
    report, df = api.default_report(args.out, quick=args.quick, resume=args.resume, overwrite=args.overwrite,
                                    benchmarks=args.benchmarks, command=command, progress=_progress(args),
                                    problem=args.problem, estimator=args.estimator,
                                    **{n: getattr(args, n) for n in ("seed", "dtype", "device", "compile", "data_dir",
                                                                     "train_seeds", "precision", "workers", "scheduler",
                                                                     "force")})
    print(f"wrote {report} ({len(df)} result rows in {report.parent / 'results.csv'})", file=sys.stderr)
    failed = _failed(df)
    if failed:
        print(f"{failed} rows failed; they are listed in the report", file=sys.stderr)
    failed_curves = _failed_curves(curves_path(report.parent / "results.csv"))
    if failed_curves:
        print(f"{failed_curves} training curves failed; the report's training tables say whose", file=sys.stderr)
    return EXIT_FAILED_CELLS if failed or failed_curves else 0


def cmd_perf(args: argparse.Namespace) -> int:
    from benchmarks import perf_command

    perf_command.main(args)
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from benchmarks.fetch import fetch

    paths = fetch(args.name, args.dir, say=lambda line: print(line, file=sys.stderr))
    print(f"{args.name}: {len(paths)} files checked in {args.dir}; use --data-dir {args.dir}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="estbench", description="Benchmark suite for Monte Carlo gradient estimators.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    parser.set_defaults(commands=sub.choices)  # each command's parser, to report its unknown options

    p = sub.add_parser("list", help="list estimators and problems", parents=[_plugin_option()])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run a sweep and write tidy results (CSV)", parents=[_common()])
    _sweep_options(p)
    p.add_argument("--out", default="results.csv", help="results file, written as cells complete (default: results.csv)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="run the default sweep (or read --results) and write the variance report",
                       parents=[_common()])
    p.add_argument("--out", default="reports/latest",
                   help="report folder (default: reports/latest, ignored by git; the committed example is reports/example)")
    p.add_argument("--results", metavar="FILE", help="rebuild from this results CSV without recomputing")
    p.add_argument("--benchmarks", metavar="FILE", help="pytest-benchmark JSON to include (from --benchmark-json)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller sweep for a first look (44-47 s on 2 cores, 51-57 s with the adapters' extras)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("perf", help="speed of the replicate engine against a backward() loop, JAX and a matmul")
    from benchmarks.perf_command import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_perf)

    from benchmarks.fetch import SOURCES

    p = sub.add_parser("data", help="the data files of the VAE problems that read --data-dir")
    data = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=Parser)
    f = data.add_parser("fetch", help="download a data set's files from their canonical addresses, each checked "
                                      "against its published digest (nothing else in estbench downloads)")
    f.add_argument("name", choices=list(SOURCES), help="the data set")
    f.add_argument("--dir", required=True, help="where to put the files (made if missing); then --data-dir DIR")
    f.set_defaults(func=cmd_data_fetch)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in argv if not w.startswith("-")), "estbench")
    try:
        _load_plugins(_plugins_in(argv))
    except estimators.PluginError as exc:
        print(f"estbench {command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own parser names the closest of its options
        args.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv[1:]
    if args.command in MEASURING:
        allocator.keep_freed_memory()
    restore = _terminate_as_interrupt()
    try:
        return args.func(args)
    except (UsageError, SweepError, ClusterError, SettingError, DataError, ResultsError, ResultsFileError, ResumeError,
            estimators.UnknownNameError, estimators.PluginError) as exc:
        print(f"estbench {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # what the checks before the run could not foresee: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"estbench {args.command}: error: {where}{os_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("estbench: interrupted; the files already checked are kept, no partial one (run it again)"
              if args.command == "data" else
              "estbench: interrupted; completed cells are in the results file (continue with --resume)", file=sys.stderr)
        return 130
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
