"""A sweep: which problems, estimators and settings to run. Typed, validated once.

A sweep comes from defaults, a TOML file (``--config sweep.toml``) and command
line options, later ones overriding earlier ones. A TOML file uses the same
names as the command line, with underscores::

    problem = ["gaussian-quadratic", "gaussian-cos"]
    estimator = ["reparameterization", "reinforce"]
    mu = [1.0]                  # an entry may be a list: one value per coordinate,
    sigma = [0.5, 1, 2]         # e.g. mu = [[0.0, 1.0, 2.0]] with dim = [3]
    k = [1.0]
    dim = [1, 100]
    n_samples = [1, 8]
    replicates = 1000
    seed = 0
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

import estimators
from estimators.options import Option, OptionError

from . import compiling, problems
from .engine import PRECISION_MIN_REPLICATES

#: the n_samples of the default report's n sweep for estimators that declare report_axes
NARROW_N = (2, 4, 16)
#: replicates of ``report --quick``'s cells of an estimator that computes them one at a time (Estimator.loop)
QUICK_LOOP_REPLICATES = 50
#: the most training curves per estimator a run may ask for (--train-seeds)
MAX_TRAIN_SEEDS = 100
#: with --precision, the default report lets each cell draw up to this many times its fixed R
PRECISION_REPORT_FACTOR = 10


class SweepError(ValueError):
    """Bad sweep input; the message names the bad value and the valid choices."""


#: run-wide options (not swept as axes), with their defaults; everything else a sweep holds is a
#: setting axis declared by a problem or an option declared by an estimator (``declared()``)
RUN_DEFAULTS: dict[str, Any] = {
    "replicates": 1000, "seed": 0, "dtype": "float32", "device": "cpu", "compile": "auto",
    "checkpoint_steps": 2000,  # pathwise Adam steps that make a model problem's "trained" checkpoint
    "train_steps": 1000,  # steps of each estimator's training curve (problems that train); 0 = none
    "train_seeds": 3,  # training curves per estimator, each from its own seed (initial weights, batches, draws)
    "data_dir": None,  # a problem's data on disk (vae-mnist)
    "precision": None,  # stop each cell once its variance's relative standard error is at most this
}
_RUN_INT = ("replicates", "seed", "checkpoint_steps", "train_steps", "train_seeds")
#: list-valued options every sweep has
LIST_OPTIONS = ("problem", "estimator", "n_samples")


def declared() -> dict[str, Option]:
    """Every setting axis of the registered problems and every option of the registered estimators,
    by name (the first declaration of a name wins; a clash of types is refused when registering)."""
    out: dict[str, Option] = {}
    for name in problems.available():
        for axis in problems.get_class(name).axes:
            out.setdefault(axis.name, axis)
    for name in estimators.available():
        for option in estimators.get_class(name).options:
            out.setdefault(option.name, option)
    return out


def declarations(name: str) -> dict[str, Option]:
    """Each problem declaring axis ``name`` and each estimator declaring option ``name``, with its
    declaration (their defaults may differ)."""
    out = {p: a for p in problems.available() for a in problems.get_class(p).axes if a.name == name}
    return out | {e: o for e in estimators.available() for o in estimators.get_class(e).options if o.name == name}


class Sweep:
    """Problems, estimators, n_samples, the run-wide options, and the values of each setting axis
    and estimator option (a list each; the declared defaults where none is given)."""

    def __init__(self, problem: list[str] | None = None, estimator: list[str] | None = None,
                 n_samples: list[int] | None = None, **values: Any):
        self.problem = list(problem) if problem is not None else problems.defaults()
        self.estimator = list(estimator) if estimator is not None else estimators.available()
        self.n_samples = list(n_samples) if n_samples is not None else [4]
        for key, default in RUN_DEFAULTS.items():
            setattr(self, key, values.pop(key, default))
        #: the report's reruns of cells flagged biased near the threshold (estbench.api.default_report): their rows
        #: say so (``confirmation``) and they draw other random numbers than the cell they confirm
        self.confirmation = bool(values.pop("confirmation", False))
        self.values = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in values.items()}

    def __getattr__(self, name: str) -> Any:
        """The values of a setting axis or estimator option (``sweep.sigma``): given, or declared."""
        if name.startswith("_") or name == "values":
            raise AttributeError(name)
        if name in self.values:
            return self.values[name]
        option = declared().get(name)
        if option is None:
            raise AttributeError(f"{type(self).__name__} has no option {name!r}")
        return list(option.default)

    def __repr__(self) -> str:
        run = ", ".join(f"{k}={getattr(self, k)!r}" for k in RUN_DEFAULTS)
        return f"Sweep(problem={self.problem}, estimator={self.estimator}, n_samples={self.n_samples}, {run}, {self.values})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sweep) and vars(self) == vars(other)

    def options(self) -> dict[str, Any]:
        """Every field, as keyword arguments that make this sweep again."""
        return {"problem": self.problem, "estimator": self.estimator, "n_samples": self.n_samples,
                **{k: getattr(self, k) for k in RUN_DEFAULTS}, **({"confirmation": True} if self.confirmation else {}),
                **self.values}

    def with_overrides(self, **values: Any) -> Sweep:
        """A copy with the given fields replaced; None values are ignored."""
        return Sweep(**{**self.options(), **{k: v for k, v in values.items() if v is not None}})

    def estimator_options(self, name: str) -> list[dict[str, Any]]:
        """The option values a cell of estimator ``name`` runs with: the product of its declared
        options' values in this sweep ([{}] for an estimator without options)."""
        opts = estimators.get_class(name).options
        # a value given applies to every declaration of its name; where none is given, each estimator
        # takes its own default (a name several declare, such as k or temperature, may have several)
        return problems.product(**{o.name: self._own(name, o) if o.name in self.values else list(o.default)
                                   for o in opts})

    def _own(self, estimator: str, option: Option) -> list[Any]:
        """The values given for ``option``'s name as the estimator's own declaration takes them (k = 3.0 given
        for the float axis k is sum-and-sample's int 3). A value it refuses that another declaration of the
        name took is not run with it (--temperature 0.5 for gumbel-softmax and reinmax, which needs >= 1);
        none left is a SweepError naming the value."""
        out, errors = [], []
        for value in self.values[option.name]:
            try:
                out.append(option.coerce(value))
            except OptionError as exc:
                errors.append(str(exc))
        if not out:
            raise SweepError(f"estimator {estimator!r}: {errors[0]}")
        return list(dict.fromkeys(out))

    def _coerce(self, key: str, value: Any, first: Option) -> Any:
        """``value`` of ``key`` as its declaration gives it; an axis several of this sweep's problems declare
        with other bounds (K: classes of categorical-quadratic, samples of a bound) need only suit one of them
        here: each problem then checks its own (Problem.settings)."""
        mine = [o for owner, o in declarations(key).items() if owner in self.problem or owner in self.estimator]
        errors = []
        for option in dict.fromkeys([*mine, first]):
            try:
                return option.coerce(value)
            except OptionError as exc:
                errors.append(str(exc))
        raise SweepError(errors[0])

    def validate(self) -> Sweep:
        """Check names and values; raise SweepError with a clear message."""
        for name in self.problem:
            if name not in problems.available():
                raise SweepError(str(estimators.UnknownNameError("problem", name, problems.available())))
        for name in self.estimator:
            if name not in estimators.available():
                try:
                    estimators.get_class(name)  # an adapter whose extra is not installed says how to install it
                except estimators.UnknownNameError as exc:
                    raise SweepError(str(exc)) from None
        if not self.problem:
            raise SweepError("no problem selected; valid problems: " + ", ".join(problems.available()))
        if not self.estimator:
            raise SweepError("no estimator selected; valid estimators: " + ", ".join(estimators.available()))
        known = declared()
        for key, values in self.values.items():
            if key not in known:
                close = difflib.get_close_matches(key, [*known, *RUN_DEFAULTS, *LIST_OPTIONS], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise SweepError(f"unknown option {key!r}.{hint} Valid: {', '.join([*LIST_OPTIONS, *RUN_DEFAULTS, *known])}")
            if not values:
                raise SweepError(f"{key} is an empty list: a sweep needs at least one value of {key}")
            self.values[key] = [self._coerce(key, v, known[key]) for v in values]
        # a value that no problem or estimator of this run reads would be silently dropped: the rows would not say it
        here = {a.name for p in self.problem for a in problems.get_class(p).axes} | \
            {o.name for e in self.estimator for o in estimators.get_class(e).options}
        for key in self.values:
            if key not in here:
                by = declarations(key)
                has = [f"{kind}: {', '.join(names)}" for kind, names, declared_by in (
                    ("problems", self.problem, problems.available()), ("estimators", self.estimator, estimators.available()))
                    if any(d in by for d in declared_by)]  # the run's side that could have had it
                raise SweepError(f"{key} is a setting of {', '.join(by)}, none of which this run has "
                                 f"({'; '.join(has)}); add one of them or leave {key} out")
        if not 1 <= self.train_seeds <= MAX_TRAIN_SEEDS:
            raise SweepError(f"train_seeds must be between 1 and {MAX_TRAIN_SEEDS} (training curves per estimator), "
                             f"got train_seeds={self.train_seeds}")
        for name in LIST_OPTIONS:
            if not getattr(self, name):
                raise SweepError(f"{name} is an empty list: a sweep needs at least one value of {name}")
        for n in self.n_samples:
            if n < 1:
                raise SweepError(f"n_samples must be >= 1, got n_samples={n}")
        for name in ("checkpoint_steps", "train_steps"):
            if getattr(self, name) < 0:
                raise SweepError(f"{name} must be >= 0, got {name}={getattr(self, name)}")
        for name in self.problem:
            needs = getattr(problems.get_class(name), "needs_data_dir", False)
            if needs and self.data_dir is None:
                raise SweepError(f"problem {name} needs --data-dir DIR (a directory with its data files)")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise SweepError(f"--data-dir {self.data_dir}: no such directory")
        if not 0 <= self.seed < 1 << 63:
            raise SweepError(f"seed must be between 0 and 2^63 - 1 (a 64-bit seed), got seed={self.seed}")
        if self.replicates < 2:
            raise SweepError(f"replicates must be >= 2 (a variance needs two estimates), got replicates={self.replicates}")
        if self.dtype not in ("float64", "float32"):
            raise SweepError(f"dtype must be one of float64, float32; got {self.dtype!r}")
        if self.precision is not None and not (isinstance(self.precision, (int, float)) and 0 < self.precision < 1):
            raise SweepError(f"precision must be a number between 0 and 1 (the relative standard error of each "
                             f"cell's variance, e.g. 0.05), got precision={self.precision!r}")
        if self.precision is not None and self.replicates < PRECISION_MIN_REPLICATES:
            raise SweepError(f"with precision, replicates is the most a cell draws and must be at least the minimum "
                             f"{PRECISION_MIN_REPLICATES}, got replicates={self.replicates}")
        if self.compile not in compiling.MODES:
            raise SweepError(f"compile must be one of {', '.join(compiling.MODES)}; got {self.compile!r}")
        check_device(self.device)
        return self

    def context(self):
        """The typed computing context shared by the cells of this sweep."""
        import torch

        return problems.Context(dtype=getattr(torch, self.dtype), device=self.device, seed=self.seed,
                                data_dir=self.data_dir, checkpoint_steps=self.checkpoint_steps,
                                train_steps=self.train_steps, compile=self.compile, precision=self.precision)


def check_device(device: str) -> None:
    """Raise SweepError unless ``device`` is 'cpu', or 'cuda' / 'cuda:N' naming a GPU this torch can use:
    asked for a GPU that is not there, a run should stop before its first cell, not fail in every one."""
    import torch

    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device != "cpu" and m is None:
        raise SweepError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if m is None:
        return
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SweepError(f"device {device!r}: no CUDA GPU is available (torch {torch.__version__}, {build}); "
                         f"valid here: 'cpu'")
    count = torch.cuda.device_count()
    if int(m.group(1) or 0) >= count:
        raise SweepError(f"device {device!r}: this machine has {count} CUDA device(s); valid: 'cpu', 'cuda', "
                         + ", ".join(f"'cuda:{i}'" for i in range(count)))


def benchmark_device() -> str:
    """The device of the pytest-benchmark files under benchmarks/: $ESTBENCH_DEVICE (which
    ``pytest --estbench-device`` sets), else 'cpu'; checked as check_device does."""
    import os

    device = os.environ.get("ESTBENCH_DEVICE", "cpu")
    check_device(device)
    return device


def list_fields() -> set[str]:
    """The sweep's options that hold a list of values (the axes, options, problems, estimators)."""
    return {*LIST_OPTIONS, *declared()}


def _coerce(path: Path, key: str, value: Any) -> Any:
    if key in LIST_OPTIONS or key in declared():
        values = value if isinstance(value, list) else [value]
        want = str if key in ("problem", "estimator") else int if key == "n_samples" else None
        if want is not None:
            for v in values:
                ok = isinstance(v, str) if want is str else isinstance(v, int) and not isinstance(v, bool)
                if not ok:
                    raise SweepError(f"{path}: {key} must be a list of {want.__name__} values, got {v!r}")
            return values
        try:
            return [declared()[key].coerce(v) for v in values]
        except OptionError as exc:
            raise SweepError(f"{path}: {exc}") from None
    if key == "precision":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SweepError(f"{path}: precision must be a number, got {value!r}")
        return float(value)
    if key in _RUN_INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SweepError(f"{path}: {key} must be an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise SweepError(f"{path}: {key} must be a string, got {value!r}")
    return value


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a sweep file into Sweep field values; errors name the file (and the line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SweepError(f"sweep file {path} is not a text file (binary content); expected TOML") from None
    except OSError as exc:
        raise SweepError(f"cannot read sweep file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: malformed TOML: {exc}") from exc
    valid = [*LIST_OPTIONS, *RUN_DEFAULTS, *declared()]
    out = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        norm = {"problems": "problem", "estimators": "estimator"}.get(norm, norm)
        if norm not in valid:
            raise SweepError(f"{path}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        out[norm] = _coerce(path, norm, value)
    return out


def report_sweeps(base: Sweep, quick: bool = False) -> list[Sweep]:
    """The sweeps of the default report (``estbench report``), from a base sweep's options.

    For each toy problem, one sweep per axis that declares report values (``Option.report``:
    sigma and mu of the Gaussians, theta and t of the discrete toys), the other axes at the problem's
    base setting (``Problem.report_base``, else their defaults) and n_samples = 4, of the estimators that
    declare that axis among their ``report_axes`` (or none); one over n_samples at the base setting, of
    every estimator (those with ``report_axes`` at
    NARROW_N only); and for each estimator
    option that declares report values (the relaxations' temperature), one over it. Model
    problems (the digits VAEs, Gaussian and binary) at both checkpoints (trained for 1000 steps) with R = 300,
    and training curves of 500 steps. ``quick`` makes each smaller (about a minute on 2 cores); in it the library
    adapters (``Estimator.library``, the [pyro] and [storchastic] extras) run at each toy's base setting only (not
    on the models, nor in the studies), those that loop over replicates (``Estimator.loop``) with
    QUICK_LOOP_REPLICATES. With ``precision``, each R is a maximum PRECISION_REPORT_FACTOR times larger.
    """
    toys = [p for p in base.problem if problems.get_class(p).kind == "toy"]
    models = [p for p in base.problem if problems.get_class(p).kind != "toy"]
    n, r_toy = ([2, 4, 16], 200) if quick else ([1, 2, 4, 8, 16, 32], 1000)
    # quick: curves of 60 steps, as the studies' quick curves (a seed's curve shows its start; no difference
    # between estimators is established at one seed however long it trains)
    vae = dict(replicates=50, checkpoint_steps=200, train_steps=60) if quick else \
        dict(replicates=300, checkpoint_steps=1000, train_steps=500)
    if base.precision is not None:  # the fixed R becomes a maximum, PRECISION_REPORT_FACTOR times larger
        r_toy = max(r_toy * PRECISION_REPORT_FACTOR, PRECISION_MIN_REPLICATES)
        vae["replicates"] = max(vae["replicates"] * PRECISION_REPORT_FACTOR, PRECISION_MIN_REPLICATES)
    out = []
    # quick: a library's adapters at each toy's base setting only (a looping one with fewer replicates)
    library = [e for e in base.estimator if quick and estimators.get_class(e).library]
    own = [e for e in base.estimator if e not in library]
    for p in toys:
        one = dict(problem=[p], replicates=r_toy, **{k: [v] for k, v in problems.get_class(p).report_base.items()})
        for axis in problems.get_class(p).axes:
            values = axis.report_quick if quick and axis.report_quick else axis.report
            swept = [e for e in own if estimators.get_class(e).report_axes is None
                     or axis.name in estimators.get_class(e).report_axes]
            if values and swept:
                out.append(base.with_overrides(**{**one, "estimator": swept, "n_samples": [4], axis.name: list(values)}))
        # every estimator over n_samples; those that declare report_axes (the 2019-2023 ones) at fewer of them
        narrow = [e for e in own if estimators.get_class(e).report_axes is not None]
        wide = [e for e in own if e not in narrow]
        if wide:
            out.append(base.with_overrides(**one, estimator=wide, n_samples=n))
        if narrow:
            out.append(base.with_overrides(**one, estimator=narrow, n_samples=[v for v in n if v in NARROW_N] or n))
        batched = [e for e in library if not estimators.get_class(e).loop]
        looping = [e for e in library if estimators.get_class(e).loop]
        if batched:
            out.append(base.with_overrides(**one, estimator=batched, n_samples=[4]))
        if looping:
            out.append(base.with_overrides(**{**one, "replicates": min(r_toy, QUICK_LOOP_REPLICATES)}, estimator=looping,
                                           n_samples=[4]))
        for e in own:
            for option in estimators.get_class(e).options:
                values = option.report_quick if quick and option.report_quick else option.report
                if values:
                    out.append(base.with_overrides(**one, estimator=[e], n_samples=[4], **{option.name: list(values)}))
    if models and own:  # quick: without the library adapters, which run at the toys' base settings only
        out.append(base.with_overrides(problem=models, estimator=own, n_samples=[4], **vae))
    if base.problem == problems.defaults():  # the default report: the studies of problems run by name only
        for p in problems.available():
            cls = problems.get_class(p)
            study = (cls.report_study_quick or cls.report_study) if quick else cls.report_study
            if p not in base.problem and study and own:
                out.append(base.with_overrides(problem=[p], **{"estimator": own, **study}))
    return out
