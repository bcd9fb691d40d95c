"""Adapters: estimators that other libraries ship, measured through estbench's interface.

Each adapter calls its library's public API as the library's users would and turns the result into
a per-replicate gradient (estimators.base.parameter_surrogate). It does not fix the library: a bias
or a failure it finds is what the library's users get.

- :mod:`estimators.adapters.storchastic_adapter`: Storchastic's methods (``storchastic:...``)
- :mod:`estimators.adapters.pyro_adapter`: Pyro's ELBOs (``pyro:...``)

They are installed as optional extras (``pip install -c constraints.txt -e '.[storchastic]'``, ``'.[pyro]'``)
and found through the ``estbench.estimators`` entry points; without the extra, importing an adapter
module raises :class:`MissingExtra`, which the registry records so that ``estbench list`` says how
to get them.
"""

from .common import MissingExtra

__all__ = ["MissingExtra"]
