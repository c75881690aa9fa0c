"""File contents for the target of a copy: each file's source blobs are read (by the pack,
`copy_reads`), cut again with the target's chunker where its seed or sizes differ, and
stored with the target's keys, so the copy deduplicates against the target's own backups.

How a content becomes the target's depends on what the two repositories share (`CopyMode`):
the same chunker and ID key (`init --copy-chunker-params`): the blobs keep their IDs and
only those the target lacks are read; the same chunker only: each blob is hashed again
with the target's ID key; neither: the content is cut again, with the boundaries one pass
over the whole file would give.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bbackup.chunking import Chunker, MiB
from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.ops.copy_reads import SourceBlobReader
from bbackup.repository import BlobSaver

#: Plaintext read from the source per batch (many small files, or part of a large one);
#: one batch is read while the one before is stored.
BATCH_BYTES = 16 * MiB


class CopyMode(enum.Enum):
    """How blob IDs carry over from the source to the target."""

    REUSE = "reuse"  # same chunker and ID key: IDs and trees carry over unchanged
    REHASH = "rehash"  # same chunker: the same chunks, hashed with the target's ID key
    RECHUNK = "rechunk"  # another chunker: contents are cut again


def content_key(content: Sequence[bytes]) -> bytes:
    """A file content's identity in memory: the hash of its blob IDs in order."""
    return hashlib.sha256(b"".join(content)).digest()


class Rechunker:
    """Cuts one file's content, arriving a run of blobs at a time, with the target's chunker.

    The last chunk of what has arrived may be cut short by the end of the data so far, so
    it is kept back and cut again with what follows (as `Chunker.chunk_fd` does with its
    reads): the boundaries are exactly those of one pass over the whole file.
    """

    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker
        self._held = b""

    def cut(self, pieces: Sequence[bytes], *, last: bool) -> list[memoryview]:
        """The chunks complete once `pieces` follow what came before (views of one
        immutable buffer); all of them if `last`."""
        data = b"".join([self._held, *pieces])
        chunks: list[memoryview] = []
        end = 0
        for chunk in self._chunker.chunk_buffer(data):
            if not last and end + len(chunk) == len(data):
                break  # may be cut short by the data's end: held back
            chunks.append(chunk)
            end += len(chunk)
        self._held = data[end:]
        return chunks


@dataclass(slots=True)
class _Window:
    """A run of one file's source blobs that is read in one batch."""

    key: bytes
    blobs: list[bytes]
    last: bool


class ContentCopier:
    """Stores file contents of the source in the target; `copy` gives each its new blob IDs.

    `has_blob` says whether the target already holds a blob (REUSE: those are not read).
    `store_pool` (of `store_threads` threads) must be a pool of its own: `BlobSaver.put` may
    wait there for a pack slot. Its threads store the files of a batch side by side.
    """

    def __init__(
        self,
        reader: SourceBlobReader,
        mode: CopyMode,
        *,
        chunker: Chunker | None,
        raw_length: Callable[[bytes], int],
        has_blob: Callable[[bytes], bool],
        store_pool: ThreadPoolExecutor,
        store_threads: int = 1,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        if mode is CopyMode.RECHUNK and chunker is None:
            raise ValueError("re-chunking needs the target's chunker")
        self.reader = reader
        self.mode = mode
        self._chunker = chunker
        self._raw_length = raw_length
        self._has_blob = has_blob
        self._store_pool = store_pool
        self._store_threads = max(1, store_threads)
        self._counting = threading.Lock()
        self._batch_bytes = batch_bytes
        #: Plaintext bytes of source blobs, and file contents, handled so far.
        self.bytes_copied = 0
        self.files_copied = 0

    async def copy(
        self, contents: dict[bytes, list[bytes]], writer: BlobSaver
    ) -> dict[bytes, list[bytes]]:
        """The target's content for each of `contents` (content key → source blob IDs),
        every blob of it stored by `writer` or already in the target."""
        out: dict[bytes, list[bytes]] = {key: [] for key in contents}
        rechunkers: dict[bytes, Rechunker] = {}
        loop = asyncio.get_running_loop()
        batches = self._batches(contents)
        batch = next(batches, None)
        fetch = asyncio.ensure_future(self._read(batch)) if batch else None
        try:
            while batch is not None and fetch is not None:
                plain = await fetch
                following = next(batches, None)
                fetch = asyncio.ensure_future(self._read(following)) if following else None
                await asyncio.gather(
                    *(
                        loop.run_in_executor(
                            self._store_pool, self._store, group, plain, writer, out, rechunkers
                        )
                        for group in self._groups(batch)
                    )
                )
                batch = following
        finally:
            if fetch is not None and not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
        if self.mode is CopyMode.REUSE:
            return dict(contents)
        return out

    def _batches(self, contents: dict[bytes, list[bytes]]) -> Iterator[list[_Window]]:
        """Windows of the contents in file order, grouped up to the batch size."""
        batch: list[_Window] = []
        size = 0
        for key, blobs in contents.items():
            if self.mode is CopyMode.REUSE:
                blobs = [b for b in blobs if not self._has_blob(b)]
                if not blobs:
                    continue
            window: list[bytes] = []
            for i, blob_id in enumerate(blobs):
                window.append(blob_id)
                size += self._raw_length(blob_id)
                last = i == len(blobs) - 1
                if last or size >= self._batch_bytes:
                    batch.append(_Window(key, window, last))
                    window = []
                if size >= self._batch_bytes:
                    yield batch
                    batch, size = [], 0
        if batch:
            yield batch

    def _groups(self, batch: list[_Window]) -> list[list[_Window]]:
        """The batch split for the store threads, each file's windows in one group (they
        are cut in order); a file's next windows come in a later batch."""
        threads = self._store_threads
        groups: list[list[_Window]] = [[] for _ in range(threads)]
        for window in batch:
            groups[hash(window.key) % threads].append(window)
        return [group for group in groups if group]

    async def _read(self, batch: list[_Window]) -> dict[bytes, bytes]:
        return await self.reader.read_blobs(b for window in batch for b in window.blobs)

    def _store(
        self,
        batch: list[_Window],
        plain: dict[bytes, bytes],
        writer: BlobSaver,
        out: dict[bytes, list[bytes]],
        rechunkers: dict[bytes, Rechunker],
    ) -> None:
        """Cut (where needed), hash, compress, seal and pack one batch (the store thread)."""
        for window in batch:
            pieces = [plain[b] for b in window.blobs]
            with self._counting:
                self.bytes_copied += sum(map(len, pieces))
                self.files_copied += window.last
            if self.mode is CopyMode.RECHUNK:
                assert self._chunker is not None
                rechunker = rechunkers.setdefault(window.key, Rechunker(self._chunker))
                chunks: Sequence[bytes | memoryview] = rechunker.cut(pieces, last=window.last)
                if window.last:
                    del rechunkers[window.key]
            else:
                chunks = pieces
            ids = out[window.key]
            for i, chunk in enumerate(chunks):
                prepared = writer.prepare(BlobType.DATA, chunk)
                if self.mode is CopyMode.REUSE and prepared.blob_id != window.blobs[i]:
                    raise IntegrityError(
                        f"blob {window.blobs[i].hex()[:16]}: the target's ID key gives it "
                        "another ID"
                    )
                writer.put(prepared)
                ids.append(prepared.blob_id)
