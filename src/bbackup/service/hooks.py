"""A job's `before` and `after` hooks: shell commands run with a time limit, their output
kept (the tail) for the report, killed with their whole process group when the run stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

#: The end of a hook's output kept in the report.
OUTPUT_KEPT = 2000
#: Repository passwords a hook never needs: left out of its environment, so that a hook
#: that prints its environment cannot put them in a report or a webhook body.
PASSWORD_VARIABLES = frozenset(
    {"BBACKUP_PASSWORD", "BBACKUP_FROM_PASSWORD", "BBACKUP_NEW_PASSWORD"}
)


@dataclass(frozen=True, slots=True)
class HookResult:
    exit_code: int | None  # None: it did not finish (timed out)
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exit code {self.exit_code}"


async def run_hook(command: str, *, env: Mapping[str, str], timeout_seconds: float) -> HookResult:
    """Run `command` with `/bin/sh -c`, stdout and stderr together, stdin empty."""
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if k not in PASSWORD_VARIABLES},
            **env,
        },
        # Its own process group: a timeout or a stop kills what the hook started too.
        start_new_session=True,
    )
    output = bytearray()

    async def read_until_exit() -> int:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            output.extend(chunk)
            if len(output) > 4 * OUTPUT_KEPT:
                del output[:-OUTPUT_KEPT]
        return await proc.wait()

    try:
        code = await asyncio.wait_for(read_until_exit(), timeout_seconds)
    except TimeoutError:
        _kill_group(proc.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        return HookResult(None, _tail(bytes(output)), timed_out=True)
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    return HookResult(code, _tail(bytes(output)))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(out: bytes | None) -> str:
    text = (out or b"").decode(errors="replace")
    return text[-OUTPUT_KEPT:]
