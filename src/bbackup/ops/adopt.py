"""Resuming an interrupted backup: adopt the packs it stored but never indexed.

A backup killed between uploading packs and writing their index segment leaves packs no
index lists. The next backup reads only each such pack's header (a ranged read of its
end), verifies it, and stores one index segment listing them, so deduplication finds their
blobs and nothing is uploaded again. A pack whose header does not open is skipped and
named; prune deals with it after the grace period.

A backup lists data/ only; tree/ is listed when a data pack is unindexed. An interrupted
run that stored tree packs and no data pack (everything deduplicated) is not adopted: the
next backup uploads those few directory listings again and prune removes the strays, where
listing tree/ on every backup would cost a LIST request each time (docs/bench/history.md,
"Adoption").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError, StorageError
from bbackup.repository import DocumentStore, IndexSegment, PackInfo, PackInventory
from bbackup.repository.index import INDEX_KIND
from bbackup.repository.lock import LockInfo
from bbackup.storage import ObjectInfo

#: Pack headers read at once (each read is one small ranged GET).
HEADER_READS_IN_FLIGHT = 8


class AdoptingRepository(PackInventory, DocumentStore, Protocol):
    """What adoption needs: the stored packs, their headers, and a place for a segment."""


@dataclass(slots=True)
class Adoption:
    """What one backup adopted."""

    packs: int = 0
    bytes: int = 0
    blobs: int = 0
    segment: str | None = None
    #: Unindexed packs left alone: name → why (damaged header, a prune is running).
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "packs": self.packs,
            "bytes": self.bytes,
            "blobs": self.blobs,
            "segment": self.segment,
            "skipped": self.skipped,
            "seconds": self.seconds,
        }


def unindexed_packs(stored: list[ObjectInfo], indexed: set[str]) -> list[ObjectInfo]:
    """The stored packs whose ID no index lists (live or marked)."""
    return [info for info in stored if info.name.rsplit("/", 1)[-1] not in indexed]


async def adopt_packs(
    repo: AdoptingRepository,
    stored: list[ObjectInfo],
    other_locks: list[LockInfo],
    *,
    on_warning: Callable[[str], None] | None = None,
    trees_listed: bool = True,
) -> Adoption:
    """Index every pack in `stored` that the loaded index does not list; without
    `trees_listed` (`stored` holds data/ only), tree/ is listed too if a data pack is
    unindexed.

    Call with the backup's lock visible and the index loaded after it; `other_locks` are
    the live locks seen since. While a prune runs, nothing is adopted: it may have read
    the index before our segment and delete these packs as unindexed. A prune that starts
    later sees our lock and keeps unindexed packs while any other lock is live
    (`prune_plan`), and sees our segment once it is stored.
    """
    started = time.monotonic()
    warn = on_warning or (lambda _line: None)
    adoption = Adoption()
    indexed = set(repo.index.all_packs())
    candidates = unindexed_packs(stored, indexed)
    if not candidates:
        return adoption
    if not trees_listed:
        candidates += unindexed_packs(await repo.list_packs(("tree/",)), indexed)
    pruning = [lock for lock in other_locks if lock.purpose == "prune" and not lock.stale]
    if pruning:
        why = f"a prune is running ({pruning[0].describe()})"
        adoption.skipped = {info.name: why for info in candidates}
        warn(
            f"{len(candidates)} packs left by an interrupted backup are not adopted: {why}; "
            "their data is uploaded again if needed"
        )
        return adoption
    archived = [info for info in candidates if info.archived]
    if archived:
        # Reading their headers would need a restore request first; prune still sees them.
        adoption.skipped.update({info.name: "in an archive tier" for info in archived})
        warn(
            f"{len(archived)} packs left by an interrupted backup are in an archive tier "
            f"({archived[0].storage_class}); not adopted"
        )
        candidates = [info for info in candidates if not info.archived]
    slots = asyncio.Semaphore(HEADER_READS_IN_FLIGHT)

    async def read(info: ObjectInfo) -> PackInfo | None:
        async with slots:
            try:
                return await _read_pack_info(repo, info)
            except (IntegrityError, StorageError) as exc:
                adoption.skipped[info.name] = str(exc)
                warn(
                    f"{info.name}: not in any index and its header is unreadable ({exc}); "
                    "not adopted (prune removes it after the grace period)"
                )
                return None

    found = [p for p in await asyncio.gather(*(read(i) for i in candidates)) if p is not None]
    if found:
        # Stored before any blob is looked up in them: a snapshot never references a
        # blob that no stored segment lists.
        segment = IndexSegment(found)
        adoption.segment = await repo.save_document("index", INDEX_KIND, segment.to_bytes())
        for pack in found:
            repo.index.add_pack(pack)
        adoption.packs = len(found)
        adoption.bytes = sum(p.size for p in found)
        adoption.blobs = sum(len(p.blobs) for p in found)
    adoption.seconds = round(time.monotonic() - started, 3)
    return adoption


async def _read_pack_info(repo: AdoptingRepository, info: ObjectInfo) -> PackInfo:
    directory, _, pack_id = info.name.partition("/")
    pack_id = pack_id.rsplit("/", 1)[-1]
    blob_type = BlobType.TREE if directory == BlobType.TREE.directory else BlobType.DATA
    blobs = await repo.read_pack_header(info.name, info.size)
    if any(b.blob_type is not blob_type for b in blobs):
        raise IntegrityError(f"pack header lists blobs that do not belong under {directory}/")
    listed = [(b.blob_id, b.offset, b.length, b.raw_length) for b in blobs]
    return PackInfo(pack_id, blob_type, info.size, listed)
