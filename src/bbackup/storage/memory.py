"""An in-memory backend for tests: a dict of names to bytes with the full Storage contract."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from bbackup.errors import NotFound
from bbackup.storage.base import ObjectInfo, in_span


class MemoryStorage:
    """Objects in a dict; the same semantics as the real backends, none of the I/O."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, float, str]] = {}

    @property
    def location(self) -> str:
        return "memory:"

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        if if_absent and name in self.objects:
            return
        self.objects[name] = (bytes(data), time.time(), storage_class or "STANDARD")

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            data = self.objects[name][0]
        except KeyError:
            raise NotFound(f"{name}: not found") from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    async def stat(self, name: str) -> ObjectInfo:
        try:
            data, mtime, storage_class = self.objects[name]
        except KeyError:
            raise NotFound(f"{name}: not found") from None
        return ObjectInfo(name, len(data), mtime, storage_class)

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        for name in sorted(self.objects):
            if name.startswith(prefix) and in_span(name, after, before) and name in self.objects:
                data, mtime, storage_class = self.objects[name]
                yield ObjectInfo(name, len(data), mtime, storage_class)

    async def delete(self, name: str) -> None:
        self.objects.pop(name, None)

    async def restore(self, name: str, days: int, tier: str) -> None:
        if name not in self.objects:
            raise NotFound(f"{name}: not found")

    async def aclose(self) -> None:
        return None
