"""What a run's processes make once and share: the model problems' trained checkpoints.

A process makes each checkpoint once and keeps it (``functools.lru_cache`` in the problem). The processes of
one run on one host (a local cluster's workers, and the client, which runs the confirmation reruns) can also
share them through a folder: whichever process needs a checkpoint first makes it, under an exclusive lock on
its file, and the others wait for it and read it. So a run trains each checkpoint once, and every cell of the
run, whichever process measures it, starts from the same weights. Without a folder (a serial run, a remote
cluster) each process makes its own. Where file locks are not available (``fcntl``: not on Windows) there is
no sharing either.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_FOLDER: list[str | None] = [None]


def share(folder: str | None) -> None:
    """Share checkpoints through ``folder`` from now on (None: stop sharing); a worker calls it with its job's."""
    _FOLDER[0] = folder if fcntl is not None else None


def folder() -> str | None:
    """The folder this process shares checkpoints through, or None."""
    return _FOLDER[0]


@contextlib.contextmanager
def sharing() -> Iterator[str | None]:
    """A folder for one run's processes on this host, made (and removed with what is in it) here, or the one
    an enclosing ``sharing()`` made; None where there are no file locks."""
    if fcntl is None or _FOLDER[0] is not None:
        yield _FOLDER[0]
        return
    with tempfile.TemporaryDirectory(prefix="estbench-shared-") as made:
        share(made)
        try:
            yield made
        finally:
            share(None)


def made_once(what: tuple[Any, ...], make: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``make()``, or the tensors another process of this run made for the same ``what`` (a tuple of plain
    values that names it fully: the problem, its settings, the steps, the seed)."""
    where = _FOLDER[0]
    if where is None:
        return make()
    name = hashlib.sha256(repr(what).encode()).hexdigest()[:24]
    path = Path(where) / f"{name}.pt"
    with open(Path(where) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if make() raises
        if path.exists():
            return torch.load(path, weights_only=True)
        made = make()
        part = path.with_suffix(".part")
        torch.save(made, part)
        os.replace(part, path)
        return made
