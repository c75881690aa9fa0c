"""`copy`: snapshots of one repository into another with other keys and chunker, for 3-2-1
copies. Every copied snapshot keeps its fields and records the source's ID as `original`,
which is how a later run knows it is there already.

Under a shared lock on the source and a backup's lock on the target, each snapshot is
planned (its trees read, `copy_trees`), its missing contents stored (`copy_content`), its
trees written, the writer flushed and the snapshot saved: packs → index segment →
snapshot, as a backup does. A run killed part way leaves packs that the next run adopts
(`adopt`), and the snapshots it finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bbackup.chunking import Chunker
from bbackup.errors import IntegrityError, UsageError
from bbackup.ops.adopt import adopt_packs
from bbackup.ops.copy_content import ContentCopier, CopyMode
from bbackup.ops.copy_reads import SourceBlobReader, packs_to_copy
from bbackup.ops.copy_trees import CopyMemo, TreeCopier, TreePair
from bbackup.repository import Repository, RepositoryLock
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.store import SnapshotFilter, find_snapshot, load_snapshots, save_snapshot

__all__ = [
    "Copier",
    "CopyMode",
    "CopyOptions",
    "CopySummary",
    "copy_mode",
    "describe",
    "find_copies",
]

#: Hashed with each repository's ID key: equal IDs mean the same ID key.
_ID_KEY_PROBE = b"bbackup copy: do these repositories share their ID key?"


@dataclass(slots=True)
class CopyOptions:
    """Which snapshots to copy, and how hard to work at it."""

    #: Snapshot references (`latest`, ID prefixes); none: every snapshot the filters pass.
    references: Sequence[str] = ()
    filters: SnapshotFilter = field(default_factory=SnapshotFilter)
    workers: int = 2
    #: Pack uploads in flight to the target, and source reads in flight.
    upload_slots: int = 4
    connections: int = 4
    #: Restore's ranged-read planning for the source (`Restorer`).
    max_gap: int = 1024 * 1024
    read_size: int | None = None


@dataclass(slots=True)
class CopySummary:
    """What one copy did; `copied`/`skipped` pair source and target snapshot IDs."""

    mode: str = ""
    copied: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    blobs_new: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    packs_written: int = 0
    packs_adopted: int = 0
    bytes_adopted: int = 0
    #: Bytes of source packs read.
    bytes_read: int = 0
    duration_seconds: float = 0.0
    requests: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def copy_mode(source: Repository, target: Repository) -> CopyMode:
    """How blob IDs carry over: REUSE if both share the chunker (seed and sizes) and the
    ID key, REHASH if only the chunker, else RECHUNK."""
    same_chunker = (
        source.master.chunker_seed == target.master.chunker_seed
        and source.config.chunker == target.config.chunker
    )
    same_ids = source.cipher.blob_id(_ID_KEY_PROBE) == target.cipher.blob_id(_ID_KEY_PROBE)
    if same_chunker and same_ids:
        return CopyMode.REUSE
    return CopyMode.REHASH if same_chunker else CopyMode.RECHUNK


def _origin(snapshot: Snapshot) -> str:
    return snapshot.original or snapshot.id


def _identity(snapshot: Snapshot) -> tuple[object, ...]:
    """What a snapshot and its copies share: origin, time, host, user, paths, tags, type."""
    s = snapshot
    return (_origin(s), s.time, s.host, s.user, tuple(s.paths), tuple(s.tags), s.backup_type)


def find_copies(sources: Sequence[Snapshot], targets: Sequence[Snapshot]) -> dict[str, Snapshot]:
    """Source snapshot ID → its copy among `targets`: a snapshot of the same origin (the
    `original` ID, or the ID of one that has none) with the same time, host, user, paths,
    tags and type. A source snapshot re-tagged since is copied again, as restic does."""
    by_identity = {_identity(t): t for t in targets}
    return {s.id: by_identity[_identity(s)] for s in sources if _identity(s) in by_identity}


class Copier:
    """Copies snapshots from `source` into `target` (both opened, indexes not loaded)."""

    def __init__(
        self,
        source: Repository,
        target: Repository,
        options: CopyOptions,
        *,
        on_copied: Callable[[Snapshot, Snapshot], None] | None = None,
        on_skipped: Callable[[Snapshot, Snapshot], None] | None = None,
        on_failed: Callable[[Snapshot, str], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        before_reads: Callable[[Collection[str]], Awaitable[object]] | None = None,
    ) -> None:
        """`before_reads`: called with the source's data packs the copy will read, before
        it reads any (to thaw those in an archive tier)."""
        if source.config.repository_id == target.config.repository_id:
            raise UsageError("the source and the target are the same repository")
        self.source = source
        self.target = target
        self.options = options
        self.mode = copy_mode(source, target)
        self.summary = CopySummary(mode=self.mode.value)
        self._on_copied = on_copied or (lambda _s, _t: None)
        self._on_skipped = on_skipped or (lambda _s, _t: None)
        self._on_failed = on_failed or (lambda _s, _m: None)
        self._warn = on_warning or (lambda _line: None)
        self._before_reads = before_reads
        self.memo = CopyMemo()
        self.reader: SourceBlobReader | None = None
        self.contents: ContentCopier | None = None
        #: Snapshots this run goes through (copied, skipped or failed), once known.
        self.snapshots_total = 0

    def progress(self) -> tuple[int, int]:
        """File contents and their plaintext bytes copied so far."""
        if self.contents is None:
            return 0, 0
        return self.contents.files_copied, self.contents.bytes_copied

    async def run(self) -> CopySummary:
        started = time.monotonic()
        pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="bb-copy-read")
        store_pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="bb-copy-store")
        try:
            async with (
                RepositoryLock(self.source, exclusive=False, purpose="copy"),
                RepositoryLock(self.target, exclusive=False, purpose="copy") as lock,
            ):
                # Indexes and snapshots are read once the locks are visible, as a backup
                # does: a prune that cannot see our lock may delete what we would reuse.
                stored, _, _ = await asyncio.gather(
                    self.target.list_packs(), self.target.load_index(), self.source.load_index()
                )
                adoption = await adopt_packs(
                    self.target, stored, lock.seen_locks, on_warning=self._warn
                )
                self.summary.packs_adopted = adoption.packs
                self.summary.bytes_adopted = adoption.bytes
                self._start(pool, store_pool)
                await self._copy_all()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            store_pool.shutdown(wait=True, cancel_futures=True)
        if self.reader is not None:
            self.summary.bytes_read = self.reader.bytes_read
        self.summary.duration_seconds = round(time.monotonic() - started, 3)
        return self.summary

    def _start(self, pool: ThreadPoolExecutor, store_pool: ThreadPoolExecutor) -> None:
        options = self.options
        self.reader = SourceBlobReader(
            self.source,
            connections=options.connections,
            max_gap=options.max_gap,
            read_size=options.read_size,
            pool=pool,
        )
        target = self.target
        chunker = Chunker(target.master.chunker_seed, target.config.chunker)
        self.contents = ContentCopier(
            self.reader,
            self.mode,
            chunker=chunker if self.mode is CopyMode.RECHUNK else None,
            raw_length=lambda blob_id: self.source.index.lookup(blob_id).raw_length,
            has_blob=target.index.__contains__,
            store_pool=store_pool,
            store_threads=options.workers,
        )

    def _select(self, snapshots: list[Snapshot]) -> list[Snapshot]:
        """The snapshots to copy, oldest first."""
        filters = self.options.filters
        if not self.options.references:
            return [s for s in snapshots if filters.matches(s)]
        chosen: dict[str, Snapshot] = {}
        for reference in self.options.references:
            snapshot = find_snapshot(snapshots, reference, filters)
            chosen[snapshot.id] = snapshot
        return sorted(chosen.values(), key=lambda s: (s.time, s.id))

    async def _copy_all(self) -> None:
        sources, targets = await asyncio.gather(
            load_snapshots(self.source), load_snapshots(self.target)
        )
        selected = self._select(sources)
        self.snapshots_total = len(selected)
        copies = find_copies(sources, targets)
        by_id = {s.id: s for s in sources}
        to_copy = [s for s in selected if s.id not in copies]
        if self._before_reads is not None and to_copy:
            reused = self.mode is CopyMode.REUSE
            target_has = self.target.index.__contains__ if reused else None
            await self._before_reads(await packs_to_copy(self.source, to_copy, target_has))
        for snapshot in selected:
            copy = copies.get(snapshot.id)
            if copy is not None:
                self.summary.skipped.append({"source": snapshot.id, "target": copy.id})
                self._on_skipped(snapshot, copy)
                continue
            try:
                copy = await self._copy_one(snapshot, copies, by_id)
            except IntegrityError as exc:
                # What this snapshot stored is not in any index: the next run adopts it.
                self.memo.clear()
                self.summary.failed.append({"source": snapshot.id, "message": str(exc)})
                self._on_failed(snapshot, str(exc))
                continue
            self.memo.trim()
            copies[snapshot.id] = copy
            self.summary.copied.append({"source": snapshot.id, "target": copy.id})
            self._on_copied(snapshot, copy)

    async def _copy_one(
        self, snapshot: Snapshot, copies: dict[str, Snapshot], by_id: dict[str, Snapshot]
    ) -> Snapshot:
        assert self.reader is not None and self.contents is not None
        writer = self.target.new_writer(upload_slots=self.options.upload_slots)
        trees = TreeCopier(self.reader, self.target, self.memo)
        try:
            plan = await trees.plan(snapshot.tree, _earlier_pair(snapshot, copies, by_id))
            self.memo.contents.update(await self.contents.copy(plan.contents, writer))
            tree = await trees.write(plan, writer)
            await writer.flush()
        except BaseException:
            await writer.abort()
            raise
        stats = writer.stats
        self.summary.blobs_new += stats.blobs_new
        self.summary.bytes_added += stats.bytes_added
        self.summary.bytes_stored += stats.bytes_stored
        self.summary.packs_written += stats.packs
        copy = Snapshot(
            time=snapshot.time,
            host=snapshot.host,
            paths=list(snapshot.paths),
            tree=tree,
            user=snapshot.user,
            tags=list(snapshot.tags),
            backup_type=snapshot.backup_type,
            parent=_translated(snapshot.parent, copies),
            base=_translated(snapshot.base, copies),
            program_version=snapshot.program_version,
            excludes=list(snapshot.excludes),
            summary=dict(snapshot.summary),
            original=_origin(snapshot),
        )
        await save_snapshot(self.target, copy)
        return copy


def _translated(snapshot_id: str | None, copies: dict[str, Snapshot]) -> str | None:
    """A source snapshot ID as the target knows it: its copy's ID if there is one."""
    if snapshot_id is not None and snapshot_id in copies:
        return copies[snapshot_id].id
    return snapshot_id


def _earlier_pair(
    snapshot: Snapshot, copies: dict[str, Snapshot], by_id: dict[str, Snapshot]
) -> TreePair | None:
    """The trees of the latest copied source snapshot of the same host and paths, and of
    its copy: what this snapshot's copy starts from."""
    candidates = [
        (by_id[source_id], copy)
        for source_id, copy in copies.items()
        if source_id in by_id
        and by_id[source_id].host == snapshot.host
        and by_id[source_id].paths == snapshot.paths
    ]
    if not candidates:
        return None
    earlier, copy = max(candidates, key=lambda pair: (pair[0].time, pair[0].id))
    return earlier.tree, copy.tree


def describe(snapshot: Snapshot) -> str:
    """One line naming a snapshot for people."""
    return (
        f"{snapshot.short_id} ({snapshot.time.strftime('%Y-%m-%d %H:%M:%S')}, {snapshot.host}, "
        f"{', '.join(snapshot.paths)})"
    )
