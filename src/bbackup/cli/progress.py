"""Progress reporting: a status line with totals, percentage, rate and ETA on a terminal
(stderr), `status` JSON events on stdout with --json, nothing otherwise (a pipe, a log,
`--quiet`). BBACKUP_PROGRESS_SECONDS sets how often (default 0.25 s on a terminal, 2 s
for JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bbackup.cli.output import emit_json, is_quiet
from bbackup.errors import UsageError
from bbackup.report_format import human_bytes

#: Seconds between two progress reports (a float > 0); for scripts and tests that want
#: --json status events more (or less) often.
INTERVAL_VARIABLE = "BBACKUP_PROGRESS_SECONDS"

#: The counters a sample may carry, with the total each is measured against.
_MEASURES = (
    ("bytes", "bytes_total"),
    ("packs", "packs_total"),
    ("files", "files_total"),
    ("snapshots", "snapshots_total"),
)


def progress_shown(as_json: bool) -> bool:
    """Whether progress is reported at all: with --json, or on a terminal, never under
    --quiet. Work done only for progress (the backup's totals scan) asks this first."""
    return not is_quiet() and (as_json or sys.stderr.isatty())


def progress_interval(as_json: bool) -> float:
    text = os.environ.get(INTERVAL_VARIABLE)
    if not text:
        return 2.0 if as_json else 0.25
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"{INTERVAL_VARIABLE}={text!r}: use a number of seconds above 0")
    return value


def with_estimates(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with what follows from them: `percent_done` (0-1, of the first counter
    that has a total), `bytes_per_second` and `seconds_remaining` (None while unknown)."""
    seconds = max(float(values.get("seconds", 0.0)), 1e-6)
    out = dict(values)
    out["bytes_per_second"] = round(values.get("bytes", 0) / seconds)
    out["percent_done"] = None
    out["seconds_remaining"] = None
    for done_key, total_key in _MEASURES:
        total = values.get(total_key)
        if total:
            fraction = min(values.get(done_key, 0) / total, 1.0)
            out["percent_done"] = round(fraction, 4)
            if fraction > 0 and values.get("totals_final", True):
                out["seconds_remaining"] = round(seconds * (1 - fraction) / fraction, 1)
            break
    return out


@contextlib.asynccontextmanager
async def progress_reporter(
    sample: Callable[[], dict[str, Any]], *, as_json: bool, label: str
) -> AsyncIterator[None]:
    """Report `sample()` (counters such as files, bytes, packs, with their `*_total` where
    known, and `seconds`) every so often while the body runs."""
    if not progress_shown(as_json):
        yield
        return
    interval = progress_interval(as_json)
    if as_json:
        render = None
    else:
        from rich.console import Console

        console = Console(stderr=True)
        status = console.status("")
        status.start()

        def render(values: dict[str, Any]) -> None:
            status.update(format_status(label, values))

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            values = with_estimates(sample())
            if render is None:
                emit_json({"event": "status", "action": label, **values})
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


def format_status(label: str, values: dict[str, Any]) -> str:
    """One status line: `backup: 1,204 / 3,310 files  1.2 GiB / 4.0 GiB  38%  52 MiB/s
    ETA 0:00:55`."""
    v = with_estimates(values) if "percent_done" not in values else values
    parts = [label + ":"]
    for done_key, total_key in (("snapshots", "snapshots_total"), ("files", "files_total")):
        if done_key in v:
            total = v.get(total_key)
            word = done_key
            parts.append(f"{v[done_key]:,}" + (f" / {total:,}" if total else "") + f" {word}")
    if "packs" in v:
        total = v.get("packs_total")
        parts.append(f"{v['packs']:,}" + (f" / {total:,}" if total else "") + " packs")
    done_bytes = v.get("bytes", 0)
    total_bytes = v.get("bytes_total")
    parts.append(
        human_bytes(done_bytes) + (f" / {human_bytes(total_bytes)}" if total_bytes else "")
    )
    if v.get("percent_done") is not None:
        parts.append(f"{100 * v['percent_done']:.0f}%")
    parts.append(f"{human_bytes(v.get('bytes_per_second', 0))}/s")
    if v.get("seconds_remaining") is not None:
        parts.append(f"ETA {time.strftime('%H:%M:%S', time.gmtime(v['seconds_remaining']))}")
    if v.get("errors"):
        parts.append(f"{v['errors']} errors")
    return "  ".join(parts)
