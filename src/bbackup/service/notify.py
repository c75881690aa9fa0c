"""Notifications of a run: the report POSTed as JSON to a webhook on the events the job
asks for, or healthchecks.io pings (`/start`, the check's URL on success, `/fail` on a
failure or a partial backup). A notification that cannot be sent is logged and never
fails the backup."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from bbackup.service.config import NotifySettings


def notification(
    settings: NotifySettings, event: str, report: dict[str, Any]
) -> tuple[str, bytes] | None:
    """The URL and body to POST for `event` (start, success, partial, failure), or None if
    the job does not notify on it."""
    if settings.webhook is None or event not in settings.on:
        return None
    body = json.dumps({"event": event, **report}, default=str).encode()
    if settings.style == "healthchecks":
        suffix = {"start": "/start", "success": ""}.get(event, "/fail")
        return settings.webhook + suffix, body
    return settings.webhook, body


def post(url: str, body: bytes, timeout_seconds: float) -> None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "bbackup"},
    )
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
        response.read()


async def send_notification(
    settings: NotifySettings,
    event: str,
    report: dict[str, Any],
    *,
    log: Callable[[str], None],
) -> bool:
    """Send the notification for `event` if the job wants it; False if it failed (logged)."""
    found = notification(settings, event, report)
    if found is None:
        return True
    url, body = found
    try:
        await asyncio.to_thread(post, url, body, settings.timeout_seconds)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        log(f"notification {event} to {url} failed: {reason}")
        return False
    return True
