"""An index segment deleted between the listing and its read (a prune beside the reader
writes the segment that supersedes it, then deletes it) is not an error: the reader lists
`index/` again and reads the new segment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from bbackup.crypto.aead import BlobType
from bbackup.repository import RepositoryConfig, init_repository, open_repository
from bbackup.repository.index_segment import INDEX_KIND, IndexSegment
from bbackup.storage import ObjectInfo, Storage, StorageOptions, open_storage
from bbackup.storage.base import StorageWrapper
from bbackup.storage.memory import MemoryStorage

PASSWORD = "pw"


class PruneAfterFirstListing(StorageWrapper):
    """Runs `prune` right after the first listing of `index/` has been read."""

    def __init__(self, inner: Storage, prune: Callable[[], Awaitable[None]]) -> None:
        super().__init__(inner)
        self.prune = prune
        self.index_listings = 0

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self._list(prefix)

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in self.inner.list(prefix):
            yield info
        if prefix == "index/":
            self.index_listings += 1
            if self.index_listings == 1:
                await self.prune()


def test_segments_a_prune_deletes_after_the_listing_are_read_from_the_new_one() -> None:
    backend = MemoryStorage()
    plain = open_storage("memory:", StorageOptions(memory_backend=backend))
    asyncio.run(init_repository(plain, PASSWORD, RepositoryConfig()))

    async def scenario() -> None:
        writer_repo = await open_repository(plain, PASSWORD, use_cache=False)
        blob_ids = []
        for payload in (b"first blob", b"second blob"):  # one index segment each
            writer = writer_repo.new_writer()
            prepared = writer.prepare(BlobType.DATA, payload)
            await writer.add(prepared)
            await writer.flush()
            blob_ids.append(prepared.blob_id)
        pruner = await open_repository(plain, PASSWORD, use_cache=False)
        old = pruner.index_segments
        assert len(old) == 2
        packs = []
        for name in old:
            packs += IndexSegment.from_bytes(await pruner.load_document(name, INDEX_KIND)).packs
        merged = IndexSegment(packs, [name.rsplit("/", 1)[-1] for name in old])

        async def prune() -> None:
            await pruner.write_superseding_segment(merged)  # new segment first, then deletes

        wrapped: list[PruneAfterFirstListing] = []

        def wrap(inner: Storage) -> Storage:
            wrapped.append(PruneAfterFirstListing(inner, prune))
            return wrapped[0]

        stack = open_storage("memory:", StorageOptions(memory_backend=backend, wrap_backend=wrap))
        reader = await open_repository(stack, PASSWORD, use_cache=False)

        assert all(reader.index.has(blob_id) for blob_id in blob_ids)
        assert wrapped[0].index_listings == 2  # it listed again
        assert len(reader.index_segments) == 1

    asyncio.run(scenario())
