"""estbench.estimators: Monte Carlo gradient estimators behind one interface.

Imports torch only. See :mod:`estimators.base` for the interface and
:mod:`estimators.registry` for names and plugins.
"""

from .base import (
    Estimator,
    EstimatorError,
    Function,
    Surrogate,
    evaluate,
    gaussian_parameters,
    parameter_surrogate,
    score_surrogate,
)
from .builtin import Reinforce, ReinforceEMA, ReinforceLOO, Reparameterization
from .discrete import ARM, DisARM, Exact, GumbelSoftmax, StraightThrough
from .options import Option, OptionError
from .registry import (
    ENTRY_POINT_GROUP,
    MissingExtraError,
    PluginError,
    UnknownNameError,
    available,
    get,
    get_class,
    load_plugin,
    missing,
    origin,
    provenance,
    register,
    register_object,
)
from .relax import Rebar, Relax

__all__ = [
    "ARM",
    "DisARM",
    "Exact",
    "GumbelSoftmax",
    "StraightThrough",
    "ENTRY_POINT_GROUP",
    "MissingExtraError",
    "Estimator",
    "EstimatorError",
    "Function",
    "Option",
    "OptionError",
    "PluginError",
    "Rebar",
    "Reinforce",
    "Relax",
    "ReinforceEMA",
    "ReinforceLOO",
    "Reparameterization",
    "Surrogate",
    "UnknownNameError",
    "available",
    "evaluate",
    "gaussian_parameters",
    "parameter_surrogate",
    "get",
    "get_class",
    "load_plugin",
    "missing",
    "origin",
    "provenance",
    "register",
    "register_object",
    "score_surrogate",
]
