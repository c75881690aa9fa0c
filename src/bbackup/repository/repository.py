"""The Repository: the master key, config, index, blobs and documents of an open repository.

Everything above this layer reads and writes through the roles a Repository plays
(`roles.py`): blobs by ID, packs and documents by name. Storage objects are never touched
directly. Damage stays local: a document that fails its name or its authentication is
named once (`on_damage`) and skipped by whoever can do without it. Creating and opening
one is `opening.py`; reading and checking key files, `key_files.py`.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bbackup.compression import decompress
from bbackup.crypto.aead import Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import Archived, IntegrityError, NotFound
from bbackup.repository.cache import CachingStorage
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import (
    DAMAGE_KIND,
    DAMAGE_PREFIX,
    DamagedLocations,
    DamageRecord,
    merge_locations,
)
from bbackup.repository.index import INDEX_KIND, Index, IndexEntry, IndexSegment
from bbackup.repository.key_files import read_key_files
from bbackup.repository.pack import (
    PackedBlob,
    header_length,
    pack_object_name,
    parse_header,
    parse_pack,
)
from bbackup.repository.read_ahead import DocumentReadAhead
from bbackup.repository.roles import (
    DELETABLE_DOCUMENT_PREFIXES,
    PACK_PREFIXES,
    BlobLoader,
    BlobSaverSource,
    DocumentStore,
    PackInventory,
)
from bbackup.repository.writer import BlobWriter, document_name
from bbackup.storage import ObjectInfo, Storage, StorageProfile, StorageStack

CONFIG_NAME = "config"
CONFIG_KIND = "config"
#: Documents named by the SHA-256 of their stored bytes (`document_name`): every read
#: checks the name, so a copied, renamed or replayed document is refused. (Key files are
#: named so too and checked where they are read, `intact_key_files`; see docs/format.md,
#: "Names are bound to content".)
CONTENT_NAMED_PREFIXES = ("index/", "snapshots/", "locks/", DAMAGE_PREFIX, "drills/")
#: What to do about each kind of damaged document, said once with its name.
DAMAGE_ADVICE = {
    "index/": "skipped; run `bbackup repair index`",
    "snapshots/": "skipped; the other snapshots are not affected",
    "locks/": "ignored; `bbackup unlock` removes it",
    DAMAGE_PREFIX: "ignored; `bbackup repair packs` finds the damage again and removes it",
    "drills/": "ignored; the next drill proves its packs again",
    "tree/": "snapshots whose directories sit in its damaged part cannot be read",
}
#: Bytes read from a pack's end to reach its header in one request (a pack of 16 MiB in
#: 1 MiB chunks has a header of about 1 KiB; a tree pack of small directories, tens).
PACK_TAIL_READ = 64 * 1024

#: Called with one line naming a damaged object, what is wrong and what happens now.
DamageReporter = Callable[[str], None]
#: Called with a pack's name when reading it answered `Archived`; returns once the pack
#: should be readable (a thaw: estimate, restore request, wait) or raises.
ArchivedReadHandler = Callable[[str], Awaitable[None]]
#: Reads of one pack that may meet `Archived` before the error is final: the first, and
#: one after each thaw (a restored copy may expire between the thaw and the read).
ARCHIVED_READ_ATTEMPTS = 3


#: The prefix `list_packs` lists data/ by on a remote store: damaged/ shares its first
#: letter, so the damage records come in the same LIST request (drills/ comes too).
SHARED_DATA_LISTING = "d"

#: Times `load_index` lists `index/` again when segments it listed are gone before it
#: reads them (a prune beside it superseded and deleted them).
SEGMENT_LISTING_RETRIES = 5


class DamagedDocument(IntegrityError):
    """A stored document that cannot be used: damaged, or stored under another name."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def current_user() -> str:
    """The login name of this process, or "" where it has none (containers, cron)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def require_intact_index(damaged_segments: dict[str, str], command: str) -> None:
    """Refuse to go on while an index segment is damaged (`run repair index first`): the
    packs and blobs only it lists would look unindexed or lost to `command`."""
    if damaged_segments:
        name, problem = next(iter(damaged_segments.items()))
        raise IntegrityError(
            f"{name}: {problem}: run `bbackup repair index` first; {command} did nothing"
        )


class Repository:
    """An open repository. Use `open_repository` to get one.

    It is the BlobLoader, BlobSaverSource, DocumentStore and PackInventory of `roles.py`;
    its storage is its own (`stack` is there for the CLI's request counts and profile)."""

    def __init__(
        self,
        stack: StorageStack,
        storage: Storage,
        config: RepositoryConfig,
        master: MasterKey,
        key_name: str,
        on_damage: DamageReporter | None = None,
    ) -> None:
        self.stack = stack
        self.storage = storage
        self.config = config
        self.master = master
        self.key_name = key_name
        self.cipher = Cipher(master)
        self.index = Index()
        self._index_segments: list[str] = []
        self._superseded_segments: list[str] = []
        self._damaged_segments: dict[str, str] = {}
        self._damage_records: dict[str, DamageRecord] = {}
        self._unreadable_records: dict[str, str] = {}
        self.on_damage = on_damage
        #: Every damaged object this process has come across: name → what is wrong.
        self.damaged: dict[str, str] = {}
        #: Blobs that failed verification in `decode_blob`, by pack ID (restore records
        #: them: `found_damage`).
        self._failed_blobs: dict[str, set[bytes]] = {}
        self._failed_lock = threading.Lock()
        #: What a pack read does on `Archived` (the CLI's thaw); None: the error stands.
        self.on_archived_read: ArchivedReadHandler | None = None
        self._read_ahead: list[DocumentReadAhead] = []
        #: Listings under way that answer a listing of a longer prefix (`list_packs`).
        self._shared_listings: dict[str, asyncio.Future[list[ObjectInfo]]] = {}

    @property
    def location(self) -> str:
        return self.stack.storage.location

    @property
    def profile(self) -> StorageProfile:
        """What kind of store this is (remote or local, its sizes and capabilities)."""
        return self.stack.profile

    # ---- index -------------------------------------------------------------------------

    async def load_index(self) -> None:
        """Read every index segment, skipping those a newer segment supersedes and those
        that are damaged or misnamed (named through `on_damage`, and listed in
        `damaged_segments`): the packs only they list look unindexed until `repair index`."""
        # The segments are read as soon as they are listed, whatever the damage records'
        # listing waits for (in a backup it is part of the listing of data/: `list_packs`).
        (names, loaded), records = await asyncio.gather(
            self._read_listed_segments(), self._read_damage_records()
        )
        superseded = {s for r in loaded if isinstance(r, IndexSegment) for s in r.supersedes}
        index = Index()
        used, skipped, damaged = [], [], {}
        for i, (name, result) in enumerate(zip(names, loaded, strict=True)):
            if name.rsplit("/", 1)[-1] in superseded:
                skipped.append(name)
            elif isinstance(result, IndexSegment):
                index.add_segment(result)
                loaded[i] = None  # its rows are the index's now (~50 bytes a blob freed)
                used.append(name)
            elif result is not None:
                damaged[name] = result.problem
                self.note_damage(name, result.problem)
        if records:
            index.set_damaged(merge_locations(r.packs for r in records.values()))
        self.index = index
        self._damage_records = records
        self._index_segments = used
        self._superseded_segments = skipped
        self._damaged_segments = damaged

    async def _read_listed_segments(
        self,
    ) -> tuple[list[str], list[IndexSegment | DamagedDocument | None]]:
        """The listed index segments and what reading each gave (`_read_segment`)."""
        names = await self.list_names("index/")
        loaded = await asyncio.gather(*(self._read_segment(n) for n in names))
        for _ in range(SEGMENT_LISTING_RETRIES):
            if not any(result is None for result in loaded):
                break
            # A prune beside us deleted segments after writing the one that supersedes
            # them: what vanished between the listing and the read is in a newer listing.
            names = await self.list_names("index/")
            loaded = await asyncio.gather(*(self._read_segment(n) for n in names))
        else:
            gone = [n for n, result in zip(names, loaded, strict=True) if result is None]
            if gone:
                raise NotFound(f"{gone[0]}: not found (index segments keep vanishing)")
        return names, loaded

    async def _read_segment(self, name: str) -> IndexSegment | DamagedDocument | None:
        """The segment `name`; its damage; None if it is gone since it was listed."""
        try:
            try:
                payload = await self._read_document(name, INDEX_KIND)
            except NotFound:
                return None
            try:
                return IndexSegment.from_bytes(payload)
            except IntegrityError as exc:
                raise DamagedDocument(name, f"damaged ({exc})") from None
        except DamagedDocument as exc:
            return exc

    async def _read_damage_records(self) -> dict[str, DamageRecord]:
        """Every readable damage record; a damaged one is named, listed in
        `unreadable_damage_records` and skipped."""
        records = {}
        self._unreadable_records = {}
        for name in await self.list_names(DAMAGE_PREFIX):
            try:
                payload = await self.load_document(name, DAMAGE_KIND)
                records[name] = DamageRecord.from_bytes(payload)
            except NotFound:
                continue  # removed by `repair packs` since it was listed
            except DamagedDocument as exc:  # already named by load_document
                self._unreadable_records[name] = exc.problem
            except IntegrityError as exc:
                self._unreadable_records[name] = f"damaged ({exc})"
                self.note_damage(name, self._unreadable_records[name])
        return records

    @property
    def unreadable_damage_records(self) -> dict[str, str]:
        return dict(self._unreadable_records)

    @property
    def damage_records(self) -> dict[str, DamageRecord]:
        """The damage records the last load_index read: name → record."""
        return dict(self._damage_records)

    async def save_damage_record(self, record: DamageRecord) -> str:
        return await self.save_document(DAMAGE_PREFIX.rstrip("/"), DAMAGE_KIND, record.to_bytes())

    def found_damage(self) -> DamagedLocations:
        """The blobs that failed verification in this process, by pack ID."""
        with self._failed_lock:
            return {p: frozenset(b) for p, b in self._failed_blobs.items()}

    @property
    def index_segments(self) -> list[str]:
        return list(self._index_segments)

    @property
    def superseded_segments(self) -> list[str]:
        """Segments the last load_index read but skipped: a newer one supersedes them."""
        return list(self._superseded_segments)

    @property
    def damaged_segments(self) -> dict[str, str]:
        """Segments the last load_index could not use (and no readable one supersedes):
        name → what is wrong."""
        return dict(self._damaged_segments)

    def note_pack_damage(self, name: str, problem: str) -> None:
        """`note_damage` for packs only: a document's own reader names it, telling damage
        from a wrong name."""
        if name.startswith(PACK_PREFIXES):
            self.note_damage(name, problem)

    def note_damage(self, name: str, problem: str) -> None:
        """Remember a damaged object and name it through `on_damage`, once per process."""
        if name in self.damaged:
            return
        self.damaged[name] = problem
        if self.on_damage is not None:
            advice = next((a for p, a in DAMAGE_ADVICE.items() if name.startswith(p)), "")
            self.on_damage(f"{name}: {problem}" + (f", {advice}" if advice else ""))

    # ---- blobs -------------------------------------------------------------------------

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
        _require_prefix(name, PACK_PREFIXES, "pack")
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
        _require_prefix(name, PACK_PREFIXES, "pack")
        return await self.storage.stat(name)

    async def request_pack_restore(self, name: str, days: int, tier: str) -> None:
        """Ask the store for a readable copy of an archived pack for `days` (a no-op for a
        pack that is not archived, or whose restore is already under way)."""
        _require_prefix(name, PACK_PREFIXES, "pack")
        await self.storage.restore(name, days, tier)

    def parse_pack_header(self, data: bytes | bytearray | memoryview) -> list[PackedBlob]:
        return parse_pack(self.cipher, data)

    async def read_pack_header(self, name: str, size: int) -> list[PackedBlob]:
        """The blobs a stored pack of `size` bytes lists in its header, from ranged reads of
        its end (one, or two for a header over PACK_TAIL_READ). Read from the store, never
        a cached copy: a tree pack is not downloaded whole for its header."""
        _require_prefix(name, PACK_PREFIXES, "pack")
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
        _require_prefix(name, PACK_PREFIXES, "pack")
        await self.storage.delete(name)

    async def write_superseding_segment(self, segment: IndexSegment) -> str:
        name = await self.save_document("index", INDEX_KIND, segment.to_bytes())
        for old in segment.supersedes:
            if f"index/{old}" != name:
                await self.storage.delete(f"index/{old}")
        return name

    # ---- documents ---------------------------------------------------------------------

    def read_ahead(
        self,
        prefix: str,
        *,
        listing: asyncio.Task[list[str]] | None = None,
        documents: bool = True,
    ) -> None:
        """Start listing `prefix` (or take the `listing` under way) and, with `documents`,
        reading its documents now, for `list_names` and `load_document` later in this
        command. Any write drops what is read ahead: a command that locks (prune,
        forget) reads what it decides on after its lock."""
        ahead = DocumentReadAhead(self.storage, prefix, listing=listing, documents=documents)
        self._read_ahead.append(ahead)

    async def stop_read_ahead(self) -> None:
        """Drop and stop whatever `read_ahead` started."""
        ahead, self._read_ahead = self._read_ahead, []
        for documents in ahead:
            await documents.aclose()

    async def save_document(self, directory: str, kind: str, payload: bytes) -> str:
        await self.stop_read_ahead()
        sealed = self.cipher.seal_document(kind, payload)
        name = document_name(directory, sealed)
        await self.storage.put(name, sealed, if_absent=True)
        return name

    async def load_document(self, name: str, kind: str) -> bytes:
        """A document's payload; a damaged or misnamed one is named through `on_damage`
        and raises DamagedDocument (an IntegrityError)."""
        try:
            return await self._read_document(name, kind)
        except DamagedDocument as exc:
            self.note_damage(name, exc.problem)
            raise

    async def _read_document(self, name: str, kind: str) -> bytes:
        """Read, check the name against the content, and open a document."""
        read = next((r for a in self._read_ahead if (r := a.take_read(name)) is not None), None)
        sealed = await (read if read is not None else self.storage.get(name))
        try:
            payload = self.cipher.open_document(kind, sealed)
        except IntegrityError as exc:
            raise DamagedDocument(name, f"damaged ({exc})") from None
        if name.startswith(CONTENT_NAMED_PREFIXES):
            digest = hashlib.sha256(sealed).hexdigest()
            if digest != name.rsplit("/", 1)[-1]:
                # Authentic content under a name that is not its hash: a copy, a rename
                # or a replay of another document (a flipped bit fails authentication).
                raise DamagedDocument(
                    name,
                    f"misnamed (an intact {kind} document whose name would be "
                    f"{name.rsplit('/', 1)[0]}/{digest[:16]}…: copied or renamed)",
                )
        return payload

    async def list_names(self, prefix: str) -> list[str]:
        ahead = (a.take_listing() for a in self._read_ahead if a.prefix == prefix)
        listing = next((task for task in ahead if task is not None), None)
        shared = next((t for p, t in self._shared_listings.items() if prefix.startswith(p)), None)
        if listing is not None:
            names = await listing
        elif shared is not None:
            # Shielded: this reader giving up must not cancel the listing's owner.
            names = [i.name for i in await asyncio.shield(shared) if i.name.startswith(prefix)]
        else:
            names = [info.name async for info in self.storage.list(prefix)]
        if isinstance(self.storage, CachingStorage):
            self.storage.prune_missing(prefix, set(names))
        return names

    async def delete_document(self, name: str) -> None:
        _require_prefix(name, DELETABLE_DOCUMENT_PREFIXES, "deletable document")
        await self.stop_read_ahead()
        await self.storage.delete(name)

    async def document_mtime(self, name: str) -> float:
        return (await self.storage.stat(name)).mtime

    # ---- key files ---------------------------------------------------------------------

    async def key_files(self) -> list[tuple[str, bytes]]:
        """Every key file, as (name, stored bytes)."""
        return await read_key_files(self.storage)

    async def save_key_file(self, key_file: bytes) -> str:
        name = document_name("keys", key_file)
        await self.storage.put(name, key_file, if_absent=True)
        return name

    async def delete_key_file(self, name: str) -> None:
        _require_prefix(name, ("keys/",), "key file")
        await self.storage.delete(name)

    async def aclose(self) -> None:
        await self.stop_read_ahead()
        await self.storage.aclose()


def _require_prefix(name: str, prefixes: tuple[str, ...], what: str) -> None:
    """A role reaches only its own objects: a name elsewhere is a bug, not a request."""
    if not name.startswith(prefixes):
        raise ValueError(f"{name!r} is not a {what} name")


if TYPE_CHECKING:

    def _plays_every_role(
        repo: Repository,
    ) -> tuple[BlobLoader, BlobSaverSource, DocumentStore, PackInventory]:
        return repo, repo, repo, repo  # mypy checks that a Repository plays each role
