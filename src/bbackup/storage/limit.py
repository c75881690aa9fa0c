"""A wrapper that bounds the number of storage calls in flight (`--connections`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bbackup.storage.base import ObjectInfo, Storage, StorageWrapper, list_inner


class LimitedStorage(StorageWrapper):
    """At most `connections` calls run at once; the rest wait their turn."""

    def __init__(self, inner: Storage, connections: int) -> None:
        super().__init__(inner)
        self.connections = max(1, connections)
        self._slots = asyncio.Semaphore(self.connections)

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        async with self._slots:
            await self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        async with self._slots:
            return await self.inner.get(name, offset, length)

    async def stat(self, name: str) -> ObjectInfo:
        async with self._slots:
            return await self.inner.stat(name)

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        # A listing holds one slot for its whole length: it is one paginated request stream.
        async with self._slots:
            async for info in list_inner(self.inner, prefix, after, before):
                yield info

    async def delete(self, name: str) -> None:
        async with self._slots:
            await self.inner.delete(name)

    async def restore(self, name: str, days: int, tier: str) -> None:
        async with self._slots:
            await self.inner.restore(name, days, tier)
