"""The blob writer: dedup, compress, seal, pack and upload blobs; write index segments.

`prepare` (keyed hash, dedup check, zstd) and `put` (seal the blob straight into its
pack) run in the reader threads, so the CPU work of a backup is spread over them and no
blob is handed from thread to thread: a pack is a memory map that several threads seal
into at once, each into a place reserved under a lock. The thread that completes a pack
also hashes it and hands it to the event loop, which uploads it and indexes it.

Memory is bounded by counting packs: at most `upload_slots + 1` exist at once (being
filled, being hashed or being uploaded; the open tree pack counts too). A thread that
needs a new pack waits for one to finish uploading, so a slow store slows the readers
instead of filling memory. The event loop itself never waits on that: `add`, its entry
point, moves to a thread whenever it might have to. A waiting thread also wakes when
another one opens a pack of its type, and uses it: the slot it waited for may be held
by that very pack, which only closes when it fills (see `_take_slot`).
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bbackup.compression import compress
from bbackup.crypto.aead import BLOB_OVERHEAD, BlobType, Cipher
from bbackup.errors import BbackupError
from bbackup.repository.index import INDEX_KIND, Index, IndexSegment, PackInfo
from bbackup.repository.pack import PackBuilder, give_back, map_length, pack_object_name
from bbackup.storage import Storage

#: While packs are uploaded, an index segment is written at least this often, so an
#: interrupted backup resumes from what it uploaded up to then (and at the end). A backup
#: shorter than this writes one segment: one PUT now, one GET for every later reader.
SEGMENT_EVERY_SECONDS = 300.0
#: ... and whenever this many blobs wait for one, which bounds a segment's size (restic
#: writes an index file per 50,000 blobs too).
SEGMENT_MAX_BLOBS = 50_000
#: Room a pack keeps beyond the pack size: the largest chunk (8 MiB) plus its header.
PACK_SLACK = 9 * 1024 * 1024


@dataclass(slots=True)
class PreparedBlob:
    """A blob after hashing and compression; `payload` is None when the repository already
    has it. With `sealed`, `payload` is already encrypted (prune copies blobs as stored)."""

    blob_type: BlobType
    blob_id: bytes
    payload: bytes | bytearray | memoryview | None
    raw_length: int
    sealed: bool = False


@dataclass(slots=True)
class WriteStats:
    """What the writer added to the repository."""

    blobs_new: int = 0
    bytes_added: int = 0  # raw bytes of new blobs
    bytes_stored: int = 0  # bytes of uploaded packs
    packs: int = 0
    segments: list[str] = field(default_factory=list)


class BlobWriter:
    """Turns blobs into uploaded packs and index segments. Create it on the event loop."""

    def __init__(
        self,
        storage: Storage,
        cipher: Cipher,
        index: Index,
        *,
        pack_size: int,
        compression_level: int,
        upload_slots: int,
        data_storage_class: str | None = None,
    ) -> None:
        self.storage = storage
        self.cipher = cipher
        self.index = index
        self.pack_size = pack_size
        self.compression_level = compression_level
        self.data_storage_class = data_storage_class
        self.stats = WriteStats()
        self._loop = asyncio.get_running_loop()
        self._reserved: set[bytes] = set()
        self._reserve_lock = threading.Lock()
        self._lock = threading.Lock()  # the open packs, their writers, stats
        self._open: dict[BlobType, PackBuilder] = {}
        slots = max(1, upload_slots) + 1
        self._free_slots = slots
        # Signalled (under `_lock`) when a slot is freed, a pack is opened, or on error.
        self._slots_changed = threading.Condition(self._lock)
        self._max_spare_maps = slots
        self._spare_maps: list[mmap.mmap] = []
        # `add` runs a `put` that may wait for a pack slot here, never in the event loop's
        # default executor: slots come back through `_dispose` and the local backend's
        # writes, which run in that executor, so a default executor filled with waiting
        # puts would never get one back (a deadlock the kill matrix found with one
        # connection, i.e. two slots). One thread: waiting puts queue behind it.
        self._waiting_puts = ThreadPoolExecutor(1, thread_name_prefix="bb-put")
        self._uploads: set[asyncio.Task[None]] = set()
        self._unindexed: list[PackInfo] = []
        self._unindexed_blobs = 0
        self._last_segment = time.monotonic()
        self._segment_lock = asyncio.Lock()
        self._error: BaseException | None = None
        self._aborted = False

    def prepare(self, blob_type: BlobType, data: bytes | bytearray | memoryview) -> PreparedBlob:
        """Hash, and unless known, compress. Thread-safe; CPU-bound.

        A new blob is reserved: it must reach `put` or `add`, or another file sharing it
        would reference nothing. Its payload may be `data` itself (when it does not
        compress), so it must be put before `data` changes.
        """
        blob_id = self.cipher.blob_id(data)
        with self._reserve_lock:
            if blob_id in self.index or blob_id in self._reserved:
                return PreparedBlob(blob_type, blob_id, None, len(data))
            self._reserved.add(blob_id)
        return PreparedBlob(blob_type, blob_id, compress(data, self.compression_level), len(data))

    def prepare_sealed(
        self, blob_type: BlobType, blob_id: bytes, sealed: bytes, raw_length: int
    ) -> PreparedBlob:
        """`prepare` for a blob hashed, compressed and sealed elsewhere (a seal worker):
        the dedup check and reservation only. Thread-safe."""
        with self._reserve_lock:
            if blob_id in self.index or blob_id in self._reserved:
                return PreparedBlob(blob_type, blob_id, None, raw_length)
            self._reserved.add(blob_id)
        return PreparedBlob(blob_type, blob_id, sealed, raw_length, sealed=True)

    # ---- placing blobs in packs ---------------------------------------------------------

    def put(self, blob: PreparedBlob) -> None:
        """Seal a prepared blob into its pack. Worker threads only: may block (see above)."""
        if blob.payload is None:
            return
        self._raise_if_failed()
        length = _stored_length(blob)
        spare = None
        while True:
            placed, completed = self._place(blob, length, spare)
            if completed is not None:
                self._finish(completed)
            if placed is not None:
                break
            if self._take_slot(blob.blob_type):
                spare = self._new_pack(blob.blob_type, max(self.pack_size, length) + PACK_SLACK)
        self._seal_into(blob, *placed)

    def _take_slot(self, blob_type: BlobType) -> bool:
        """Wait until a pack slot is free and take it (True), or until a pack of
        `blob_type` is open (False: place the blob again, there may be room).

        Waiting for a slot alone could last forever: with two slots, the open tree pack
        holds one; if another reader takes the other and opens a data pack with room to
        spare, that pack closes only when it fills, i.e. when this thread writes to it.
        """
        with self._slots_changed:
            while self._free_slots == 0 and blob_type not in self._open:
                if self._error is not None:
                    break
                self._slots_changed.wait()
            if self._error is not None:
                raise self._error
            if blob_type in self._open:
                return False
            self._free_slots -= 1
            return True

    def _wake_waiters(self) -> None:
        with self._slots_changed:
            self._slots_changed.notify_all()

    async def add(self, blob: PreparedBlob) -> None:
        """`put` for the event loop: inline when the open pack has room, else in a thread."""
        if blob.payload is None:
            return
        self._raise_if_failed()
        placed, completed = self._place(blob, _stored_length(blob))
        if completed is not None:
            await asyncio.to_thread(self._finish, completed)
        if placed is None:
            await self._loop.run_in_executor(self._waiting_puts, self.put, blob)
        elif len(blob.payload) > 256 * 1024:
            await asyncio.to_thread(self._seal_into, blob, *placed)
        else:
            pack, target = placed
            self._seal(blob, target)
            if self._written(pack):
                await asyncio.to_thread(self._finish, pack)

    def _place(
        self, blob: PreparedBlob, length: int, spare: PackBuilder | None = None
    ) -> tuple[tuple[PackBuilder, memoryview] | None, PackBuilder | None]:
        """Reserve `length` bytes for `blob` in the open pack of its type.

        Returns (place, completed): place is (pack, view to seal into), or None when a
        new pack is needed and no `spare` (a new pack whose slot the caller holds) was
        given; completed is a pack this call closed that has no writers left: the caller
        must finish it.
        """
        completed = None
        with self._lock:
            pack = self._open.get(blob.blob_type)
            if pack is not None and not pack.fits(length):
                completed = self._close(pack)
                pack = None
            if pack is None:
                if spare is None:
                    return None, completed
                pack = self._open[blob.blob_type] = spare
                spare = None
                self._slots_changed.notify_all()  # a thread waiting for a slot may fit
            target = pack.reserve(blob.blob_id, length, blob.raw_length)
            if pack.size >= self.pack_size:
                self._close(pack)
            self.stats.blobs_new += 1
            self.stats.bytes_added += blob.raw_length
        if spare is not None:  # another thread opened a pack meanwhile
            self._dispose(spare)
        return (pack, target), completed

    def _close_all(self) -> list[PackBuilder]:
        """Close every open pack; return those that are complete (the others are finished
        by their last writer)."""
        with self._lock:
            return [p for p in list(self._open.values()) if self._close(p) is not None]

    def _close(self, pack: PackBuilder) -> PackBuilder | None:
        """Close `pack` (lock held); return it if it is complete, i.e. has no writers."""
        del self._open[pack.blob_type]
        pack.closed = True
        return pack if pack.writers == 0 else None

    def _seal(self, blob: PreparedBlob, target: memoryview) -> None:
        assert blob.payload is not None
        if blob.sealed:
            target[:] = blob.payload
        else:
            self.cipher.seal_blob_into(blob.blob_type, blob.blob_id, blob.payload, target)

    def _written(self, pack: PackBuilder) -> bool:
        """One writer of `pack` is done; True if the pack is now complete."""
        with self._lock:
            pack.writers -= 1
            return pack.closed and pack.writers == 0

    def _seal_into(self, blob: PreparedBlob, pack: PackBuilder, target: memoryview) -> None:
        self._seal(blob, target)
        if self._written(pack):
            self._finish(pack)

    def _finish(self, pack: PackBuilder) -> None:
        """Hash a complete pack and hand it to the event loop for upload (any thread)."""
        pack_id, data = pack.finish(self.cipher)
        # Uploaded from its map, never copied (the S3 backend sends a view as it is); the
        # map goes back to the spare maps once stored (`_dispose`).
        self._loop.call_soon_threadsafe(self._start_upload, pack, pack_id, data)

    def _new_pack(self, blob_type: BlobType, capacity: int) -> PackBuilder:
        """A pack, in the map of a stored one when there is one of that size: its pages
        were given back, but mapping and unmapping cost system calls and TLB shoot-downs
        on every core."""
        with self._lock:
            for i, buffer in enumerate(self._spare_maps):
                if len(buffer) == map_length(capacity):
                    return PackBuilder(blob_type, capacity, self._spare_maps.pop(i))
        return PackBuilder(blob_type, capacity, body=self.pack_size)

    def _dispose(self, pack: PackBuilder) -> None:
        """Free a stored (or dropped) pack's slot, keeping its map, without its memory,
        for the next pack."""
        buffer = pack.release()
        if buffer is not None and len(buffer) == map_length(self.pack_size + PACK_SLACK):
            give_back(buffer)
        else:
            buffer = None
        with self._slots_changed:
            if buffer is not None and len(self._spare_maps) < self._max_spare_maps:
                self._spare_maps.append(buffer)
            self._free_slots += 1
            self._slots_changed.notify_all()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    # ---- uploads ------------------------------------------------------------------------

    def _start_upload(self, pack: PackBuilder, pack_id: str, data: memoryview | bytes) -> None:
        if self._aborted:
            self._dispose(pack)
            return
        task = self._loop.create_task(self._upload(pack, pack_id, data))
        self._uploads.add(task)
        task.add_done_callback(self._upload_done)

    def _upload_done(self, task: asyncio.Task[None]) -> None:
        self._uploads.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()
            self._wake_waiters()

    async def _upload(self, pack: PackBuilder, pack_id: str, data: memoryview | bytes) -> None:
        size = len(data)
        try:
            storage_class = self.data_storage_class if pack.blob_type is BlobType.DATA else None
            await self.storage.put(
                pack_object_name(pack.blob_type, pack_id),
                data,
                storage_class=storage_class,
                if_absent=True,
            )
        finally:
            del data
            # Unmapping a 16 MiB pack takes milliseconds: not on the event loop.
            self._loop.run_in_executor(None, self._dispose, pack)
        info = PackInfo(
            pack_id,
            pack.blob_type,
            size,
            [(b.blob_id, b.offset, b.length, b.raw_length) for b in pack.blobs],
        )
        self.index.add_pack(info)
        with self._reserve_lock:
            self._reserved.difference_update(b.blob_id for b in pack.blobs)
        self.stats.packs += 1
        self.stats.bytes_stored += info.size
        self._unindexed.append(info)
        self._unindexed_blobs += len(info.blobs)
        if (
            self._unindexed_blobs >= SEGMENT_MAX_BLOBS
            or time.monotonic() - self._last_segment >= SEGMENT_EVERY_SECONDS
        ):
            await self.write_segment()

    async def write_segment(self) -> str | None:
        """Store the packs uploaded since the last segment as a new index segment."""
        async with self._segment_lock:
            if not self._unindexed:
                return None
            packs, self._unindexed, self._unindexed_blobs = self._unindexed, [], 0
            self._last_segment = time.monotonic()
            segment = IndexSegment(packs)
            sealed = self.cipher.seal_document(INDEX_KIND, segment.to_bytes())
            name = document_name("index", sealed)
            await self.storage.put(name, sealed, if_absent=True)
            self.stats.segments.append(name)
            return name

    async def flush(self) -> None:
        """Upload every open pack, wait for all uploads, and index them."""
        for pack in self._close_all():
            await asyncio.to_thread(self._finish, pack)
        while self._uploads:
            await asyncio.wait(set(self._uploads))
        with self._lock:
            self._spare_maps.clear()
        self._waiting_puts.shutdown(wait=False)
        self._raise_if_failed()
        await self.write_segment()

    async def abort(self) -> None:
        """Cancel uploads in flight (after an error); what was uploaded stays unreferenced.

        Reader threads still running stop at their next blob; packs they complete are
        dropped, not uploaded."""
        self._aborted = True
        if self._error is None:
            self._error = BbackupError("the backup was aborted")
        self._wake_waiters()
        for task in list(self._uploads):
            task.cancel()
        if self._uploads:
            await asyncio.wait(set(self._uploads))
        for pack in self._close_all():  # the last writer of any other drops it
            self._dispose(pack)
        self._waiting_puts.shutdown(wait=False)


def _stored_length(blob: PreparedBlob) -> int:
    assert blob.payload is not None
    return len(blob.payload) if blob.sealed else len(blob.payload) + BLOB_OVERHEAD


def document_name(directory: str, sealed: bytes) -> str:
    """Documents are named by the SHA-256 of their stored bytes, like packs."""
    return f"{directory}/{hashlib.sha256(sealed).hexdigest()}"
