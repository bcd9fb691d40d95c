"""The ``estbench`` command's entry point: the standard library only until the command line is parsed,
so that Ctrl-C at any moment, even while torch is being imported, ends in one line (exit status 130)
rather than a traceback."""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130
_SIGINT = []  # a SIGINT received while starting


def _on_sigint(signum: int, frame: object) -> None:
    _SIGINT.append(signum)
    raise KeyboardInterrupt


def main() -> int:
    # A shell starts a background job with SIGINT ignored, and Python then leaves it so: a run started
    # with `estbench ... &` could not be interrupted (kill -INT). estbench takes SIGINT as Ctrl-C always.
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        from .cli import main as cli_main
    except BaseException:  # noqa: BLE001 - Ctrl-C, or what it left behind: a C extension's import cut short by the
        # KeyboardInterrupt can fail again as an ImportError ("cannot load module more than once per process")
        if not _SIGINT:
            raise
        print("estbench: interrupted while starting; nothing was run", file=sys.stderr)
        # An import interrupted inside C code (torch's) can leave the interpreter marked as ended by an unhandled
        # Ctrl-C, and it would then kill itself with SIGINT at exit: nothing was started, so end here.
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    if _SIGINT:  # a Ctrl-C whose KeyboardInterrupt an import swallowed (torch's C extension, importing numpy, does)
        print("estbench: interrupted while starting; nothing was run", file=sys.stderr)
        return INTERRUPTED
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = cli_main()
    except KeyboardInterrupt:  # before the command's own handler (loading plugins, parsing)
        print("estbench: interrupted; nothing was run", file=sys.stderr)
        code = INTERRUPTED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done or stopped: a late Ctrl-C changes nothing now
    return code


if __name__ == "__main__":
    sys.exit(main())
