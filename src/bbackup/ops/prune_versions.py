"""What prune's deletions mean on a versioned, object-locked bucket: a delete only adds a
delete marker, the deleted pack stays billed as a noncurrent version until the bucket's
noncurrent-version rule (`lifecycle --noncurrent-days`) expires it, and not before its
retention ends. Prune reports this instead of claiming space it has not freed, and an
object the store refuses to delete because it is locked is reported, never fatal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bbackup.errors import AccessDenied
from bbackup.report_format import human_bytes
from bbackup.storage import ObjectInfo, ObjectLockSetting, Retention, VersionedStore, iso_time

DAY = 86400.0


@dataclass(slots=True)
class VersionedDeletions:
    """Prune's deletions on a versioned bucket (see the module docstring)."""

    setting: ObjectLockSetting | None
    #: Days after which the lifecycle rule expires noncurrent versions; None: no rule.
    noncurrent_days: int | None = None
    now: float = field(default_factory=time.time)
    #: Packs now hidden behind a delete marker, and their bytes.
    hidden: int = 0
    hidden_bytes: int = 0
    #: Of those, still under retention: count and the latest retention end.
    locked: int = 0
    locked_bytes: int = 0
    locked_until: float | None = None
    #: Packs the store refused to delete because of their lock (stores that refuse even a
    #: delete marker): name → retention end (epoch seconds, or None if unknown).
    refused: dict[str, float | None] = field(default_factory=dict)
    #: What a prune run would do (`prune --dry-run`): nothing was deleted.
    foreseen: bool = False

    def note_hidden(self, info: ObjectInfo, retention: Retention) -> None:
        self.hidden += 1
        self.hidden_bytes += info.size
        if retention.locked_at(self.now) and retention.until is not None:
            self.locked += 1
            self.locked_bytes += info.size
            self.locked_until = max(self.locked_until or 0.0, retention.until)

    def add(self, other: VersionedDeletions) -> None:
        """Count another prune pass's deletions in too."""
        self.hidden += other.hidden
        self.hidden_bytes += other.hidden_bytes
        self.locked += other.locked
        self.locked_bytes += other.locked_bytes
        if other.locked_until is not None:
            self.locked_until = max(self.locked_until or 0.0, other.locked_until)
        self.refused.update(other.refused)

    @property
    def freed_after(self) -> float | None:
        """When the last hidden byte stops being billed; None without a noncurrent rule
        (then never, until someone expires the versions)."""
        if self.noncurrent_days is None:
            return None
        expiry = self.now + self.noncurrent_days * DAY
        return max(expiry, self.locked_until or 0.0)

    def to_dict(self) -> dict[str, Any]:
        freed = self.freed_after
        return {
            "delete_markers": self.hidden,
            "noncurrent_bytes": self.hidden_bytes,
            "locked": self.locked,
            "locked_bytes": self.locked_bytes,
            "locked_until": iso_time(self.locked_until) if self.locked_until else None,
            "noncurrent_days": self.noncurrent_days,
            "freed_after": iso_time(freed) if freed is not None else None,
            "foreseen": self.foreseen,
            "refused": {
                name: iso_time(until) if until else None for name, until in self.refused.items()
            },
        }

    def lines(self) -> list[str]:
        """What a user reads after prune on a versioned bucket."""
        out = []
        if self.hidden:
            freed = self.freed_after
            when = (
                f"after {iso_time(freed)}"
                if freed is not None
                else "only once noncurrent versions expire: the bucket has no rule for that "
                "(bbackup lifecycle apply --noncurrent-days N)"
            )
            deleted = "packs to delete" if self.foreseen else "deleted packs"
            remain = "would remain" if self.foreseen else "remain"
            out.append(
                f"versioned bucket: {self.hidden} {deleted} ({human_bytes(self.hidden_bytes)}) "
                f"{remain} as noncurrent versions; their space is freed {when}"
            )
        if self.locked:
            out.append(
                f"{self.locked} of them ({human_bytes(self.locked_bytes)}) are under object "
                f"lock until {iso_time(self.locked_until or self.now)} at the latest: "
                "nothing can free them before"
            )
        for name, until in sorted(self.refused.items()):
            out.append(
                f"{name}: locked, not deleted; deletable after "
                f"{iso_time(until) if until else 'its retention ends'}"
            )
        return out


async def delete_versioned(
    versions: VersionedStore,
    deletions: VersionedDeletions,
    info: ObjectInfo,
    delete: Any,
) -> None:
    """Delete one pack with `delete(name)` on a versioned bucket: read its retention first
    (only with a lock setting: one HEAD), and report rather than fail if the store refuses
    because of the lock."""
    retention = Retention()
    if deletions.setting is not None:
        retention = await versions.retention(info.name)
    try:
        await delete(info.name)
    except AccessDenied:
        if not retention.locked_at(deletions.now):
            raise  # not the lock: the credential may not delete (exit 17)
        deletions.refused[info.name] = retention.until
        return
    deletions.note_hidden(info, retention)


async def foresee_versioned(
    versions: VersionedStore, setting: ObjectLockSetting | None, planned: list[ObjectInfo]
) -> VersionedDeletions:
    """What deleting `planned` would leave behind (`prune --dry-run`): their retentions
    are read (one HEAD each, with a lock setting), nothing is deleted."""
    deletions = VersionedDeletions(setting, await versions.noncurrent_days(), foreseen=True)
    for info in planned:
        retention = await versions.retention(info.name) if setting is not None else Retention()
        deletions.note_hidden(info, retention)
    return deletions
