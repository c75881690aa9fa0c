"""Object lock and object versions: the repository's lock setting, what a retention is, and
the `VersionedStore` protocol a versioned, lock-capable backend (S3) offers beside the
plain Storage protocol: bucket set-up, retention reads and extensions, version listings
and reads, and copying an old version back as the current one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

#: The two S3 retention modes, as `--lock-mode` spells them.
LOCK_MODES = ("governance", "compliance")

#: Lock documents come and go with every command: they must stay deletable, so they are
#: written without a retention date.
UNLOCKED_PREFIXES = ("locks/",)


@dataclass(frozen=True, slots=True)
class ObjectLockSetting:
    """The repository's object lock: every object bbackup writes is retained `days` days
    in `mode` (recorded in the repository config at `init --object-lock`)."""

    mode: str
    days: int

    def __post_init__(self) -> None:
        if self.mode not in LOCK_MODES:
            raise ValueError(f"lock mode {self.mode!r} is not one of {', '.join(LOCK_MODES)}")
        if type(self.days) is not int or self.days < 1:
            raise ValueError("the lock duration is a whole number of days, at least 1")

    @property
    def s3_mode(self) -> str:
        return self.mode.upper()

    @property
    def seconds(self) -> int:
        return self.days * 86400

    def retain_until(self, now: float) -> float:
        """The retention date of an object written (or extended) at `now`."""
        return now + self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "days": self.days}


def is_locked_name(name: str) -> bool:
    """Whether bbackup gives the object `name` a retention date (all but lock documents)."""
    return not name.startswith(UNLOCKED_PREFIXES)


@dataclass(frozen=True, slots=True)
class Retention:
    """An object's current retention: mode ("GOVERNANCE"/"COMPLIANCE") and the end of it
    (epoch seconds); both None when the object carries none."""

    mode: str | None = None
    until: float | None = None

    def locked_at(self, moment: float) -> bool:
        return self.until is not None and self.until > moment


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One version of one object, or a delete marker (`deleted`)."""

    name: str
    version_id: str
    mtime: float
    size: int
    is_latest: bool
    deleted: bool = False
    #: The store's ETag: equal ETags of one key are equal content (single-PUT objects).
    etag: str = ""


@dataclass(frozen=True, slots=True)
class BucketLockState:
    """What a bucket offers: versioning ("Enabled", "Suspended" or "" for never) and
    object lock."""

    versioning: str
    object_lock: bool

    @property
    def versioned(self) -> bool:
        return self.versioning == "Enabled"


class VersionedStore(Protocol):
    """Versions and retention of a repository's objects, named as the Storage names them."""

    @property
    def location(self) -> str: ...

    def set_object_lock(self, setting: ObjectLockSetting | None) -> None:
        """Give every object written from now on (but lock documents) a retention date."""
        ...

    async def bucket_lock_state(self) -> BucketLockState: ...

    async def create_locked_bucket(self) -> BucketLockState:
        """Create the bucket with object lock (and so versioning) if it is missing; the
        state of the bucket either way."""
        ...

    def list_versions(self, prefix: str) -> AsyncIterator[ObjectVersion]:
        """Every version and delete marker under `prefix`."""
        ...

    async def get_version(
        self, name: str, version_id: str, offset: int = 0, length: int | None = None
    ) -> bytes: ...

    async def retention(self, name: str) -> Retention:
        """The current version's retention (one HEAD request)."""
        ...

    async def extend_retention(self, name: str, mode: str, until: float) -> None:
        """Set the current version's retention to `until` (one PutObjectRetention)."""
        ...

    async def restore_version(self, name: str, version_id: str) -> None:
        """Make a copy of version `version_id` the current version of `name`, with the
        lock setting's retention; no version is deleted."""
        ...

    async def noncurrent_days(self) -> int | None:
        """Days after which the bucket's lifecycle rules expire noncurrent versions under
        the repository's prefix; None without such a rule (or without permission)."""
        ...


def iso_time(timestamp: float) -> str:
    """A timestamp as ISO 8601 UTC to the second, for messages and --json."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_parameters(setting: ObjectLockSetting | None, name: str, now: float) -> dict[str, Any]:
    """The S3 PutObject/CopyObject parameters that give object `name`, written at `now`,
    its retention; none without a lock setting or for a lock document. (The store also
    requires a checksum header with them: S3Storage.put always sends one.)"""
    if setting is None or not is_locked_name(name):
        return {}
    return {
        "ObjectLockMode": setting.s3_mode,
        "ObjectLockRetainUntilDate": datetime.fromtimestamp(setting.retain_until(now), UTC),
    }
