"""File content for `bbackup mount`: which blobs a byte range of a file needs, and a small
cache of decoded blobs shared by libfuse's threads, so that reading a range of a large
file fetches only the blobs that hold it, each once while it stays cached. A reader that
goes front to back gets the next few blobs fetched ahead of it (the kernel asks for only
128 KiB at a time, and a remote store answers each request after a round trip).

The threads that call in are not the repository's: storage reads go to its event loop
through a `LoopCaller`; decryption and decompression run in the calling thread.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bbackup.errors import IntegrityError
from bbackup.repository import BlobLoader, IndexEntry, pack_object_name

T = TypeVar("T")

#: Decoded content held at once: a few largest chunks (8 MiB), as restic's mount holds.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: Blobs fetched ahead of a reader going front to back, and fetches ahead at most at once
#: (for all readers): 4 average chunks, well inside the cache.
READ_AHEAD_BLOBS = 4
MAX_READS_AHEAD = 8


class LoopCaller(Protocol):
    """Runs a coroutine on the repository's event loop and waits for its result (from a
    thread that is not the loop's)."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


@dataclass(frozen=True, slots=True)
class FileLayout:
    """A file's content blobs and where each ends in the file (`ends[i]` is the offset
    just past blob i), from the index's plaintext lengths."""

    blob_ids: tuple[bytes, ...]
    ends: tuple[int, ...]

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0

    def spans(self, offset: int, size: int) -> list[tuple[bytes, int, int]]:
        """The (blob ID, start, stop) slices of blobs that hold bytes [offset, offset +
        size) of the file, in file order; nothing past the end."""
        stop = min(offset + size, self.size)
        out: list[tuple[bytes, int, int]] = []
        i = bisect.bisect_right(self.ends, offset)
        while offset < stop:
            start_of_blob = self.ends[i - 1] if i else 0
            take = min(stop, self.ends[i])
            out.append((self.blob_ids[i], offset - start_of_blob, take - start_of_blob))
            offset = take
            i += 1
        return out

    def blobs_from(self, offset: int, count: int) -> tuple[bytes, ...]:
        """The blob that holds byte `offset` and the `count` - 1 after it."""
        i = bisect.bisect_right(self.ends, offset)
        return self.blob_ids[i : i + count]


def file_layout(loader: BlobLoader, blob_ids: list[bytes]) -> FileLayout:
    """The layout of a file with these content blobs; IntegrityError if one is not in the
    index. Call it on the loop's thread, which owns the index."""
    ends: list[int] = []
    end = 0
    for blob_id in blob_ids:
        end += loader.index.lookup(blob_id).raw_length
        ends.append(end)
    return FileLayout(tuple(blob_ids), tuple(ends))


@dataclass(slots=True)
class FetchStats:
    """What the blob cache read from the repository: content blobs and their stored bytes."""

    blobs: int = 0
    bytes: int = 0
    cache_hits: int = 0


class BlobCache:
    """Decoded content blobs, the least recently used dropped past `capacity` bytes. A blob
    asked for by several threads at once is fetched once; the others wait for it."""

    def __init__(
        self, loader: BlobLoader, call: LoopCaller, capacity: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self._loader = loader
        self._call = call
        self._capacity = capacity
        self._held = 0
        self._blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self._fetching: dict[bytes, Future[bytes]] = {}
        self._lock = threading.Lock()
        self._ahead: ThreadPoolExecutor | None = None
        self._reading_ahead = 0
        self.stats = FetchStats()

    def read_ahead(self, blob_ids: Iterable[bytes]) -> None:
        """Start fetching these blobs in the background unless held, being fetched, or
        MAX_READS_AHEAD fetches ahead are running. A failure is left for the reader who
        asks for the blob to meet (and report)."""
        with self._lock:
            for blob_id in blob_ids:
                if blob_id in self._blobs or blob_id in self._fetching:
                    continue
                if self._reading_ahead >= MAX_READS_AHEAD:
                    break
                if self._ahead is None:
                    self._ahead = ThreadPoolExecutor(MAX_READS_AHEAD, "bbackup-read-ahead")
                self._reading_ahead += 1
                self._ahead.submit(self._fetch_ahead, blob_id)

    def _fetch_ahead(self, blob_id: bytes) -> None:
        try:
            self.get(blob_id)
        except Exception:
            pass  # the reader that needs it fetches it again and reports the failure
        finally:
            with self._lock:
                self._reading_ahead -= 1

    def close(self) -> None:
        """Stop reading ahead (before the repository's loop stops)."""
        if self._ahead is not None:
            self._ahead.shutdown(wait=True, cancel_futures=True)

    def get(self, blob_id: bytes) -> bytes:
        """The blob's plaintext, verified against its ID; IntegrityError if damaged."""
        with self._lock:
            data = self._blobs.get(blob_id)
            if data is not None:
                self._blobs.move_to_end(blob_id)
                self.stats.cache_hits += 1
                return data
            pending = self._fetching.get(blob_id)
            if pending is None:
                mine: Future[bytes] = Future()
                self._fetching[blob_id] = mine
        if pending is not None:
            return pending.result()
        try:
            data = self._fetch(blob_id)
        except BaseException as exc:
            with self._lock:
                del self._fetching[blob_id]
            mine.set_exception(exc)
            raise
        with self._lock:
            del self._fetching[blob_id]
            self._blobs[blob_id] = data
            self._held += len(data)
            while self._held > self._capacity and len(self._blobs) > 1:
                _, dropped = self._blobs.popitem(last=False)
                self._held -= len(dropped)
        mine.set_result(data)
        return data

    def _fetch(self, blob_id: bytes) -> bytes:
        entry, sealed = self._call(_read_sealed(self._loader, blob_id))
        with self._lock:
            self.stats.blobs += 1
            self.stats.bytes += entry.length
        return self._loader.decode_blob(blob_id, entry, sealed)


async def _read_sealed(loader: BlobLoader, blob_id: bytes) -> tuple[IndexEntry, bytes]:
    """Where a blob is and its sealed bytes: one ranged read of its pack."""
    entry = loader.index.lookup(blob_id)
    name = pack_object_name(entry.blob_type, entry.pack_id)
    sealed = await loader.read_pack(name, entry.offset, entry.length)
    if len(sealed) != entry.length:
        raise IntegrityError(f"{name}: blob {blob_id.hex()[:16]} is truncated")
    return entry, sealed


def read_range(cache: BlobCache, layout: FileLayout, offset: int, size: int) -> bytes:
    """Bytes [offset, offset + size) of the file, short at its end."""
    parts = [cache.get(blob_id)[start:stop] for blob_id, start, stop in layout.spans(offset, size)]
    return parts[0] if len(parts) == 1 else b"".join(parts)
