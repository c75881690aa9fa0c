"""Leave the process as soon as a command is done, without the interpreter's teardown.
Off with BBACKUP_NO_FAST_EXIT=1 (the interpreter then exits as usual).

By the time a command returns, its repository writes are complete, its lock is released,
its worker threads are joined and its files closed; what the teardown does after that is
free every object and module one by one: measured ~30 ms of an unchanged backup's
~0.5 s, more after a restore that held a large index (docs/bench/history.md).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

#: The switch: set to 1 to exit through the interpreter's normal shutdown.
DISABLE_VARIABLE = "BBACKUP_NO_FAST_EXIT"


def exit_status(code: object) -> int:
    """The exit status `sys.exit(code)` gives: None is 0, an int itself, anything else is
    printed to stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object) -> NoReturn:
    """End the process with `code` as `sys.exit` would: flush stdout and stderr, then leave
    without the interpreter's teardown. Output whose reader has gone (`| head`) gives 141,
    what a Unix tool killed by SIGPIPE reports; output that cannot be flushed otherwise
    gives 120, as the interpreter's own shutdown would."""
    if os.environ.get(DISABLE_VARIABLE) == "1":
        raise SystemExit(code)
    status = exit_status(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            status = status or 141
        except (OSError, ValueError):  # a full disk, or a stream closed already
            status = status or 120
    os._exit(status)
