"""The results file: its columns and naming, and how it is written safely. Torch-free.

What the runner (benchmarks/) and the report (reports/) both need lives here once, beside
the declared columns (benchmarks.schema): the reference estimator's name, where the
training curves go (curves_path), writing to a temporary file and renaming
(atomic_write), appending rows (ResultWriter), and the guards below.

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
import csv
import errno
import fcntl
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .schema import (
    CHECKSUM,
    CONTENT_COLUMNS,
    CURVE_CONTENT_COLUMNS,
    TIMING_COLUMNS,
    SchemaError,
    csv_safe,
    curve_schema,
    results_schema,
    row_checksum,
)


def results_columns(axes: list[str], options: list[str] = ()) -> list[str]:
    """The results table's columns, with the setting axes ``axes`` and estimator options ``options``
    in the middle (benchmarks.schema)."""
    return results_schema(axes, options).names


def curve_columns(axes: list[str], options: list[str] = ()) -> list[str]:
    """The training-curve table's columns, with the setting axes and estimator options in the middle."""
    return curve_schema(axes, options).names


#: a problem's reference estimator unless it names another (``Problem.reference``): rows record it as
#: ``reference_estimator``, the report's ratio columns divide by its figures, and where a problem has no
#: exact gradient agreement_z compares every estimator's mean gradient with its mean
REFERENCE = "reparameterization"


def curves_path(out: str | Path) -> Path:
    """Where the training curves of a run go: results.csv -> results-training.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}-training{out.suffix or '.csv'}")



def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file in the same folder, then
    rename it over ``path``: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsFileError(ValueError):
    """A results file that cannot be written as asked; the message names it and what to do."""


def lock_path(path: str | Path) -> Path:
    """The lock file of results file ``path``: beside the file that ``path`` names, symbolic links followed,
    so that two names of one file take one lock."""
    path = _followed(path)
    return path.with_name(f".{path.name}.lock")


def _followed(path: str | Path) -> Path:
    """``path`` with its symbolic links followed; as given where it has none (messages keep the user's name)."""
    real = os.path.realpath(path)
    return Path(path) if real == os.path.abspath(path) else Path(real)


def results_target(path: str | Path, option: str = "--out") -> Path:
    """The file a results path names (symbolic links followed: the lock, the rows and a resume's rewrite all
    go to that file, never over the link); ResultsFileError for a path that names no file (empty, a folder)
    and for a file with more than one name (a hard link: a run through the other name would mix with this one)."""
    text = str(path)
    if not text.strip():
        raise ResultsFileError(f"{option} is empty; give a file name such as results.csv")
    real = _followed(text)
    if real.is_dir() or text.endswith("/") or Path(text).name in ("", ".", ".."):
        raise ResultsFileError(f"{option} {text} is a directory; give a file name such as {Path(text) / 'results.csv'}")
    with contextlib.suppress(OSError):
        if real.is_file() and (links := real.stat().st_nlink) > 1:
            raise ResultsFileError(f"{option} {text} is one of {links} names (hard links) of one file; a results file "
                                   f"is written through one name only, so that two runs cannot mix in it: copy it and "
                                   f"write to the copy")
    return real


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


def read_text(path: str | Path, what: str = "results file", newline: str | None = None) -> str:
    """A text file's contents, or ResultsFileError saying why it cannot be read as text. ``newline=""``: line
    ends as they are (the csv module's reading), not translated."""
    path = Path(path)
    try:
        with open(path, newline=newline) as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise ResultsFileError(f"{what} {path} is not a text file (binary content)") from None
    except OSError as exc:
        raise ResultsFileError(f"cannot read {what} {path}: {os_error_text(exc)}") from None


class ResultsWriteError(ResultsFileError):
    """Writing a results file failed part-way (full disk, file size limit...). The rows of the
    cells completed before are on disk; the message says so and how to continue."""


class ResultWriter:
    """Appends whole rows to a CSV file and flushes them to disk after each cell.

    The caller holds the file's writer lock (results_file.writer_lock). An OS error while
    writing becomes ResultsWriteError, naming the file."""

    def __init__(self, path: str | Path, columns: list[str], append: bool = False):
        self.path = Path(path)
        self.columns = columns
        new = not (append and has_content(self.path))
        try:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w" if new else "a", newline="")
        except OSError as exc:
            raise ResultsFileError(f"cannot write {self.path}: {os_error_text(exc)}") from None
        self._known = set(columns)
        self._writer = csv.DictWriter(self._fh, fieldnames=columns, extrasaction="raise")
        if new:
            self._guarded(self._writer.writeheader)

    def _guarded(self, write: Callable[[], Any]) -> None:
        try:
            write()
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise ResultsWriteError(
                f"writing {self.path} failed: {os_error_text(exc)}; the rows of the cells completed before are "
                f"kept: continue with --resume once it is fixed") from None

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append whole rows; SchemaError (nothing written) for a key that is not a column."""
        unknown = sorted({k for r in rows for k in r if k not in self._known})
        if unknown:
            raise SchemaError(f"a row for {self.path} has keys the results schema does not declare: "
                              f"{', '.join(map(repr, unknown))}")
        self._guarded(lambda: self._writer.writerows(self._sealed(r) for r in rows))

    def _sealed(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as written (text that a spreadsheet would run made safe), with its checksum if the table has one."""
        out = {c: csv_safe(row.get(c)) for c in self.columns}
        if self.columns[-1] == CHECKSUM:
            out[CHECKSUM] = row_checksum(out[c] for c in self.columns[:-1])
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed write was reported; flushing it again fails again
            self._fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()



__all__ = ["CONTENT_COLUMNS", "CURVE_CONTENT_COLUMNS", "REFERENCE", "TIMING_COLUMNS", "ResultWriter", "ResultsFileError",
           "ResultsWriteError", "SchemaError", "atomic_write", "check_target", "curve_columns", "curves_path",
           "has_content", "read_text", "results_columns", "results_target", "writer_lock"]
