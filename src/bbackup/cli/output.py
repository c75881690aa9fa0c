"""What the CLI writes: lines and JSON events on stdout, warnings on stderr, sizes for
people, and the one place that maps errors to a one-line message and an exit code."""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

import typer

from bbackup.errors import BbackupError, ExitCode


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


def fail(message: str, code: int, as_json: bool = False) -> None:
    message = " ".join(str(message).split())
    if as_json:
        print(
            json.dumps({"event": "error", "message": message, "exit_code": code}), file=sys.stderr
        )
    else:
        print(f"bbackup: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def echo(text: str) -> None:
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(text + "\n")


def warn_event(text: str, as_json: bool) -> None:
    """A warning on stderr: one line, or one JSON event with --json."""
    if as_json:
        text = json.dumps({"event": "warning", "message": text.removeprefix("warning: ")})
    warn(text)
