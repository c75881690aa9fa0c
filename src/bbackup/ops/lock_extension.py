"""Keeping live data locked: `locks extend` moves the retention of every object a kept
snapshot still needs (config, key files, index segments, snapshots, the packs they use)
to a full lock period from now, once that retention is about to lapse.

Requests are what it costs, so it asks as few as it can: one version listing, then a HEAD
only for objects old enough that their retention may end within the margin (an object
written at T was locked until at least T + the lock period), and a PutObjectRetention only
for those whose retention really does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from bbackup.errors import IntegrityError, UsageError
from bbackup.ops.prune_input import used_blobs
from bbackup.repository import BlobLoader, DocumentStore
from bbackup.repository.roles import PACK_PREFIXES
from bbackup.storage import ObjectLockSetting, ObjectVersion, VersionedStore, iso_time

#: The slack between the retention date a write computes and the LastModified the store
#: records when the upload ends: a pack upload on a slow link takes a while.
WRITE_SLACK_SECONDS = 3600.0

#: S3 Standard request list prices, USD per 1,000 requests (AWS us-east-1, taken
#: 2026-11): HEAD and LIST are billed as GET-class, PutObjectRetention as PUT-class.
PRICE_PER_1000 = {"GET": 0.0004, "LIST": 0.005, "PUT": 0.005}
PRICES_TAKEN = "2026-11 (AWS us-east-1)"


class LockedRepository(BlobLoader, DocumentStore, Protocol):
    """What finding the live objects needs: snapshots, their trees, the index."""


@dataclass(slots=True)
class LockExtensionReport:
    """What `locks extend` did (or, with `dry_run`, would do)."""

    setting: ObjectLockSetting
    margin_seconds: float
    now: float
    dry_run: bool = False
    live_objects: int = 0
    #: Live objects written recently enough to need no request at all.
    recent: int = 0
    #: HEAD requests made to read a retention.
    checked: int = 0
    #: Objects whose retention was extended (one PutObjectRetention each).
    extended: list[str] = field(default_factory=list)
    list_pages: int = 0
    #: Why every pack was taken as live (a damaged snapshot); None normally.
    all_packs_live: str | None = None

    @property
    def retain_until(self) -> float:
        return self.setting.retain_until(self.now)

    @property
    def requests(self) -> dict[str, int]:
        return {
            "ListObjectVersions": self.list_pages,
            "HeadObject": self.checked,
            "PutObjectRetention": 0 if self.dry_run else len(self.extended),
        }

    @property
    def cost_usd(self) -> float:
        counts = self.requests
        total = (
            counts["ListObjectVersions"] * PRICE_PER_1000["LIST"]
            + counts["HeadObject"] * PRICE_PER_1000["GET"]
            + counts["PutObjectRetention"] * PRICE_PER_1000["PUT"]
        )
        return round(total / 1000, 8)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "locks_extend",
            "dry_run": self.dry_run,
            "mode": self.setting.mode,
            "lock_days": self.setting.days,
            "margin_days": round(self.margin_seconds / 86400, 3),
            "live_objects": self.live_objects,
            "recent": self.recent,
            "checked": self.checked,
            "extended": len(self.extended),
            "retain_until": iso_time(self.retain_until),
            "requests": self.requests,
            "cost_usd": self.cost_usd,
            "prices": PRICES_TAKEN,
            "all_packs_live": self.all_packs_live,
        }


def is_live(name: str, used_packs: set[str] | None) -> bool:
    """Whether a kept snapshot needs object `name`: every object but lock documents and
    packs no snapshot uses (prune's to delete; their locks may lapse). `used_packs` None:
    which packs are used is unknown, so all are live."""
    if name.startswith("locks/"):
        return False
    if name.startswith(PACK_PREFIXES) and used_packs is not None:
        return name.rsplit("/", 1)[-1] in used_packs
    return True


def may_lapse(version: ObjectVersion, setting: ObjectLockSetting, horizon: float) -> bool:
    """Whether the retention of `version` may end before `horizon`: it was written with
    at least its LastModified plus the lock period (less the write slack), and extensions
    only move it later."""
    return setting.retain_until(version.mtime) - WRITE_SLACK_SECONDS <= horizon


async def extend_locks(
    repo: LockedRepository,
    versions: VersionedStore,
    setting: ObjectLockSetting | None,
    *,
    margin_seconds: float | None = None,
    dry_run: bool = False,
    connections: int = 16,
    now: float | None = None,
) -> LockExtensionReport:
    """Extend to `now` + the lock period the retention of every live object whose
    retention ends within `margin_seconds` of `now` (default: a third of the lock period,
    so a run every (lock period - margin) always comes before a lapse)."""
    if setting is None:
        raise UsageError(
            f"{versions.location} has no object lock: create it with "
            "`bbackup init --object-lock DURATION`"
        )
    if margin_seconds is None:
        margin_seconds = setting.seconds / 3
    if not 0 <= margin_seconds < setting.seconds:
        raise UsageError(f"--margin must be shorter than the lock period ({setting.days} days)")
    now = time.time() if now is None else now
    report = LockExtensionReport(setting, margin_seconds, now, dry_run)
    try:
        used_packs: set[str] | None = _packs_of(repo, await used_blobs(repo))
    except IntegrityError as exc:
        # A damaged snapshot hides what it uses: keep every pack locked rather than let
        # the one it needs lapse.
        used_packs = None
        report.all_packs_live = str(exc)
    current: list[ObjectVersion] = []
    listed = 0
    async for version in versions.list_versions(""):
        listed += 1
        if version.is_latest and not version.deleted:
            current.append(version)
    report.list_pages = max(1, -(-listed // 1000))  # S3 lists 1,000 versions a page
    live = [v for v in current if is_live(v.name, used_packs)]
    report.live_objects = len(live)
    horizon = now + margin_seconds
    candidates = [v for v in live if may_lapse(v, setting, horizon)]
    report.recent = len(live) - len(candidates)
    limit = asyncio.Semaphore(max(1, connections))

    async def visit(version: ObjectVersion) -> None:
        async with limit:
            retention = await versions.retention(version.name)
            report.checked += 1
            if retention.locked_at(horizon):
                return
            report.extended.append(version.name)
            if not dry_run:
                # A compliance-mode retention cannot become governance: keep its mode.
                mode = retention.mode or setting.s3_mode
                await versions.extend_retention(version.name, mode, report.retain_until)

    await asyncio.gather(*(visit(v) for v in candidates))
    report.extended.sort()
    return report


def _packs_of(repo: LockedRepository, blobs: set[bytes]) -> set[str]:
    packs = set()
    for blob in blobs:
        try:
            packs.add(repo.index.lookup(blob).pack_id)
        except IntegrityError:
            continue  # missing: `check` reports it; nothing to keep locked
    return packs
