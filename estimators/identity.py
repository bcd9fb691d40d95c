"""What identifies a plugin's code, recorded in every results row (``estimator_origin``,
``problem_origin``) so that ``--resume`` never mixes rows of two versions of it.

- a plugin file: a hash of its content (``plugin file x.py sha256:...``);
- a plugin module: a hash of its source files (the module's file; a package's every .py file);
- a class or object handed to the Python API: a hash of the class's source and, for an object,
  of its simple attribute values (numbers, text, tuples of them), so that two objects of one
  class with other parameters are two identities.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

#: hex digits of a code identity
DIGITS = 12


def file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:DIGITS]


def module_digest(module: object) -> str:
    """A hash of a module's source files ('' where it has none: a built-in or namespace module)."""
    file = getattr(module, "__file__", None)
    if not file:
        return ""
    path = Path(file)
    paths = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    try:
        return file_digest(*paths)
    except OSError:
        return ""


def _simple(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_simple(v) for v in value)
    return type(value).__name__  # a tensor, a module...: its type only (a repr may hold an address)


def object_digest(obj: Any) -> str:
    """A hash of a class's source (its module's where the source cannot be read) and, for an object, of its
    simple attribute values."""
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        code = inspect.getsource(cls)
    except (OSError, TypeError):
        code = f"{cls.__module__}.{cls.__qualname__} {module_digest(inspect.getmodule(cls))}"
    params = "" if isinstance(obj, type) else repr(sorted((k, _simple(v)) for k, v in vars(obj).items()))
    return hashlib.sha256(f"{code}\n{params}".encode()).hexdigest()[:DIGITS]


def api_source(obj: Any, origin: str) -> str:
    """What results rows record as the origin of a class or object handed to the Python API."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{origin} {cls.__module__}.{cls.__qualname__} sha256:{object_digest(obj)}"
