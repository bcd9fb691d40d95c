"""The ``estbench`` command's entry point: the standard library only until the command line is parsed,
so that Ctrl-C at any moment, even while torch is being imported, ends in one line (exit status 130)
rather than a traceback."""

from __future__ import annotations

import signal
import sys

INTERRUPTED = 130


def main() -> int:
    # A shell starts a background job with SIGINT ignored, and Python then leaves it so: a run started
    # with `estbench ... &` could not be interrupted (kill -INT). estbench takes SIGINT as Ctrl-C always.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("estbench: interrupted while starting; nothing was run", file=sys.stderr)
        return INTERRUPTED
    try:
        return cli_main()
    except KeyboardInterrupt:  # before the command's own handler (loading plugins, parsing)
        print("estbench: interrupted; nothing was run", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
