"""Repair index: rebuild the index from the headers of the stored packs. Repair packs:
salvage the intact blobs of damaged packs and drop the damaged ones (`repair_packs`).

Repair index reads each pack's header by ranged reads of its end only. The new segments
list every pack whose header opens (a damaged one keeps what a readable old segment said
about it, else it is left for `repair packs`), and the last of them supersedes every
segment there was, damaged ones included, which are deleted only after it is stored: a
crash leaves either the old segments, the old and some new ones (duplicates, harmless),
or the new ones.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError, NotFound, UsageError
from bbackup.ops.check_read_data import compare_header_with_index
from bbackup.ops.damage_record import remove_settled_records
from bbackup.repository import (
    BlobLoader,
    BlobSaver,
    BlobSaverSource,
    DocumentStore,
    IndexEntry,
    IndexSegment,
    PackInfo,
    PackInventory,
    PreparedBlob,
    RepositoryLock,
    pack_object_name,
    require_intact_index,
    verify_pack_id,
)
from bbackup.repository.index import INDEX_KIND
from bbackup.repository.writer import SEGMENT_MAX_BLOBS
from bbackup.storage import ObjectInfo

_PACK_NAME = re.compile(r"(data|tree)/[0-9a-f]{2}/([0-9a-f]{64})")


class RepairedRepository(PackInventory, DocumentStore, Protocol):
    """What repair index needs: the stored packs and their headers, the index segments,
    and the lock documents."""


@dataclass(slots=True)
class RepairIndexReport:
    dry_run: bool = False
    packs_read: int = 0
    blobs_indexed: int = 0
    #: Packs whose header cannot be read: name → what is wrong (for `repair packs`).
    damaged_packs: dict[str, str] = field(default_factory=dict)
    #: Damaged packs still indexed from what a readable old segment said about them.
    kept_from_old_index: list[str] = field(default_factory=list)
    #: Segments the old index used, skipped as superseded, or could not read.
    old_segments: list[str] = field(default_factory=list)
    damaged_segments: dict[str, str] = field(default_factory=dict)
    segments_written: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def repair_index(
    repo: RepairedRepository,
    *,
    dry_run: bool = False,
    connections: int = 4,
    on_progress: Callable[[str], None] | None = None,
) -> RepairIndexReport:
    """Rebuild the index from pack headers (see the module docstring). Holds an exclusive
    lock: a prune deleting packs meanwhile would leave the new index listing them."""
    report = RepairIndexReport(dry_run=dry_run)
    async with RepositoryLock(repo, exclusive=True, purpose="repair index"):
        await repo.load_index()
        old_index = repo.index.all_packs()
        marked = dict(repo.index.marked)
        report.damaged_segments = repo.damaged_segments
        report.old_segments = sorted(
            repo.index_segments + repo.superseded_segments + list(report.damaged_segments)
        )
        stored = iter(await repo.list_packs())
        found: list[PackInfo] = []

        async def reader() -> None:
            for info in stored:  # shared: each pack goes to exactly one reader
                pack = await _read_pack(repo, info, report)
                if pack is None and info.name in report.damaged_packs:
                    old = old_index.get(info.name.rsplit("/", 1)[-1])
                    if (
                        old is not None
                        and pack_object_name(old.blob_type, old.pack_id) == info.name
                    ):
                        report.kept_from_old_index.append(info.name)
                        pack = old
                if pack is not None:
                    found.append(pack)
                if on_progress is not None:
                    on_progress(info.name)

        await asyncio.gather(*(reader() for _ in range(max(1, connections))))
        packs = sorted(found, key=lambda p: p.pack_id)
        report.kept_from_old_index.sort()
        report.damaged_packs = dict(sorted(report.damaged_packs.items()))
        report.blobs_indexed = sum(len(p.blobs) for p in packs)
        if dry_run:
            return report
        live = {p.pack_id for p in packs}
        segments = _split(packs, {p: t for p, t in marked.items() if p in live})
        for segment in segments[:-1]:
            name = await repo.save_document("index", INDEX_KIND, segment.to_bytes())
            report.segments_written.append(name)
        last = segments[-1]
        last.supersedes = [name.rsplit("/", 1)[-1] for name in report.old_segments]
        report.segments_written.append(await repo.write_superseding_segment(last))
    return report


async def _read_pack(
    repo: PackInventory, info: ObjectInfo, report: RepairIndexReport
) -> PackInfo | None:
    """One stored pack as its header describes it; None (and the reason in the report)
    if the header cannot be read, None alone if the pack is gone or not a pack."""
    match = _PACK_NAME.fullmatch(info.name)
    if match is None or match.group(2)[:2] != info.name.split("/")[1]:
        report.damaged_packs[info.name] = "not a pack name"
        return None
    blob_type = BlobType.DATA if match.group(1) == "data" else BlobType.TREE
    try:
        blobs = await repo.read_pack_header(info.name, info.size)
    except NotFound:
        return None  # deleted since it was listed
    except IntegrityError as exc:
        report.damaged_packs[info.name] = f"header unreadable ({exc})"
        return None
    report.packs_read += 1
    if any(b.blob_type != blob_type for b in blobs):
        report.damaged_packs[info.name] = f"header lists blobs that are not {blob_type.directory}"
        return None
    return PackInfo(
        match.group(2),
        blob_type,
        info.size,
        [(b.blob_id, b.offset, b.length, b.raw_length) for b in blobs],
    )


def _split(packs: list[PackInfo], marked: dict[str, float]) -> list[IndexSegment]:
    """Segments of about SEGMENT_MAX_BLOBS blobs each (at least one, maybe empty)."""
    segments = [IndexSegment()]
    count = 0
    for pack in packs:
        if count and count + len(pack.blobs) > SEGMENT_MAX_BLOBS:
            segments.append(IndexSegment())
            count = 0
        segments[-1].packs.append(pack)
        count += len(pack.blobs)
        if pack.pack_id in marked:
            segments[-1].marked[pack.pack_id] = marked[pack.pack_id]
    return segments


class SalvagedRepository(PackInventory, BlobLoader, BlobSaverSource, DocumentStore, Protocol):
    """What repair packs needs: the stored packs and the index, blobs to verify, a blob
    saver for the salvaged copies, and the lock documents."""


@dataclass(slots=True)
class RepairPacksReport:
    dry_run: bool = False
    packs_read: int = 0
    bytes_read: int = 0
    #: Damaged packs: name → what is wrong with each (as `check --read-data` says it).
    damaged_packs: dict[str, list[str]] = field(default_factory=dict)
    #: Intact blobs of damaged packs copied (or, in a dry run, to copy) into new packs.
    blobs_salvaged: int = 0
    #: Damaged blobs (hex IDs) dropped from the index: the next backup of their files
    #: uploads them again. A blob with an intact copy in another pack is not listed.
    blobs_lost: list[str] = field(default_factory=list)
    packs_written: int = 0
    bytes_written: int = 0
    segments_written: list[str] = field(default_factory=list)
    packs_deleted: list[str] = field(default_factory=list)
    #: Damage records removed: every pack each names was read (or is gone from the index).
    records_removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _PackVerdict:
    """One pack read whole: what is wrong with it, its intact and its damaged blobs."""

    problems: list[str]
    intact: list[PreparedBlob]  # sealed, as stored: copied without opening them again
    damaged: list[bytes]


async def repair_packs(
    repo: SalvagedRepository,
    *,
    packs: Sequence[str] = (),
    dry_run: bool = False,
    connections: int = 4,
    on_progress: Callable[[str], None] | None = None,
) -> RepairPacksReport:
    """Find damaged packs and take them out of the repository, keeping what is intact.

    Every indexed pack (or those `packs` names: IDs, ID prefixes or object names) is read
    whole and verified as `check --read-data` does: SHA-256 against its name, header
    against the index, every blob against its ID. A pack that fails any of these is
    damaged: its intact blobs are copied into new packs through the blob saver (as prune's
    repack does; the saver stores their index segment), then new segments that list every
    other pack supersede the old ones, and only then are the damaged packs deleted. A
    crash before the last new segment leaves duplicates (harmless); after it, unindexed
    packs that prune deletes. Damaged blobs are in no index any more, so no backup
    deduplicates against them: the next backup of their files uploads them again.
    Holds an exclusive lock: nothing may read or write the index meanwhile.
    """
    report = RepairPacksReport(dry_run=dry_run)
    async with RepositoryLock(repo, exclusive=True, purpose="repair packs"):
        await repo.load_index()
        # The packs only it lists would vanish from the index this run writes.
        require_intact_index(repo.damaged_segments, "repair packs")
        indexed = repo.index.all_packs()
        selected = _select_packs(list(indexed), packs)
        pending = iter(selected)
        read = set(selected)  # a pack that cannot be read raises: nothing is removed
        writer: BlobSaver | None = None
        damaged: dict[str, PackInfo] = {}
        lost: set[bytes] = set()
        salvaging = asyncio.Lock()

        async def reader() -> None:
            nonlocal writer
            for pack_id in pending:  # shared: each pack goes to exactly one reader
                pack = indexed[pack_id]
                name = pack_object_name(pack.blob_type, pack_id)
                verdict = await _verify_whole_pack(repo, name, pack, report)
                if on_progress is not None:
                    on_progress(name)
                if not verdict.problems:
                    continue
                damaged[pack_id] = pack
                report.damaged_packs[name] = verdict.problems
                lost.update(verdict.damaged)
                report.blobs_salvaged += len(verdict.intact)
                if not dry_run:
                    async with salvaging:  # one pack's blobs at a time into the saver
                        if writer is None:
                            writer = repo.new_writer(upload_slots=max(1, connections))
                        await _salvage(writer, verdict)

        try:
            await asyncio.gather(*(reader() for _ in range(max(1, connections))))
            if writer is not None:
                await writer.flush()
        except BaseException:
            if writer is not None:
                await writer.abort()  # what it uploaded stays unindexed: prune removes it
            raise
        report.damaged_packs = dict(sorted(report.damaged_packs.items()))
        if writer is None:
            report.blobs_lost = sorted(b.hex() for b in lost)
            if not dry_run and not damaged:
                await _remove_records(repo, set(indexed), read, report)
            return report
        report.packs_written = writer.stats.packs
        report.bytes_written = writer.stats.bytes_stored
        report.segments_written = list(writer.stats.segments)
        report.segments_written += await _drop_from_index(repo, set(damaged))
        for pack_id, pack in sorted(damaged.items()):
            name = pack_object_name(pack.blob_type, pack_id)
            await repo.delete_pack(name)
            report.packs_deleted.append(name)
        await _remove_records(repo, set(indexed), read, report)
        await repo.load_index()
        report.blobs_lost = sorted(b.hex() for b in lost if not repo.index.has(b))
    return report


async def _remove_records(
    repo: SalvagedRepository, indexed: set[str], read: set[str], report: RepairPacksReport
) -> None:
    """Delete the damage records this run has dealt with: each pack a record names was
    read now (found intact, or damaged and taken out of the index) or is no longer
    indexed. Unreadable records go too, once every pack has been read: whatever they
    named was found again. Last, so a crash before leaves them (and their protection)."""
    report.records_removed += await remove_settled_records(
        repo, repo.damage_records, lambda pack: pack in read or pack not in indexed
    )
    if read >= indexed:
        for name in sorted(repo.unreadable_damage_records):
            await repo.delete_document(name)
            report.records_removed.append(name)


def _select_packs(indexed: list[str], wanted: Sequence[str]) -> list[str]:
    """The indexed pack IDs to read: all, or those `wanted` names (ID, unique ID prefix
    or object name such as data/ab/ab12…); UsageError for one that names no indexed pack."""
    if not wanted:
        return sorted(indexed)
    chosen: set[str] = set()
    for text in wanted:
        prefix = text.strip().rsplit("/", 1)[-1].lower()
        matches = [p for p in indexed if p.startswith(prefix)] if prefix else []
        if len(matches) != 1:
            why = "is ambiguous" if matches else "names no pack in the index"
            raise UsageError(f"--pack {text}: {why}")
        chosen.add(matches[0])
    return sorted(chosen)


async def _verify_whole_pack(
    repo: SalvagedRepository, name: str, pack: PackInfo, report: RepairPacksReport
) -> _PackVerdict:
    """Read one pack whole and sort its indexed blobs into intact and damaged."""
    try:
        data = await repo.read_pack(name)
    except NotFound:
        return _PackVerdict(["pack is missing"], [], [b[0] for b in pack.blobs])
    # Any other storage error propagates: a pack that cannot be read now is not known to
    # be damaged, and nothing is dropped for it.
    report.packs_read += 1
    report.bytes_read += len(data)
    return await asyncio.to_thread(_sort_blobs, repo, pack, data)


def _sort_blobs(repo: SalvagedRepository, pack: PackInfo, data: bytes) -> _PackVerdict:
    problems: list[str] = []
    try:
        verify_pack_id(pack.pack_id, data)
    except IntegrityError as exc:
        problems.append(str(exc).split(": ", 1)[-1])
    try:
        header = repo.parse_pack_header(data)
    except IntegrityError as exc:
        problems.append(f"header: {exc}")
    else:
        problems.extend(compare_header_with_index(pack, header))
    view = memoryview(data)
    intact: list[tuple[bytes, int, int, int]] = []
    damaged: list[bytes] = []
    for blob_id, offset, length, raw_length in pack.blobs:
        # Where the index places it: the index is what readers follow, header or not.
        entry = IndexEntry(pack.pack_id, pack.blob_type, offset, length, raw_length)
        sealed = view[offset : offset + length]
        try:
            if len(sealed) != length:
                raise IntegrityError(f"blob {blob_id.hex()[:16]} is truncated")
            repo.decode_blob(blob_id, entry, sealed)
        except IntegrityError as exc:
            problems.append(str(exc))
            damaged.append(blob_id)
        else:
            intact.append((blob_id, offset, length, raw_length))
    if not problems:
        return _PackVerdict(problems, [], [])  # nothing to salvage: keep no copies
    blob_type = BlobType(pack.blob_type)
    copies = [
        PreparedBlob(blob_type, blob_id, bytes(view[off : off + length]), raw, sealed=True)
        for blob_id, off, length, raw in intact
    ]
    return _PackVerdict(problems, copies, damaged)


async def _salvage(writer: BlobSaver, verdict: _PackVerdict) -> None:
    """Hand a damaged pack's intact blobs to the saver, sealed as they were stored (a
    sealed blob does not depend on its pack), so nothing is deduplicated against the
    damaged pack they come from."""
    for blob in verdict.intact:
        await writer.add(blob)
    verdict.intact.clear()


async def _drop_from_index(repo: SalvagedRepository, damaged: set[str]) -> list[str]:
    """Write segments listing every indexed pack but the damaged ones, the last of them
    superseding every segment the index was loaded from; return their names.

    The salvaged copies are listed too (the saver added them to the index), so the index
    never lacks them, whichever of their segments a crash leaves behind."""
    packs = repo.index.all_packs()
    kept = [packs[p] for p in sorted(packs) if p not in damaged]
    marked = {p: t for p, t in repo.index.marked.items() if p not in damaged}
    segments = _split(kept, marked)
    names = []
    for segment in segments[:-1]:
        names.append(await repo.save_document("index", INDEX_KIND, segment.to_bytes()))
    last = segments[-1]
    old = repo.index_segments + repo.superseded_segments
    last.supersedes = [name.rsplit("/", 1)[-1] for name in old]
    names.append(await repo.write_superseding_segment(last))
    return names
