"""A read-only view of a repository as it was at one moment (`--as-of TIME`), built from
its object versions: every object reads as its newest version written at or before that
moment, and objects deleted since are back. The normal stack (retry, limit, cache,
repository) is built on it, so every read command works unchanged.

Lock documents are live coordination between processes, not history: `locks/` passes
through to the current bucket. Everything else refuses to be written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from bbackup.errors import NotFound, UsageError
from bbackup.storage.base import ObjectInfo, Storage, in_span, list_inner
from bbackup.storage.object_lock import (
    UNLOCKED_PREFIXES,
    ObjectVersion,
    VersionedStore,
    iso_time,
)


def versions_at(versions: Iterable[ObjectVersion], as_of: float) -> dict[str, ObjectVersion]:
    """Each object's version that was current at `as_of`: its newest version or delete
    marker written at or before then (an object whose newest one is a delete marker, or
    that did not exist yet, is absent). Lock documents are left out."""
    chosen: dict[str, ObjectVersion] = {}
    for version in versions:
        if version.mtime > as_of or version.name.startswith(UNLOCKED_PREFIXES):
            continue
        best = chosen.get(version.name)
        # Listings give each key's versions newest first: of two in the same second
        # (LastModified has whole seconds on some stores) the first listed is newer.
        if best is None or version.mtime > best.mtime:
            chosen[version.name] = version
    return {name: v for name, v in chosen.items() if not v.deleted}


class ReadOnlyView(UsageError):
    """A repository opened with --as-of is read-only."""


class VersionedView:
    """The repository as it was at `as_of` (epoch seconds); see the module docstring."""

    def __init__(self, live: Storage, versions: VersionedStore, as_of: float) -> None:
        self.live = live
        self.versions = versions
        self.as_of = as_of
        self._table: dict[str, ObjectVersion] | None = None
        self._loading = asyncio.Lock()

    @property
    def location(self) -> str:
        return f"{self.live.location} (as of {iso_time(self.as_of)})"

    async def _versions(self) -> dict[str, ObjectVersion]:
        if self._table is None:
            async with self._loading:
                if self._table is None:
                    listed = [v async for v in self.versions.list_versions("")]
                    self._table = versions_at(listed, self.as_of)
        return self._table

    def _refuse(self, name: str) -> ReadOnlyView:
        return ReadOnlyView(
            f"{name}: the repository is opened --as-of {iso_time(self.as_of)}, which only "
            "reads; run `bbackup repair versions --as-of` to make that view current"
        )

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        if not name.startswith(UNLOCKED_PREFIXES):
            raise self._refuse(name)
        await self.live.put(name, data, storage_class=storage_class, if_absent=if_absent)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if name.startswith(UNLOCKED_PREFIXES):
            return await self.live.get(name, offset, length)
        version = (await self._versions()).get(name)
        if version is None:
            raise NotFound(f"{name}: no such object as of {iso_time(self.as_of)}")
        return await self.versions.get_version(name, version.version_id, offset, length)

    async def stat(self, name: str) -> ObjectInfo:
        if name.startswith(UNLOCKED_PREFIXES):
            return await self.live.stat(name)
        version = (await self._versions()).get(name)
        if version is None:
            raise NotFound(f"{name}: no such object as of {iso_time(self.as_of)}")
        return ObjectInfo(name, version.size, version.mtime)

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        if prefix.startswith(UNLOCKED_PREFIXES):
            async for info in list_inner(self.live, prefix, after, before):
                yield info
            return
        table = await self._versions()
        listed = {
            n: ObjectInfo(n, table[n].size, table[n].mtime)
            for n in table
            if n.startswith(prefix) and in_span(n, after, before)
        }
        # A listing of a span that holds locks/ (keys/ and locks/ at once) takes them live.
        for unlocked in UNLOCKED_PREFIXES:
            reached = before is None or unlocked < before
            if unlocked.startswith(prefix) and reached and after < unlocked + "\U0010ffff":
                async for info in list_inner(self.live, unlocked, after, before):
                    listed[info.name] = info
        for name in sorted(listed):
            yield listed[name]

    async def delete(self, name: str) -> None:
        if not name.startswith(UNLOCKED_PREFIXES):
            raise self._refuse(name)
        await self.live.delete(name)

    async def restore(self, name: str, days: int, tier: str) -> None:
        await self.live.restore(name, days, tier)

    async def aclose(self) -> None:
        await self.live.aclose()
