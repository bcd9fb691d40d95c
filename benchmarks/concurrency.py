"""How many cells run on this host at the same time, whoever runs them (this process, a second
estbench, a Dask cluster's workers): each running cell holds a marker file in a folder of the
host's temporary directory, named by its process id; markers of processes that have ended are
not counted (and are removed). A row records the most cells it saw running, itself included,
at its start and at its end (``concurrent_cells``): timings of cells that ran beside others on
one host are not comparable with those that ran alone."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def _folder() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"estbench-running-{uid}"
    path.mkdir(exist_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def count() -> int:
    """The cells running on this host now (markers of living processes)."""
    n = 0
    for marker in _folder().iterdir():
        try:
            pid = int(marker.name.split("-", 1)[0])
        except ValueError:
            continue
        if _alive(pid):
            n += 1
        else:
            marker.unlink(missing_ok=True)
    return n


@contextlib.contextmanager
def running_here() -> Iterator[Callable[[], int]]:
    """Mark a cell as running on this host while the block runs; yields a function giving the most
    cells seen running (this one included) at the start and, once the block is over, at its end."""
    seen = [1]
    try:
        marker = _folder() / f"{os.getpid()}-{uuid.uuid4().hex}"
        marker.touch()
        seen[0] = max(seen[0], count())
    except OSError:  # a read-only temporary directory: no count, not a failed cell
        marker = None
    try:
        yield lambda: seen[0]
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                seen[0] = max(seen[0], count())
                marker.unlink(missing_ok=True)
