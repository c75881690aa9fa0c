"""Reading the source repository's blobs for `copy`: the one way copy reads them (trees and
file contents alike), a pack at a time with restore's ranged-read planning, decrypted and
verified in worker threads.

Packs in an archive tier need a restore request and a wait before they can be read:
`packs_to_copy` says which data packs the snapshots to copy need, and the copier hands
them to its `before_reads` (the CLI's thaw) before it reads anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bbackup.errors import IntegrityError, NotFound
from bbackup.ops.restore_reads import NeededBlob, PackRead, plan_reads
from bbackup.ops.restore_select import PathFilter
from bbackup.ops.thaw import packs_for_restore
from bbackup.repository import BlobLoader, pack_object_name
from bbackup.snapshot.model import Snapshot


async def packs_to_copy(
    source: BlobLoader,
    snapshots: Sequence[Snapshot],
    target_has: Callable[[bytes], bool] | None = None,
) -> set[str]:
    """The data packs of `source` holding the file contents of `snapshots`, leaving out
    blobs `target_has` (when blob IDs carry over, what the target holds is not read).
    Only trees are read, from the hot tier; a blob the index lacks is left to the copy,
    which reports it."""
    packs: set[str] = set()
    for snapshot in snapshots:
        packs |= await packs_for_restore(source, snapshot, PathFilter(), leave_out=target_has)
    return packs


class SourceBlobReader:
    """Fetches blobs of the source repository by the pack and hands back their plaintext.

    `max_gap` and `read_size` are restore's (see `Restorer`): how far apart blobs of one
    pack may lie and still be fetched with one ranged read, and the most one read spans.
    """

    def __init__(
        self,
        source: BlobLoader,
        *,
        connections: int,
        max_gap: int,
        read_size: int | None,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.source = source
        self.max_gap = max_gap
        self.read_size = read_size
        self.connections = max(1, connections)
        self._pool = pool
        #: Bytes fetched from the source's packs so far.
        self.bytes_read = 0

    async def read_blobs(self, blob_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The plaintext of every blob in `blob_ids`, each verified against its ID;
        IntegrityError (naming the pack) if one is missing from the index, damaged or
        truncated."""
        by_pack: dict[str, list[NeededBlob]] = {}
        lookup = self.source.index.lookup
        for blob_id in dict.fromkeys(blob_ids):
            entry = lookup(blob_id)  # IntegrityError if the source's index lacks it
            by_pack.setdefault(entry.pack_id, []).append(NeededBlob(blob_id, entry))
        reads = [
            read
            for blobs in by_pack.values()
            for read in plan_reads(blobs, max_gap=self.max_gap, max_bytes=self.read_size)
        ]
        plain: dict[bytes, bytes] = {}
        if not reads:
            return plain
        loop = asyncio.get_running_loop()
        queue = iter(reads)

        async def worker() -> None:
            for read in queue:  # shared: each read is taken by one worker
                data = await self._fetch(read)
                plain.update(await loop.run_in_executor(self._pool, self._decode, read, data))

        workers = [
            asyncio.ensure_future(worker()) for _ in range(min(self.connections, len(reads)))
        ]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # the first failure, if any
        finally:
            for task in workers:  # after a failure, stop reading at once
                task.cancel()
            await asyncio.wait(workers)
        return plain

    async def _fetch(self, read: PackRead) -> bytes:
        first = read.blobs[0].entry
        name = pack_object_name(first.blob_type, first.pack_id)
        try:
            data = await self.source.read_pack(name, read.start, read.end - read.start)
        except NotFound:
            raise IntegrityError(f"{name}: pack is missing") from None
        self.bytes_read += len(data)
        if len(data) != read.end - read.start:
            raise IntegrityError(f"{name}: pack is truncated")
        return data

    def _decode(self, read: PackRead, data: bytes) -> dict[bytes, bytes]:
        """Open and verify each blob of one read (a worker thread)."""
        view = memoryview(data)
        start = read.start
        name = pack_object_name(read.blobs[0].entry.blob_type, read.blobs[0].entry.pack_id)
        out = {}
        for blob in read.blobs:
            entry = blob.entry
            sealed = view[entry.offset - start : entry.offset - start + entry.length]
            try:
                out[blob.blob_id] = self.source.decode_blob(blob.blob_id, entry, sealed)
            except IntegrityError as exc:
                raise IntegrityError(f"{name}: {exc}") from None
        return out
