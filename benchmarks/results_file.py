"""Guarding a results file: one writer at a time, nothing overwritten unasked. Torch-free.

A run that writes a results file (``estbench run --out``, ``estbench report``) first
takes :func:`writer_lock` on it, then checks the target with :func:`check_target`:

- **One writer.** The lock is an OS lock (``fcntl.flock``) on a small file beside the
  results, ``.<name>.lock``, that holds the writer's process id and command line. The
  operating system drops the lock when its process ends, however it ends (a SIGKILL,
  a crash), so a lock file left behind never blocks a later run; a second writer while
  the first lives gets one line naming the file and the process that holds it.
- **Nothing overwritten unasked.** An existing, non-empty file is written over only with
  ``overwrite`` (``--overwrite``) and continued only with ``resume`` (``--resume``).
- **Only regular files.** A directory, a device (``/dev/null``, ``/dev/full``) or a folder
  that cannot be written is refused before any work, in one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import Iterator


class ResultsFileError(ValueError):
    """A results file that cannot be written as asked; the message names it and what to do."""


def lock_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def os_error_text(exc: OSError) -> str:
    """'Permission denied', 'No space left on device'... (the OS's words, no errno noise)."""
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        return "another process"
    pid, _, cmd = text.partition("\n")
    if not pid.strip().isdigit():
        return "another process"
    cmd = " ".join(cmd.split())
    return f"process {pid.strip()}" + (f" ({cmd[:120]})" if cmd else "")


@contextlib.contextmanager
def writer_lock(path: str | Path) -> Iterator[None]:
    """Hold the write lock of results file ``path`` (and its companion files) for the block.

    Raises ResultsFileError at once if another process holds it, naming that process.
    """
    path = Path(path)
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsFileError(f"cannot create the folder {lock.parent} for {path}: {os_error_text(exc)}") from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsFileError(f"cannot write {path}: {os_error_text(exc)} "
                                   f"(creating its lock file {lock.name} in {lock.parent})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ResultsFileError(f"{path} is being written by {holder}; wait for it to finish, "
                                   f"or write to another --out") from None
        # The holder before us may have removed the lock file after we opened it: then we
        # locked an orphan, and must lock the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{' '.join(sys.argv)}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without its note; a second writer is then told "another process"
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still locked: a waiting opener sees the inode change and retries
        os.close(fd)


def has_content(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() and path.stat().st_size > 0


def check_target(path: str | Path, resume: bool = False, overwrite: bool = False, option: str = "--out") -> None:
    """Refuse, with one line, a results path that is not a writable regular file, and an existing
    non-empty file unless the caller resumes it or was asked to overwrite it."""
    path = Path(path)
    if path.is_dir():
        raise ResultsFileError(f"{option} {path} is a directory; give a file name such as {path / 'results.csv'}")
    if path.exists() and not path.is_file():
        raise ResultsFileError(f"{option} {path} is not a regular file (a results file must be one)")
    if has_content(path):
        if not (resume or overwrite):
            raise ResultsFileError(f"{option} {path} already exists ({path.stat().st_size} bytes); add --resume to "
                                   f"continue it, --overwrite to replace it, or choose another {option}")
        if not os.access(path, os.W_OK):
            raise ResultsFileError(f"cannot write {path}: Permission denied")
    elif not os.access(path.parent if str(path.parent) else Path("."), os.W_OK):
        raise ResultsFileError(f"cannot write {path}: Permission denied (folder {path.parent})")


def read_text(path: str | Path, what: str = "results file") -> str:
    """A text file's contents, or ResultsFileError saying why it cannot be read as text."""
    path = Path(path)
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise ResultsFileError(f"{what} {path} is not a text file (binary content)") from None
    except OSError as exc:
        raise ResultsFileError(f"cannot read {what} {path}: {os_error_text(exc)}") from None
