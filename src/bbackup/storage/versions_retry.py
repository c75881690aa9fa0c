"""Retries for the versioned store's calls (`locks extend`, `repair versions`, prune's
retention reads), with the storage stack's own retry policy: the same backoff, the same
bounded time, only `Transient` errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bbackup.storage.object_lock import (
    BucketLockState,
    ObjectLockSetting,
    ObjectVersion,
    Retention,
    VersionedStore,
)
from bbackup.storage.retry import RetryingStorage


class RetryingVersions:
    """A VersionedStore whose calls are retried as `policy`'s storage calls are."""

    def __init__(self, inner: VersionedStore, policy: RetryingStorage) -> None:
        self.inner = inner
        self.policy = policy

    @property
    def location(self) -> str:
        return self.inner.location

    def set_object_lock(self, setting: ObjectLockSetting | None) -> None:
        self.inner.set_object_lock(setting)

    async def bucket_lock_state(self) -> BucketLockState:
        return await self.policy._call(self.inner.bucket_lock_state)

    async def create_locked_bucket(self) -> BucketLockState:
        return await self.policy._call(self.inner.create_locked_bucket)

    async def list_versions(self, prefix: str) -> AsyncIterator[ObjectVersion]:
        # Restarted from the beginning if it fails part-way: never a truncated listing.
        async def collect() -> list[ObjectVersion]:
            return [v async for v in self.inner.list_versions(prefix)]

        for version in await self.policy._call(collect):
            yield version

    async def get_version(
        self, name: str, version_id: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        return await self.policy._call(
            lambda: self.inner.get_version(name, version_id, offset, length)
        )

    async def retention(self, name: str) -> Retention:
        return await self.policy._call(lambda: self.inner.retention(name))

    async def extend_retention(self, name: str, mode: str, until: float) -> None:
        await self.policy._call(lambda: self.inner.extend_retention(name, mode, until))

    async def restore_version(self, name: str, version_id: str) -> None:
        await self.policy._call(lambda: self.inner.restore_version(name, version_id))

    async def noncurrent_days(self) -> int | None:
        return await self.policy._call(self.inner.noncurrent_days)
