"""A wrapper that counts storage requests by kind, for `requests` in --json summaries."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

from bbackup.storage.base import ObjectInfo, Storage, StorageWrapper, list_inner


class CountingStorage(StorageWrapper):
    """Counts PUT, GET, HEAD, LIST, DELETE and RESTORE (archive restore request) calls and
    bytes moved.

    It sits below the retry wrapper, so every attempt that reaches the backend counts.
    A listing counts one LIST per 1000 objects, as S3 paginates it.
    """

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.counts: Counter[str] = Counter()

    def snapshot(self) -> dict[str, int]:
        keys = ("PUT", "GET", "HEAD", "LIST", "DELETE", "RESTORE", "bytes_up", "bytes_down")
        return {key: self.counts[key] for key in keys}

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        self.counts["PUT"] += 1
        self.counts["bytes_up"] += len(data)
        await self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.counts["GET"] += 1
        data = await self.inner.get(name, offset, length)
        self.counts["bytes_down"] += len(data)
        return data

    async def stat(self, name: str) -> ObjectInfo:
        self.counts["HEAD"] += 1
        return await self.inner.stat(name)

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        self.counts["LIST"] += 1
        seen = 0
        async for info in list_inner(self.inner, prefix, after, before):
            seen += 1
            if seen % 1000 == 0:
                self.counts["LIST"] += 1
            yield info

    async def delete(self, name: str) -> None:
        self.counts["DELETE"] += 1
        await self.inner.delete(name)

    async def restore(self, name: str, days: int, tier: str) -> None:
        self.counts["RESTORE"] += 1
        await self.inner.restore(name, days, tier)
