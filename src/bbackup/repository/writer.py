"""The blob writer: dedup, compress, seal, pack and upload blobs; write index segments.

`prepare` is the CPU half (keyed hash, dedup check, zstd, AES-GCM) and runs in worker
threads; `add` is the asyncio half that fills packs and schedules uploads. At most
`upload_slots` packs wait for upload at once, which bounds memory to a small multiple of
pack size × connections: a producer awaiting `add` stalls until an upload finishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field

from bbackup.compression import compress
from bbackup.crypto import BlobType, Cipher
from bbackup.repository.index import INDEX_KIND, Index, IndexSegment, PackInfo
from bbackup.repository.pack import PackWriter, pack_object_name
from bbackup.storage import Storage

#: Write an index segment after this many bytes of new packs, so an interrupted backup
#: resumes from what it already uploaded.
SEGMENT_EVERY_BYTES = 512 * 1024 * 1024


@dataclass(slots=True)
class PreparedBlob:
    """A blob after the CPU stages; `sealed` is None when the repository already has it."""

    blob_type: BlobType
    blob_id: bytes
    sealed: bytes | bytearray | None
    raw_length: int


@dataclass(slots=True)
class WriteStats:
    """What the writer added to the repository."""

    blobs_new: int = 0
    bytes_added: int = 0  # raw bytes of new blobs
    bytes_stored: int = 0  # bytes of uploaded packs
    packs: int = 0
    segments: list[str] = field(default_factory=list)


class BlobWriter:
    """Turns blobs into uploaded packs and index segments."""

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
        self._reserved: set[bytes] = set()
        self._reserve_lock = threading.Lock()
        self._packers: dict[BlobType, PackWriter] = {}
        self._slots = asyncio.Semaphore(max(1, upload_slots))
        self._uploads: set[asyncio.Task[None]] = set()
        self._unindexed: list[PackInfo] = []
        self._unindexed_bytes = 0
        self._segment_lock = asyncio.Lock()
        self._error: BaseException | None = None

    def prepare(self, blob_type: BlobType, data: bytes | bytearray | memoryview) -> PreparedBlob:
        """Hash, and unless known, compress and seal. Thread-safe; CPU-bound."""
        blob_id = self.cipher.blob_id(data)
        with self._reserve_lock:
            if blob_id in self.index or blob_id in self._reserved:
                return PreparedBlob(blob_type, blob_id, None, len(data))
            self._reserved.add(blob_id)
        payload = compress(data, self.compression_level)
        return PreparedBlob(
            blob_type, blob_id, self.cipher.seal_blob(blob_type, blob_id, payload), len(data)
        )

    async def add(self, blob: PreparedBlob) -> None:
        """Put a prepared blob into its pack; upload the pack when it is full."""
        if self._error is not None:
            raise self._error
        if blob.sealed is None:
            return
        packer = self._packers.get(blob.blob_type)
        if packer is None:
            packer = self._packers[blob.blob_type] = PackWriter(blob.blob_type)
        packer.add(blob.blob_id, blob.sealed, blob.raw_length)
        self.stats.blobs_new += 1
        self.stats.bytes_added += blob.raw_length
        if packer.size >= self.pack_size:
            await self._finish_pack(blob.blob_type)

    async def _finish_pack(self, blob_type: BlobType) -> None:
        packer = self._packers.pop(blob_type, None)
        if packer is None or not len(packer):
            return
        await self._slots.acquire()
        try:
            pack_id, data = await asyncio.to_thread(packer.finish, self.cipher)
        except BaseException:
            self._slots.release()
            raise
        task = asyncio.create_task(self._upload(packer, pack_id, data))
        self._uploads.add(task)
        task.add_done_callback(self._upload_done)

    def _upload_done(self, task: asyncio.Task[None]) -> None:
        self._uploads.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()

    async def _upload(self, packer: PackWriter, pack_id: str, data: bytes) -> None:
        try:
            storage_class = self.data_storage_class if packer.blob_type is BlobType.DATA else None
            await self.storage.put(
                pack_object_name(packer.blob_type, pack_id),
                data,
                storage_class=storage_class,
                if_absent=True,
            )
        finally:
            self._slots.release()
        info = PackInfo(
            pack_id,
            packer.blob_type,
            len(data),
            [(b.blob_id, b.offset, b.length, b.raw_length) for b in packer.blobs],
        )
        self.index.add_pack(info)
        with self._reserve_lock:
            self._reserved.difference_update(b.blob_id for b in packer.blobs)
        self.stats.packs += 1
        self.stats.bytes_stored += len(data)
        self._unindexed.append(info)
        self._unindexed_bytes += len(data)
        if self._unindexed_bytes >= SEGMENT_EVERY_BYTES:
            await self.write_segment()

    async def write_segment(self) -> str | None:
        """Store the packs uploaded since the last segment as a new index segment."""
        async with self._segment_lock:
            if not self._unindexed:
                return None
            packs, self._unindexed, self._unindexed_bytes = self._unindexed, [], 0
            segment = IndexSegment(packs)
            sealed = self.cipher.seal_document(INDEX_KIND, segment.to_bytes())
            name = document_name("index", sealed)
            await self.storage.put(name, sealed, if_absent=True)
            self.stats.segments.append(name)
            return name

    async def flush(self) -> None:
        """Upload every open pack, wait for all uploads, and index them."""
        for blob_type in list(self._packers):
            await self._finish_pack(blob_type)
        while self._uploads:
            await asyncio.wait(set(self._uploads))
        if self._error is not None:
            raise self._error
        await self.write_segment()

    async def abort(self) -> None:
        """Cancel uploads in flight (after an error); what was uploaded stays unreferenced."""
        for task in list(self._uploads):
            task.cancel()
        if self._uploads:
            await asyncio.wait(set(self._uploads))
        self._packers.clear()


def document_name(directory: str, sealed: bytes) -> str:
    """Documents are named by the SHA-256 of their stored bytes, like packs."""
    return f"{directory}/{hashlib.sha256(sealed).hexdigest()}"
