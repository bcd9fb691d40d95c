"""Declared options: how an estimator (and a problem, for its setting axes) states the values it
takes, so that the command line, the sweep file, validation and the results columns come from
the declaration and nothing else. Torch-free."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class OptionError(ValueError):
    """A value an option does not accept; the message names the option, the value and what is allowed."""


@dataclass(frozen=True)
class Option:
    """One declared option (of an estimator) or setting axis (of a problem).

    name:    the command-line option ``--name`` (underscores become dashes), the sweep-file key
             and the results column
    type:    float, int or str
    default: the values used when none is given (a problem sweeps all of them)
    help:    one line for ``--help``
    check:   returns what is wrong with a value (a phrase such as "must be > 0"), or None
    choices: the only values allowed, if any
    per_coordinate: a sweep-file entry may be a list of numbers, one per coordinate
    report:  the values the default report (``estbench report``) sweeps this axis or option
             over, the others at their defaults (empty: not swept there); ``report_quick`` the
             values of ``estbench report --quick``
    """

    name: str
    type: type
    default: tuple[Any, ...]
    help: str = ""
    check: Callable[[Any], str | None] | None = None
    choices: tuple[Any, ...] | None = None
    per_coordinate: bool = False
    report: tuple[Any, ...] = ()
    report_quick: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise TypeError(f"option name must be an identifier, got {self.name!r}")
        if self.type not in (float, int, str):
            raise TypeError(f"option {self.name!r}: type must be float, int or str, got {self.type!r}")
        if not isinstance(self.default, tuple) or not self.default:
            raise TypeError(f"option {self.name!r}: default must be a non-empty tuple of values")

    def coerce(self, value: Any) -> Any:
        """``value`` as this option's type, checked; OptionError naming the option otherwise."""
        if self.per_coordinate and isinstance(value, (list, tuple)):
            if not value:
                raise OptionError(f"{self.name} has an empty list of per-coordinate values")
            inner = [v for v in value if isinstance(v, (list, tuple, dict))]
            if inner:
                raise OptionError(f"{self.name}: a per-coordinate list holds numbers, not lists; got {inner[0]!r} in "
                                  f"{list(value)!r} (a sweep of vectors is a list of lists: {self.name} = [[1.0, 2.0]])")
            return tuple(self.coerce(v) for v in value)
        if self.type is str:
            if not isinstance(value, str):
                raise OptionError(f"{self.name} must be a string, got {value!r}")
            if value[:1] in ("=", "@", "+", "-") or any(not c.isprintable() for c in value):
                raise OptionError(f"{self.name} {value!r} is not a valid value: a text value may not begin with = @ + - "
                                  f"(a spreadsheet runs it as a formula) nor hold control characters")
        else:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (self.type is int and not float(value).is_integer()):
                raise OptionError(f"{self.name} must be {'an integer' if self.type is int else 'a number'}, got {value!r}")
            value = self.type(value)
            if self.type is int and not -INT_LIMIT <= value < INT_LIMIT:
                raise OptionError(f"{self.name} must be between -2^63 and 2^63 - 1 (a 64-bit integer), got {value}")
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise OptionError(f"{self.name} {problem}, got {self.name}={_show(value)}")
        return value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


#: an integer option is a 64-bit integer (a seed, a size): torch holds no larger one
INT_LIMIT = 1 << 63


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- checks -----------------------------------------------------------------------------

def finite(value: float) -> str | None:
    return None if math.isfinite(value) else "must be a finite number"


def positive(value: float) -> str | None:
    if not value > 0:
        return "must be > 0"
    return None if math.isfinite(value) else "must be finite"


def at_least(low: float, high: float | None = None) -> Callable[[Any], str | None]:
    """value >= low (and <= high, a bound on what the problem can hold, where given)."""

    def check(value: Any) -> str | None:
        if not value >= low:
            return f"must be >= {low:g}"
        return None if high is None or value <= high else f"must be <= {high:g}"

    return check


def between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


def declared(options: Sequence[Option], owner: str) -> dict[str, Option]:
    """Options by name; TypeError naming ``owner`` for a duplicate name or a non-Option."""
    out: dict[str, Option] = {}
    for o in options:
        if not isinstance(o, Option):
            raise TypeError(f"{owner}: {o!r} is not an estimators.Option")
        if o.name in out:
            raise TypeError(f"{owner}: option {o.name!r} is declared twice")
        out[o.name] = o
    return out
