"""Byte counts, times and durations as report lines show them ("1.70 GiB", "2026-12-08
07:12 UTC", "24h"): pure formatting, shared by the CLI and the reports of ops."""

from __future__ import annotations

from datetime import UTC, datetime


def human_bytes(n: float) -> str:
    """Bytes in binary units: "512 B", "1.70 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


def utc_minute(epoch: float) -> str:
    """An epoch time to the minute, in UTC, rounded up (so "after" it is true)."""
    return datetime.fromtimestamp(epoch + 59, UTC).strftime("%Y-%m-%d %H:%M UTC")


def human_duration(seconds: float) -> str:
    """A grace period as given on the command line: 24h, 90min, 2d, 30s."""
    seconds = int(seconds)
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
