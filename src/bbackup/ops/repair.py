"""Repair index: rebuild the index from the headers of the stored packs.

Each pack's header is read by ranged reads of its end only. The new segments list every
pack whose header opens (a damaged one keeps what a readable old segment said about it,
else it is left for `repair packs`), and the last of them supersedes every segment there
was, damaged ones included, which are deleted only after it is stored: a crash leaves
either the old segments, the old and some new ones (duplicates, harmless), or the new ones.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError, NotFound
from bbackup.repository import (
    DocumentStore,
    IndexSegment,
    PackInfo,
    PackInventory,
    RepositoryLock,
    pack_object_name,
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
