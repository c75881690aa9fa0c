"""The Repository: the master key, config, index, blobs and documents of an open repository.

Everything above this layer reads and writes through the roles a Repository plays
(`roles.py`): blobs by ID, packs and documents by name. Storage objects are never touched
directly. Damage stays local: a document that fails its name or its authentication is
named once (`on_damage`) and skipped by whoever can do without it. Creating and opening
one is `opening.py`; reading and checking key files, `key_files.py`. A Repository is
built in layers: `documents.py` (documents, key files, damage named once), `blobs.py`
(blobs and packs), and here the index as loaded from its segments and damage records.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import TYPE_CHECKING

from bbackup.crypto.keys import MasterKey
from bbackup.errors import IntegrityError, NotFound
from bbackup.repository.blobs import RepositoryBlobs
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import (
    DAMAGE_KIND,
    DAMAGE_PREFIX,
    DamageRecord,
    merge_locations,
)
from bbackup.repository.documents import DamagedDocument, DamageReporter
from bbackup.repository.index import INDEX_KIND, Index, IndexSegment
from bbackup.repository.roles import (
    BlobLoader,
    BlobSaverSource,
    DocumentStore,
    PackInventory,
)
from bbackup.storage import Storage, StorageStack

CONFIG_NAME = "config"
CONFIG_KIND = "config"

#: Times `load_index` lists `index/` again when segments it listed are gone before it
#: reads them (a prune beside it superseded and deleted them).
SEGMENT_LISTING_RETRIES = 5


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


class Repository(RepositoryBlobs):
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
        super().__init__(stack, storage, config, master, key_name, on_damage)
        self._index_segments: list[str] = []
        self._superseded_segments: list[str] = []
        self._damaged_segments: dict[str, str] = {}
        self._damage_records: dict[str, DamageRecord] = {}
        self._unreadable_records: dict[str, str] = {}

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

    async def write_superseding_segment(self, segment: IndexSegment) -> str:
        name = await self.save_document("index", INDEX_KIND, segment.to_bytes())
        for old in segment.supersedes:
            if f"index/{old}" != name:
                await self.storage.delete(f"index/{old}")
        return name


if TYPE_CHECKING:

    def _plays_every_role(
        repo: Repository,
    ) -> tuple[BlobLoader, BlobSaverSource, DocumentStore, PackInventory]:
        return repo, repo, repo, repo  # mypy checks that a Repository plays each role
