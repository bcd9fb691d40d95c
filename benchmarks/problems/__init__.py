"""benchmarks.problems: the benchmark problems, by name (``from benchmarks import problems``).

One registry (``PROBLEMS``, an estimators.Registry as the estimators' is) holds the built-in ones,
which register where they are defined (``@builtin``), installed plugins (entry-point group
``estbench.problems``), and problems registered from a plugin file or the Python API. The built-in
modules are imported below in the order ``estbench list`` shows them (and the results table's
setting axes follow)."""

from __future__ import annotations

from estimators.identity import api_source
from estimators.options import Option

from .base import KINDS, PROBLEMS, Chunk, Context, Problem, SettingError, builtin, product

# isort: off
from .gaussian import GaussianCos, GaussianExp, GaussianProblem, GaussianQuadratic, GaussianSetting
from .discrete import BernoulliCoupled, BernoulliPolynomial, BernoulliQuadratic, CategoricalQuadratic, DiscreteProblem
from .multisample import BernoulliMultiSample, GaussianIWAE
from .vae import VAE, VAEDigits, VAEMnist, VAEProblem, VAESetting
from .binary_vae import BinaryVAE, BinaryVAEProblem, VAEDigitsBinary, VAEMnistBinary
from .categorical_vae import CategoricalVAE, VAEDigitsCategorical
from .multisample_vae import VAEDigitsBinaryMultiSample, VAEDigitsMultiSample
# isort: on
from .counting import counted

ENTRY_POINT_GROUP = PROBLEMS.group


def register(problem: Problem | type[Problem], origin: str = "Python object", source: str | None = None) -> str:
    """Make a problem class or object usable by name (a plugin file, an entry point, or the
    Python API's problems); returns its name. PluginError if it breaks the interface. ``source``: what
    results rows record as its origin (``problem_origin``; default: the class's, with a hash of its code)."""
    return PROBLEMS.register(problem, origin, source or api_source(problem, origin))


def validate(cls: object, origin: str) -> type[Problem]:
    """Check that ``cls`` implements the problem interface; PluginError naming ``origin`` otherwise."""
    return PROBLEMS.validate(cls, origin)


def defaults() -> list[str]:
    """Problems run when none is named: all but those needing user data (vae-mnist) and those that
    declare ``by_default = False`` (run by name only)."""
    return [n for n, c in PROBLEMS.classes().items()
            if not getattr(c, "needs_data_dir", False) and getattr(c, "by_default", True)]


available = PROBLEMS.available
provenance = PROBLEMS.provenance
get_class = PROBLEMS.get_class
get = PROBLEMS.get
origin = PROBLEMS.origin


__all__ = [
    "BernoulliCoupled", "BernoulliMultiSample", "GaussianIWAE",
    "BernoulliPolynomial", "BernoulliQuadratic", "BinaryVAE", "CategoricalVAE", "VAEDigitsCategorical",
    "BinaryVAEProblem", "CategoricalQuadratic", "DiscreteProblem",
    "Chunk", "Context", "GaussianCos", "GaussianExp", "GaussianProblem", "GaussianQuadratic", "GaussianSetting",
    "KINDS", "Option", "PROBLEMS", "Problem", "SettingError", "VAE", "VAEDigits", "VAEDigitsBinary", "VAEMnist",
    "VAEMnistBinary", "VAEProblem", "VAESetting", "VAEDigitsMultiSample", "VAEDigitsBinaryMultiSample",
    "available", "builtin", "provenance", "counted", "defaults", "get", "get_class", "origin", "product", "register", "validate",
]  # fmt: skip
