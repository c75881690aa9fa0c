"""The backends the conformance suite runs against: local, memory and S3 over HTTP (moto)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bbackup.storage import ObjectInfo, Storage, StorageWrapper
from bbackup.storage.local import LocalStorage
from bbackup.storage.memory import MemoryStorage
from bbackup.storage.s3 import S3Storage
from s3_server import S3Bucket

T = TypeVar("T")


class OwnLoopStorage(StorageWrapper):
    """Runs every call of the wrapped storage on one background event loop.

    The conformance tests call `asyncio.run` several times on one storage, but an
    aiobotocore client belongs to the loop it was opened in; this keeps it on one loop
    from first request to `aclose`.
    """

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _on_loop(self, coro: Awaitable[T]) -> T:
        async def call() -> T:
            return await coro

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._loop))

    async def put(
        self,
        name: str,
        data: bytes | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        await self._on_loop(
            self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)
        )

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return await self._on_loop(self.inner.get(name, offset, length))

    async def stat(self, name: str) -> ObjectInfo:
        return await self._on_loop(self.inner.stat(name))

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        async def collect() -> list[ObjectInfo]:
            return [info async for info in self.inner.list(prefix, after=after, before=before)]

        for info in await self._on_loop(collect()):
            yield info

    async def delete(self, name: str) -> None:
        await self._on_loop(self.inner.delete(name))

    async def restore(self, name: str, days: int, tier: str) -> None:
        await self._on_loop(self.inner.restore(name, days, tier))

    async def aclose(self) -> None:
        try:
            await self._on_loop(self.inner.aclose())
            await self._on_loop(self._loop.shutdown_asyncgens())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend: Storage
    if request.param == "local":
        backend = LocalStorage(tmp_path / "repo")
    elif request.param == "memory":
        backend = MemoryStorage()
    else:
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        backend = OwnLoopStorage(S3Storage(bucket.bucket, "repo", endpoint_url=bucket.endpoint))
    try:
        yield backend
    finally:
        asyncio.run(backend.aclose())
