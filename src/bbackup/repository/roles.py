"""The roles a Repository plays for the layers above: small Protocols that ops and snapshot
code depend on instead of the Repository and its storage, the way restic's archiver sees a
`BlobSaver` and its restorer a `Loader`.

A consumer that needs several roles declares its own Protocol combining them. Every role
speaks in repository terms (blobs, packs, documents, index segments); none hands out a
storage object.
"""

from __future__ import annotations

from typing import Protocol

from bbackup.crypto.aead import BlobType
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import DAMAGE_PREFIX, DamagedLocations, DamageRecord
from bbackup.repository.index import Index, IndexEntry, IndexSegment
from bbackup.repository.pack import PackedBlob
from bbackup.repository.writer import PreparedBlob, WriteStats
from bbackup.storage import ObjectInfo

#: Where packs live: the only names a PackInventory reads or deletes.
PACK_PREFIXES = ("data/", "tree/")
#: Where encrypted documents live that may be deleted by name (index segments go through
#: `PackInventory.write_superseding_segment`; the config and key files never by name).
DELETABLE_DOCUMENT_PREFIXES = ("snapshots/", "locks/", DAMAGE_PREFIX, "drills/")


class BlobLoader(Protocol):
    """Reads blobs: the index says where each lives, packs are read by byte range."""

    @property
    def index(self) -> Index: ...

    @property
    def config(self) -> RepositoryConfig: ...

    async def load_blob(self, blob_id: bytes) -> bytes:
        """One blob's plaintext, verified against its ID."""
        ...

    async def read_pack(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of the pack named `name` (see `pack_object_name`): one storage read, of
        the whole pack or of `length` bytes from `offset`. A range past the end comes back
        short, which the caller must treat as truncation."""
        ...

    def decode_blob(self, blob_id: bytes, entry: IndexEntry, sealed: bytes | memoryview) -> bytes:
        """Open, decompress and verify one sealed blob. Thread-safe; CPU-bound."""
        ...

    def found_damage(self) -> DamagedLocations:
        """The blobs that failed verification in this process (`decode_blob`, `load_blob`),
        by pack ID: what a damage record would name."""
        ...


class BlobSaver(Protocol):
    """Turns blobs into packs and index segments (`BlobWriter` is the one implementation)."""

    @property
    def stats(self) -> WriteStats: ...

    def prepare(self, blob_type: BlobType, data: bytes | bytearray | memoryview) -> PreparedBlob:
        """Hash and, unless the repository has the blob, compress it (any thread)."""
        ...

    def put(self, blob: PreparedBlob) -> None:
        """Place a prepared blob in a pack (worker threads only: may block)."""
        ...

    async def add(self, blob: PreparedBlob) -> None:
        """`put` for the event loop."""
        ...

    async def flush(self) -> None:
        """Upload every open pack and write an index segment for what was uploaded."""
        ...

    async def abort(self) -> None:
        """Cancel uploads in flight; what was uploaded stays unreferenced."""
        ...


class BlobSaverSource(Protocol):
    """Hands out blob savers whose packs join the repository's index as they land."""

    def new_writer(
        self,
        *,
        compression_level: int | None = None,
        data_storage_class: str | None = None,
        upload_slots: int | None = None,
    ) -> BlobSaver: ...


class DocumentStore(Protocol):
    """Small encrypted documents (snapshots, locks, index segments) named by the SHA-256
    of their stored bytes."""

    async def save_document(self, directory: str, kind: str, payload: bytes) -> str:
        """Seal and store `payload` under `directory`; return the document's name."""
        ...

    async def load_document(self, name: str, kind: str) -> bytes:
        """A document's payload; NotFound if it is gone, IntegrityError if damaged or stored
        under a name that is not its content's (then also named once as damaged)."""
        ...

    async def list_names(self, prefix: str) -> list[str]:
        """The names of every document under `prefix` ("snapshots/")."""
        ...

    async def delete_document(self, name: str) -> None:
        """Delete a snapshot or lock document; deleting a missing one is not an error."""
        ...

    def note_damage(self, name: str, problem: str) -> None:
        """Name a damaged object once, with what is wrong (a document `load_document`
        could open but its reader cannot use)."""
        ...

    async def document_mtime(self, name: str) -> float:
        """When the store wrote the document, by the store's clock (the clock pack times
        are in)."""
        ...


class PackInventory(Protocol):
    """The packs as stored, for check and prune: list, read, delete, and the index
    segments that describe them."""

    @property
    def index(self) -> Index: ...

    @property
    def index_segments(self) -> list[str]:
        """The segments the last `load_index` used."""
        ...

    @property
    def superseded_segments(self) -> list[str]:
        """Segments the last `load_index` read but skipped: a newer one supersedes them."""
        ...

    @property
    def damaged_segments(self) -> dict[str, str]:
        """Segments the last `load_index` could not use: name → what is wrong. The packs
        only they list look unindexed, so nothing may be deleted for being unindexed."""
        ...

    async def load_index(self) -> None:
        """Read every index segment again, skipping damaged ones."""
        ...

    async def list_packs(self, prefixes: tuple[str, ...] = PACK_PREFIXES) -> list[ObjectInfo]:
        """Every stored pack (data/ and tree/, or those of `prefixes`) with its size, mtime
        and storage class."""
        ...

    async def read_pack(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """As `BlobLoader.read_pack`."""
        ...

    def parse_pack_header(self, data: bytes | bytearray | memoryview) -> list[PackedBlob]:
        """The blobs a whole pack's header lists (decrypted); IntegrityError if damaged."""
        ...

    async def read_pack_header(self, name: str, size: int) -> list[PackedBlob]:
        """The blobs a stored pack lists, from ranged reads of its end only; IntegrityError
        if its header is damaged."""
        ...

    async def delete_pack(self, name: str) -> None:
        """Delete one pack by name; deleting a missing pack is not an error."""
        ...

    async def write_superseding_segment(self, segment: IndexSegment) -> str:
        """Store `segment`, then delete the segments it supersedes; return its name. A crash
        between the two leaves segments that every reader skips."""
        ...

    @property
    def damage_records(self) -> dict[str, DamageRecord]:
        """The damage records the last `load_index` read (name → record); the index
        already treats the places they name as damaged."""
        ...

    @property
    def unreadable_damage_records(self) -> dict[str, str]:
        """Damage records the last `load_index` could not read: name → what is wrong."""
        ...

    async def save_damage_record(self, record: DamageRecord) -> str:
        """Store a damage record; return its name (delete one with `delete_document`)."""
        ...
