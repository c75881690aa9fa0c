"""What the CLI writes: lines and JSON events on stdout, warnings on stderr, sizes for
people, and the one place that maps errors to a one-line message and an exit code."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import typer

from bbackup.errors import BbackupError, ExitCode

#: The exit status of a command whose reader closed stdout (`bbackup ls latest | head -1`):
#: what a Unix tool killed by SIGPIPE reports (128 + 13), and no message.
EXIT_PIPE_CLOSED = 141


class error_exit:
    """Maps exceptions to a one-line message on stderr and the documented exit code."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        if exc is None or isinstance(exc, (typer.Exit, typer.Abort, SystemExit)):
            return False
        if isinstance(exc, BrokenPipeError):
            return False  # ended quietly, with 141, by the root group (cli.options)
        if isinstance(exc, KeyboardInterrupt):
            fail("interrupted", ExitCode.INTERRUPTED, self.as_json)
        if isinstance(exc, BbackupError):
            fail(exc.message, exc.exit_code, self.as_json)
        if isinstance(exc, OSError):
            fail(
                f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}",
                ExitCode.NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 1,
                self.as_json,
            )
        if os.environ.get("BBACKUP_DEBUG"):
            return False
        fail(
            f"internal error: {type(exc).__name__}: {exc} (set BBACKUP_DEBUG=1 for a traceback)",
            1,
            self.as_json,
        )
        return True  # pragma: no cover


def drop_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so that flushing what is left at
    exit does not fail again on the closed pipe and print a traceback."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests): nothing is flushed to a pipe at exit
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def fail(message: str, code: int, as_json: bool = False) -> None:
    message = " ".join(str(message).split())
    if as_json:
        print(
            json.dumps({"event": "error", "message": message, "exit_code": code}), file=sys.stderr
        )
    else:
        print(f"bbackup: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


class _Quiet:
    """Whether the running command was given --quiet (`quiet_output` sets it)."""

    on = False


def is_quiet() -> bool:
    return _Quiet.on


@contextlib.contextmanager
def quiet_output(quiet: bool) -> Iterator[None]:
    """Within: `echo` prints nothing and progress is not shown when `quiet`; errors and
    warnings (stderr) and --json events are written as ever."""
    before, _Quiet.on = _Quiet.on, quiet
    try:
        yield
    finally:
        _Quiet.on = before


def emit_json(obj: dict[str, Any] | list[Any]) -> None:
    """One JSON document on a line of stdout (an event, or `snapshots`' array)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def echo(text: str) -> None:
    """A line of the command's report on stdout (nothing under --quiet)."""
    if not _Quiet.on:
        sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(text + "\n")


def warn_event(text: str, as_json: bool) -> None:
    """A warning on stderr: one line, or one JSON event with --json."""
    if as_json:
        text = json.dumps({"event": "warning", "message": text.removeprefix("warning: ")})
    warn(text)
