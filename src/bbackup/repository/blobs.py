"""The blobs of a Repository and the packs that hold them: blobs found through the index,
read and verified; packs read (thawing archived ones), listed, inspected and deleted; and
writers whose packs join the index.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from bbackup.compression import decompress
from bbackup.crypto.keys import MasterKey
from bbackup.errors import Archived, IntegrityError
from bbackup.repository.cache import CachingStorage
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import DamagedLocations
from bbackup.repository.documents import DamageReporter, RepositoryDocuments, require_prefix
from bbackup.repository.index import Index, IndexEntry
from bbackup.repository.pack import (
    PackedBlob,
    header_length,
    pack_object_name,
    parse_header,
    parse_pack,
)
from bbackup.repository.roles import PACK_PREFIXES
from bbackup.repository.writer import BlobWriter
from bbackup.storage import ObjectInfo, Storage, StorageStack

#: Bytes read from a pack's end to reach its header in one request (a pack of 16 MiB in
#: 1 MiB chunks has a header of about 1 KiB; a tree pack of small directories, tens).
PACK_TAIL_READ = 64 * 1024

#: Called with a pack's name when reading it answered `Archived`; returns once the pack
#: should be readable (a thaw: estimate, restore request, wait) or raises.
ArchivedReadHandler = Callable[[str], Awaitable[None]]
#: Reads of one pack that may meet `Archived` before the error is final: the first, and
#: one after each thaw (a restored copy may expire between the thaw and the read).
ARCHIVED_READ_ATTEMPTS = 3

#: The prefix `list_packs` lists data/ by on a remote store: damaged/ shares its first
#: letter, so the damage records come in the same LIST request (drills/ comes too).
SHARED_DATA_LISTING = "d"


class RepositoryBlobs(RepositoryDocuments):
    """The index, blobs and packs of an open repository on top of its documents: the
    BlobLoader and BlobSaverSource of `roles.py` and the pack half of its PackInventory."""

    def __init__(
        self,
        stack: StorageStack,
        storage: Storage,
        config: RepositoryConfig,
        master: MasterKey,
        key_name: str,
        on_damage: DamageReporter | None = None,
    ) -> None:
        super().__init__(stack, storage, config, master, key_name, on_damage)
        self.index = Index()
        #: Blobs that failed verification in `decode_blob`, by pack ID (restore records
        #: them: `found_damage`).
        self._failed_blobs: dict[str, set[bytes]] = {}
        self._failed_lock = threading.Lock()
        #: What a pack read does on `Archived` (the CLI's thaw); None: the error stands.
        self.on_archived_read: ArchivedReadHandler | None = None

    # ---- blobs -------------------------------------------------------------------------

    def found_damage(self) -> DamagedLocations:
        """The blobs that failed verification in this process, by pack ID."""
        with self._failed_lock:
            return {p: frozenset(b) for p, b in self._failed_blobs.items()}

    def new_writer(
        self,
        *,
        compression_level: int | None = None,
        data_storage_class: str | None = None,
        upload_slots: int | None = None,
    ) -> BlobWriter:
        """A writer for a backup; its packs join this repository's index as they land."""
        return BlobWriter(
            self.storage,
            self.cipher,
            self.index,
            pack_size=self.config.pack_size,
            compression_level=(
                self.config.compression_level if compression_level is None else compression_level
            ),
            upload_slots=upload_slots or 4,
            data_storage_class=data_storage_class,
        )

    def decode_blob(self, blob_id: bytes, entry: IndexEntry, sealed: bytes | memoryview) -> bytes:
        """Open, decompress and verify one blob (a failure is remembered for
        `found_damage`). Thread-safe; CPU-bound."""
        try:
            payload = self.cipher.open_blob(entry.blob_type, blob_id, sealed)
            try:
                plain = decompress(payload, entry.raw_length)
            except Exception as exc:
                raise IntegrityError(f"blob {blob_id.hex()[:16]}: cannot decompress") from exc
            if len(plain) != entry.raw_length or self.cipher.blob_id(plain) != blob_id:
                raise IntegrityError(f"blob {blob_id.hex()[:16]}: content does not match its ID")
        except IntegrityError:
            with self._failed_lock:
                self._failed_blobs.setdefault(entry.pack_id, set()).add(blob_id)
            raise
        return plain

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The ID a blob with this plaintext has (the keyed hash); thread-safe."""
        return self.cipher.blob_id(data)

    async def load_blob(self, blob_id: bytes) -> bytes:
        entry = self.index.lookup(blob_id)
        name = pack_object_name(entry.blob_type, entry.pack_id)
        sealed = await self._get_pack(name, entry.offset, entry.length)
        if len(sealed) != entry.length:
            raise IntegrityError(f"{name}: blob {blob_id.hex()[:16]} is truncated")
        try:
            return self.decode_blob(blob_id, entry, sealed)
        except IntegrityError as exc:
            raise IntegrityError(f"{name}: {exc}") from None

    # ---- packs -------------------------------------------------------------------------

    async def read_pack(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        require_prefix(name, PACK_PREFIXES, "pack")
        return await self._get_pack(name, offset, length)

    async def _get_pack(self, name: str, offset: int, length: int | None) -> bytes:
        """A pack read; one that meets an archived pack thaws it (`on_archived_read`) and
        reads again. Reading first and thawing only on `Archived` costs nothing where no
        pack is archived, where a look at every needed pack first costs a HEAD each."""
        thaw = self.on_archived_read
        if thaw is not None:
            for _ in range(ARCHIVED_READ_ATTEMPTS - 1):
                try:
                    return await self.storage.get(name, offset, length)
                except Archived:
                    await thaw(name)
        return await self.storage.get(name, offset, length)

    async def list_packs(self, prefixes: tuple[str, ...] = PACK_PREFIXES) -> list[ObjectInfo]:
        """Every stored pack under `prefixes` (data/ and tree/), in that order; the
        listings run at once (on S3 each is a round trip or more).

        On a remote store data/ is listed as `d`, which holds damaged/ and drills/ too (a
        few objects beside thousands of packs): the damage records' listing that
        `load_index` asks for meanwhile (a backup runs both at once) takes its part of
        this one instead of a LIST request of its own."""
        shared = SHARED_DATA_LISTING if self.profile.remote and "data/" in prefixes else None
        listings = {
            prefix: asyncio.ensure_future(
                self._list_infos(shared if prefix == "data/" and shared else prefix)
            )
            for prefix in prefixes
        }
        if shared:
            self._shared_listings[shared] = listings["data/"]
        try:
            await asyncio.gather(*listings.values())
        except BaseException:
            for listing in listings.values():
                listing.cancel()
            await asyncio.gather(*listings.values(), return_exceptions=True)
            raise
        finally:
            if shared:
                del self._shared_listings[shared]
        return [
            info
            for prefix, listing in listings.items()
            for info in listing.result()
            if info.name.startswith(prefix)
        ]

    async def _list_infos(self, prefix: str) -> list[ObjectInfo]:
        return [info async for info in self.storage.list(prefix)]

    async def stat_pack(self, name: str) -> ObjectInfo:
        """One pack's size, storage class and archive restore state, from the store."""
        require_prefix(name, PACK_PREFIXES, "pack")
        return await self.storage.stat(name)

    async def request_pack_restore(self, name: str, days: int, tier: str) -> None:
        """Ask the store for a readable copy of an archived pack for `days` (a no-op for a
        pack that is not archived, or whose restore is already under way)."""
        require_prefix(name, PACK_PREFIXES, "pack")
        await self.storage.restore(name, days, tier)

    def parse_pack_header(self, data: bytes | bytearray | memoryview) -> list[PackedBlob]:
        return parse_pack(self.cipher, data)

    async def read_pack_header(self, name: str, size: int) -> list[PackedBlob]:
        """The blobs a stored pack of `size` bytes lists in its header, from ranged reads of
        its end (one, or two for a header over PACK_TAIL_READ). Read from the store, never
        a cached copy: a tree pack is not downloaded whole for its header."""
        require_prefix(name, PACK_PREFIXES, "pack")
        storage = self.storage.inner if isinstance(self.storage, CachingStorage) else self.storage
        tail_length = min(size, PACK_TAIL_READ)
        tail = await storage.get(name, size - tail_length, tail_length)
        if len(tail) != tail_length or tail_length < 4:
            raise IntegrityError("pack is truncated")
        length = header_length(tail[-4:])
        start = size - 4 - length
        if start < 0:
            raise IntegrityError("pack header length exceeds the pack")
        if length + 4 <= tail_length:
            sealed = memoryview(tail)[tail_length - 4 - length : tail_length - 4]
        else:
            sealed = memoryview(await storage.get(name, start, length))
            if len(sealed) != length:
                raise IntegrityError("pack header is truncated")
        blobs = parse_header(self.cipher, sealed)
        for blob in blobs:
            if blob.offset + blob.length > start:
                raise IntegrityError("pack header points past the blob area")
        return blobs

    async def delete_pack(self, name: str) -> None:
        require_prefix(name, PACK_PREFIXES, "pack")
        await self.storage.delete(name)
