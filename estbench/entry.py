"""The ``estbench`` command's entry point: the standard library only until the command line is parsed,
so that Ctrl-C at any moment, even while torch is being imported, ends in one line (exit status 130)
rather than a traceback."""

from __future__ import annotations

import os
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
        # An import interrupted inside C code (torch's) can leave the interpreter marked as ended by an unhandled
        # Ctrl-C, and it would then kill itself with SIGINT at exit: nothing was started, so end here.
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    try:
        code = cli_main()
    except KeyboardInterrupt:  # before the command's own handler (loading plugins, parsing)
        print("estbench: interrupted; nothing was run", file=sys.stderr)
        code = INTERRUPTED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done or stopped: a late Ctrl-C changes nothing now
    return code


if __name__ == "__main__":
    sys.exit(main())
