"""Progress reporting: a rich status line on a terminal, JSON status lines with --json."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bbackup.cli.output import emit_json
from bbackup.report_format import human_bytes


@contextlib.asynccontextmanager
async def progress_reporter(
    sample: Callable[[], dict[str, Any]], *, as_json: bool, label: str
) -> AsyncIterator[None]:
    """Report `sample()` every so often while the body runs."""
    if as_json:
        interval, render = 2.0, None
    elif sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        status = console.status("")
        status.start()
        interval = 0.25

        def render(values: dict[str, Any]) -> None:
            status.update(format_status(label, values))

    else:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            values = sample()
            if render is None:
                emit_json({"event": "status", **values})
            else:
                render(values)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if render is not None:
            status.stop()


def format_status(label: str, v: dict[str, Any]) -> str:
    elapsed = max(v.get("seconds", 0.0), 1e-6)
    rate = v.get("bytes", 0) / elapsed
    parts = [
        f"{label}: {v.get('files', 0)} files",
        human_bytes(v.get("bytes", 0)),
        f"{human_bytes(rate)}/s",
    ]
    total = v.get("bytes_total")
    if total:
        done = v.get("bytes", 0)
        eta = (total - done) / rate if rate > 0 else 0
        parts.append(f"{100 * done / total:.0f}% ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
    if v.get("errors"):
        parts.append(f"{v['errors']} errors")
    return "  ".join(parts)
