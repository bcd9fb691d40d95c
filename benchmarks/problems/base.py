"""What a benchmark problem is.

A problem owns a distribution p_theta, a function f and, where one exists, the
closed-form gradient of E[f]. The runner asks it for per-replicate gradient
estimates, a chunk of replicates at a time, and never looks inside.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from estimators import EXPECTATION, MULTI_SAMPLE, OBJECTIVES, Estimator, PluginError, Registry
from estimators.options import Option, OptionError, declared

from ..results_file import REFERENCE


@dataclass(frozen=True)
class Context:
    """How to compute: typed, shared by every cell of a run."""

    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    seed: int = 0
    #: VAE problems: where MNIST lives, steps of the pathwise checkpoint, steps of each training curve
    data_dir: str | None = None
    checkpoint_steps: int = 2000
    train_steps: int = 0
    #: torch.compile the replicate engine: "off", "on" or "auto" (see benchmarks.compiling)
    compile: str = "off"
    #: stop each cell once its variance's relative standard error is at most this (None: exactly R estimates)
    precision: float | None = None


class SettingError(ValueError):
    """An impossible setting value; the message names it and the valid range."""


__all__ = ["PROBLEMS", "Chunk", "Context", "Option", "OptionError", "Problem", "SettingError", "builtin", "product"]


@dataclass
class Chunk:
    """Gradient estimates of one chunk of replicates.

    grads: {parameter group: [r, P]} one row per replicate (P coordinates).
    state: the estimator's state after the chunk.
    """

    grads: dict[str, torch.Tensor]
    state: Any = None


def surrogate(estimator: Estimator, dist: Any, f: Any, n_samples: int, state: Any, shape: tuple[int, ...],
              what: str = "one value per replicate") -> Any:
    """The estimator's surrogate for ``dist`` and ``f``; ValueError naming the estimator where its
    loss is not of ``shape`` (``what`` says what each value is)."""
    sur = estimator(dist, f, n_samples, state)
    if tuple(sur.loss.shape) != tuple(shape):
        raise ValueError(f"estimator {estimator.name!r} returned a surrogate of shape {tuple(sur.loss.shape)}, "
                         f"expected {what}, {tuple(shape)}")
    return sur


class Problem(abc.ABC):
    """A benchmark problem. Subclasses set ``name`` and ``description``."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: parameter groups whose gradients are reported, in order
    groups: ClassVar[tuple[str, ...]]
    #: whether the problem records training curves per estimator (see curves())
    trains: ClassVar[bool] = False
    #: what kind of problem it is, written in every results row (``problem_kind``) so that the
    #: report, which imports no problem code, knows how to read its rows: "toy" (settings mu,
    #: sigma, k, dim; exact truth) or "model" (a trained model: checkpoint, hidden, latent, batch)
    kind: ClassVar[str]
    #: the setting axes (estimators.Option): each is a command-line option ``--name`` taking
    #: several values, a sweep-file key and a results column; a sweep runs their product
    axes: ClassVar[tuple[Option, ...]] = ()
    #: the settings' type: a frozen dataclass whose fields are the axes' names
    setting_type: ClassVar[type]
    #: the problem's reference estimator, recorded in every row (``reference_estimator``): the
    #: report's ratio columns divide by its figures, and where true_gradient is None each
    #: estimator's mean gradient is compared (agreement_z) with its mean in the same setting
    reference: ClassVar[str] = REFERENCE
    #: the family of the distribution the problem's chunks hand estimators ("normal", "bernoulli",
    #: "categorical"; estimators.Estimator.supports): an estimator that does not support it is
    #: skipped with the reason before any work. None: not declared (found out at call time)
    family: ClassVar[str | None] = None
    #: the objective kind (estimators.Estimator.objectives): "expectation" (E f(x)) or "multi-sample"
    #: (the K-sample bound: its chunks hand estimators an estimators.Bound)
    objective: ClassVar[str] = EXPECTATION
    #: whether a run or report that names no problem includes it (False: run by name only)
    by_default: ClassVar[bool] = True
    #: a problem run by name only may still have a study in the default report: the sweep's values
    #: (axes, n_samples, replicates, train_steps), and the smaller ones of ``estbench report --quick``
    report_study: ClassVar[dict[str, Any]] = {}
    report_study_quick: ClassVar[dict[str, Any]] = {}
    #: the default report's base setting, where it differs from the axes' defaults: the sweeps over one axis hold
    #: the others there, so the report's tables and In-brief line use it. Chosen so that no unbiased sampling
    #: estimator is exact there by symmetry (tests/test_report.py checks it; docs/report.md says why each)
    report_base: ClassVar[dict[str, Any]] = {}

    def settings(self, sweep: Any) -> list[Any]:
        """The settings (``setting_type`` objects) this problem runs for a sweep: the product of
        its axes' values, each checked by ``validate``."""
        out = []
        for values in product(**{a.name: sweep.values.get(a.name, list(a.default)) for a in self.axes}):
            try:  # this problem's own bounds (an axis shared with other problems may allow more)
                values = {a.name: a.coerce(values[a.name]) for a in self.axes}
            except OptionError as exc:
                raise SettingError(f"{self.name}: {exc}") from None
            setting = type(self).setting_type(**values)
            self.validate(setting)
            out.append(setting)
        return out

    def validate(self, setting: Any) -> None:
        """Raise SettingError for a setting whose values do not go together (each value alone was
        checked against its axis already)."""
        return None

    def check(self, ctx: Context) -> None:
        """Raise a clear error (e.g. DataError) if the problem cannot run at all; called before any work."""
        return None

    def prepare(self, setting: Any, ctx: Context) -> Any:
        """One-time work for a setting (data, checkpoints), shared by its cells; not timed."""
        return None

    @abc.abstractmethod
    def chunk(
        self,
        estimator: Estimator,
        setting: Any,
        prepared: Any,
        n_samples: int,
        replicates: int,
        state: Any,
        ctx: Context,
    ) -> Chunk:
        """``replicates`` independent gradient estimates, each from ``n_samples`` draws."""

    def chunk_size(self, setting: Any, n_samples: int) -> int:
        """How many replicates to compute at once (bounds memory)."""
        return 1000

    def warmup_replicates(self, setting: Any) -> int:
        """Replicates per warm-up call (at most one chunk): enough draws for a stateful estimator to
        settle (a moving-average baseline, REBAR's learned control variate) at little cost."""
        return 100

    def replicate_bytes(self, setting: Any, n_samples: int, ctx: Context) -> int:
        """Rough memory one replicate's estimate needs (bytes): the runner refuses, before any
        work, a cell whose smallest chunk cannot fit in memory. 0: not estimated."""
        return 0

    def value_scale(self, setting: Any, ctx: Context) -> float | None:
        """The magnitude of f's values at ``setting`` (float64), where the gradient can be a small difference of
        them: the bias z's rounding floor is then 64 float32 ulps of it (stats.truth_rounding), and a row says
        where float32 cannot resolve the gradient. None: the gradient's own magnitude sets the floor."""
        return None

    def outcomes(self, setting: Any) -> int | None:
        """How many values one draw can take (2^dim for dim Bernoullis), which an enumerating estimator (``exact``)
        evaluates f on in one replicate; None: continuous, or not counted."""
        return None

    def context_columns(self, ctx: Context) -> dict[str, Any]:
        """Run-wide options this problem's results depend on, as result-table columns (recorded
        in every row and compared by --resume). None beyond the sweep's own by default."""
        return {}

    def curves(self, estimator: Estimator, setting: Any, n_samples: int, ctx: Context) -> list[dict[str, Any]] | None:
        """Training-curve rows for an estimator, for problems that train a model (else None)."""
        return None

    def curve_setting(self, setting: Any) -> Any:
        """The setting a training curve depends on (settings that map to the same one share a curve)."""
        return setting

    def curve_objective(self, estimator: type[Estimator]) -> str:
        """The objective ``estimator`` trains on in this problem's training curves (recorded in each
        curve row's ``objective``): the problem's own."""
        return self.objective

    def curve_unsupported(self, estimator: type[Estimator], setting: Any, n_samples: int) -> str | None:
        """Why ``estimator`` has no training curve here (None: it has one), from its declarations:
        the plan leaves such curves out rather than train nothing."""
        return estimator.unsupported(self.family, self.curve_objective(estimator), n_samples)

    def true_gradient(self, setting: Any, ctx: Context) -> dict[str, torch.Tensor] | None:
        """{group: [P]} the exact gradient, or None where no closed form exists."""
        return None

    def true_gradient_se(self, setting: Any, ctx: Context) -> dict[str, torch.Tensor] | None:
        """{group: [P]} the standard error of ``true_gradient`` where it is a high-precision Monte Carlo
        reference rather than exact (every bias z against it counts it); None where it is exact."""
        return None

    def columns(self, setting: Any) -> dict[str, Any]:
        """The setting as result-table columns."""
        return asdict(setting)

    def setting_label(self, setting: Any) -> str:
        """A short readable label of a setting (benchmark ids, progress bars)."""
        return ",".join(f"{k}={v}" for k, v in self.columns(setting).items())


#: the kinds of problem, as rows record them (``problem_kind``)
KINDS = ("toy", "model")


def _check_problem(registry: Registry, cls: type, where: str) -> None:
    for attr in ("description", "groups", "kind", "setting_type"):
        if not hasattr(cls, attr):
            raise PluginError(f"{where}: {cls.__name__} does not set {attr}")
    if cls.kind not in KINDS:
        raise PluginError(f"{where}: {cls.__name__}.kind must be one of {', '.join(KINDS)}, got {cls.kind!r}")
    if getattr(cls, "objective", EXPECTATION) not in OBJECTIVES:
        raise PluginError(f"{where}: {cls.__name__}.objective must be one of {', '.join(OBJECTIVES)}, "
                          f"got {cls.objective!r}")
    if cls.objective == MULTI_SAMPLE and "K" not in {a.name for a in cls.axes}:
        raise PluginError(f"{where}: {cls.__name__} declares the multi-sample objective but no axis K "
                          f"(the samples in the bound)")
    try:
        axes = declared(cls.axes, cls.__name__)
    except TypeError as exc:
        raise PluginError(f"{where}: {exc}") from None
    fields = set(getattr(cls.setting_type, "__dataclass_fields__", {}))
    if fields != set(axes):
        raise PluginError(f"{where}: {cls.__name__}.setting_type must be a dataclass with one field per axis "
                          f"({', '.join(axes) or 'none'}), has {', '.join(sorted(fields)) or 'none'}")
    others = {a.name: (a, p) for p, c in {**registry._builtin, **registry._plugins}.items() if p != cls.name
              for a in c.axes}
    for axis in axes.values():
        if axis.name in others and others[axis.name][0].type is not axis.type:
            other, owner = others[axis.name]
            raise PluginError(f"{where}: axis {axis.name!r} is a {axis.type.__name__} here but a "
                              f"{other.type.__name__} in problem {owner}; rename it")


#: the problems, by name (estimators.Registry: built-ins, the ``estbench.problems`` entry points,
#: plugin files, objects handed in)
PROBLEMS = Registry("problem", Problem, "benchmarks.problems.Problem", "estbench.problems", "PROBLEMS",
                    check=_check_problem)
builtin = PROBLEMS.builtin


def product(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Cartesian product of named value lists, in the order given."""
    combos: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos
