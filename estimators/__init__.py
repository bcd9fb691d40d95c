"""estimators: Monte Carlo gradient estimators behind one interface (``import estimators``).

Imports torch only. :mod:`estimators.base` states the interface and what an estimator declares
(supported families and objectives, unbiasedness, f evaluations per draw); :mod:`estimators.registry`
holds the names: built-ins register where they are defined (``@builtin``), plugins through entry
points, files and objects. The built-in modules are imported here, in the order ``estbench list``
shows them.
"""

from .base import (
    ANY,
    EXPECTATION,
    MULTI_SAMPLE,
    OBJECTIVES,
    Bound,
    Estimator,
    EstimatorError,
    Function,
    Surrogate,
    evaluate,
    family_of,
    gaussian_parameters,
    parameter_surrogate,
    score_surrogate,
)
from .builtin import Reinforce, ReinforceEMA, ReinforceLOO, Reparameterization
from .discrete import ARM, DisARM, Exact, GumbelSoftmax, StickBreakingDisARM, StraightThrough
from .options import Option, OptionError
from .registry import (
    ENTRY_POINT_GROUP,
    ESTIMATORS,
    MissingExtraError,
    PluginError,
    Registry,
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
from .scores import score_delta

from .relax import Rebar, Relax  # isort: skip
from .multisample import IWAE, VIMCO, DReG, LocalDisARM  # isort: skip
from .leave_one_out import ARMS, DoubleCV  # isort: skip
from .straight_through import GST, GumbelRao, ReinMax  # isort: skip
from .sets import SumAndSample, UnorderedSet  # isort: skip

__all__ = [
    "ANY",
    "ARM",
    "ARMS",
    "DoubleCV",
    "GST",
    "GumbelRao",
    "ReinMax",
    "SumAndSample",
    "UnorderedSet",
    "ESTIMATORS",
    "EXPECTATION",
    "MULTI_SAMPLE",
    "OBJECTIVES",
    "Bound",
    "DReG",
    "IWAE",
    "LocalDisARM",
    "VIMCO",
    "Registry",
    "family_of",
    "DisARM",
    "Exact",
    "GumbelSoftmax",
    "StickBreakingDisARM",
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
    "score_delta",
    "score_surrogate",
]
