"""Reading a pack's header by range, as `repair index` does: one read of the pack's end, or
two when the header is larger than that read, and the same blobs a whole read finds."""

from __future__ import annotations

import asyncio
import os

import pytest

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository import RepositoryConfig, init_repository, open_repository
from bbackup.repository.blobs import PACK_TAIL_READ
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.memory import MemoryStorage

PASSWORD = "pw"


class CountingStorage(MemoryStorage):
    """A memory store that records the byte ranges read from packs."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[str, int, int | None]] = []

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if name.startswith(("data/", "tree/")):
            self.ranges.append((name, offset, length))
        return await super().get(name, offset, length)


def test_a_header_is_read_from_the_pack_end_and_matches_the_whole_pack() -> None:
    async def scenario() -> None:
        backend = CountingStorage()
        stack = open_storage("memory:", StorageOptions(memory_backend=backend))
        await init_repository(stack, PASSWORD, RepositoryConfig())
        repo = await open_repository(stack, PASSWORD, use_cache=False)
        writer = repo.new_writer()
        # Many small tree blobs: a header of ~50 bytes per blob, well over one tail read.
        for _ in range(2 * PACK_TAIL_READ // 50):
            await writer.add(writer.prepare(BlobType.TREE, os.urandom(40)))
        await writer.add(writer.prepare(BlobType.DATA, os.urandom(1000)))
        await writer.flush()
        for info in await repo.list_packs():
            backend.ranges.clear()
            whole = await backend.get(info.name)
            backend.ranges.clear()

            blobs = await repo.read_pack_header(info.name, info.size)

            assert blobs == repo.parse_pack_header(whole)
            assert all(length is not None for _, _, length in backend.ranges)
            large = info.name.startswith("tree/")
            assert len(backend.ranges) == (2 if large else 1), backend.ranges

    asyncio.run(scenario())


def test_a_truncated_pack_is_reported_not_misread() -> None:
    async def scenario() -> None:
        backend = MemoryStorage()
        stack = open_storage("memory:", StorageOptions(memory_backend=backend))
        await init_repository(stack, PASSWORD, RepositoryConfig())
        repo = await open_repository(stack, PASSWORD, use_cache=False)
        writer = repo.new_writer()
        await writer.add(writer.prepare(BlobType.DATA, os.urandom(1000)))
        await writer.flush()
        [info] = await repo.list_packs()
        data = await backend.get(info.name)
        await backend.put(info.name, data[:-10] + data[-9:])

        with pytest.raises(IntegrityError):
            await repo.read_pack_header(info.name, info.size - 1)

    asyncio.run(scenario())
