"""Repository statistics (`bbackup stats`): sizes in restic's three counting modes, the
deduplication and compression ratios, what each snapshot added and holds alone, and the
stored bytes and objects per storage class.

Modes, as `restic stats` counts them over the selected snapshots:
- restore-size: every entry of every snapshot, with the size a restore writes (hard links
  counted once per snapshot);
- files-by-contents: files with the same content counted once;
- raw-data: the blobs the snapshots reference, each once, as stored and uncompressed.
Only trees, index and the listing are read: never a data pack, so archived packs cost
nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bbackup.ops.walk_gc import WalkCollection
from bbackup.repository import BlobLoader
from bbackup.snapshot.model import DIR, FILE, Snapshot
from bbackup.snapshot.store import load_tree
from bbackup.storage import ObjectInfo

MODES = ("restore-size", "files-by-contents", "raw-data")


@dataclass(slots=True)
class _TreeFigures:
    """What one tree holds, below it included (memoized by tree ID: unchanged directories
    of later snapshots are counted without walking them again)."""

    blobs: frozenset[bytes]
    entries: int
    #: (size, content, hard-link identity or None) of every regular file below.
    files: tuple[tuple[int, tuple[bytes, ...], tuple[int, int] | None], ...]

    @property
    def restore_size(self) -> int:
        """Bytes a restore writes: file sizes, each hard-linked file once."""
        links: set[tuple[int, int]] = set()
        total = 0
        for size, _, link in self.files:
            if link is not None:
                if link in links:
                    continue
                links.add(link)
            total += size
        return total


@dataclass(slots=True)
class SnapshotStats:
    id: str
    time: str
    restore_size: int = 0
    entries: int = 0
    #: Stored bytes of the blobs no older snapshot references (what its backup added).
    added_size: int = 0
    #: Stored bytes of the blobs no other snapshot references (what forgetting it alone
    #: frees, once prune runs).
    unique_size: int = 0


@dataclass(slots=True)
class RepositoryStats:
    mode: str
    snapshots_count: int = 0
    #: The mode's figures, with restic's names.
    total_size: int = 0
    total_file_count: int = 0
    total_uncompressed_size: int = 0
    total_blob_count: int = 0
    #: Over the selected snapshots, whatever the mode.
    restore_size: int = 0
    raw_data_size: int = 0
    stored_size: int = 0
    blobs: int = 0
    packs: int = 0
    snapshots: list[SnapshotStats] = field(default_factory=list)
    #: Every object in the repository by storage class: {"bytes": n, "objects": n}.
    storage_classes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def dedup_ratio(self) -> float:
        """What a restore of the selected snapshots writes per byte of distinct content."""
        return round(self.restore_size / self.raw_data_size, 3) if self.raw_data_size else 0.0

    @property
    def compression_ratio(self) -> float:
        return round(self.raw_data_size / self.stored_size, 3) if self.stored_size else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "snapshots_count": self.snapshots_count,
            "total_size": self.total_size,
        }
        if self.mode == "raw-data":
            out["total_uncompressed_size"] = self.total_uncompressed_size
            out["total_blob_count"] = self.total_blob_count
            out["compression_ratio"] = self.compression_ratio
        else:
            out["total_file_count"] = self.total_file_count
        out.update(
            restore_size=self.restore_size,
            raw_data_size=self.raw_data_size,
            stored_size=self.stored_size,
            dedup_ratio=self.dedup_ratio,
            compression_ratio=self.compression_ratio,
            blobs=self.blobs,
            packs=self.packs,
            snapshots=[
                {
                    "id": s.id,
                    "time": s.time,
                    "restore_size": s.restore_size,
                    "added_size": s.added_size,
                    "unique_size": s.unique_size,
                }
                for s in self.snapshots
            ],
            storage_classes=self.storage_classes,
        )
        return out


async def repository_stats(
    loader: BlobLoader,
    all_snapshots: Sequence[Snapshot],
    selected: Sequence[Snapshot],
    objects: Iterable[ObjectInfo],
    *,
    mode: str = "restore-size",
) -> RepositoryStats:
    """Statistics of `selected` (per-snapshot added and unique sizes are measured against
    every snapshot in `all_snapshots`); `objects` is the repository's listing."""
    if mode not in MODES:
        raise ValueError(f"unknown stats mode {mode!r}")
    index = loader.index
    memo: dict[bytes, _TreeFigures] = {}
    # Every tree is held (memo) until the figures are made: no sweeps, nothing to free.
    with WalkCollection():
        figures = {s.id: await _tree_figures(loader, s.tree, memo) for s in all_snapshots}
        for s in selected:
            if s.id not in figures:
                figures[s.id] = await _tree_figures(loader, s.tree, memo)

    def stored(blob_id: bytes) -> int:
        return index.lookup(blob_id).length if index.has(blob_id) else 0

    stats = RepositoryStats(mode, snapshots_count=len(selected))
    users: dict[bytes, int] = {}
    for s in all_snapshots:
        for blob_id in figures[s.id].blobs:
            users[blob_id] = users.get(blob_id, 0) + 1
    seen: set[bytes] = set()
    per_snapshot: dict[str, SnapshotStats] = {}
    for s in sorted(all_snapshots, key=lambda s: (s.time, s.id)):
        tree = figures[s.id]
        row = SnapshotStats(s.id, s.time.isoformat(), tree.restore_size, tree.entries)
        row.added_size = sum(stored(b) for b in tree.blobs - seen)
        row.unique_size = sum(stored(b) for b in tree.blobs if users[b] == 1)
        seen |= tree.blobs
        per_snapshot[s.id] = row
    stats.snapshots = [
        per_snapshot.get(s.id)
        or SnapshotStats(s.id, s.time.isoformat(), figures[s.id].restore_size)
        for s in sorted(selected, key=lambda s: (s.time, s.id))
    ]

    blobs: set[bytes] = set()
    unique_files: dict[tuple[bytes, ...], int] = {}
    for s in selected:
        tree = figures[s.id]
        blobs |= tree.blobs
        stats.restore_size += tree.restore_size
        stats.total_file_count += tree.entries
        for size, content, _ in tree.files:
            unique_files.setdefault(content, size)
    entries = [index.lookup(b) for b in blobs if index.has(b)]
    stats.blobs = len(entries)
    stats.packs = len({e.pack_id for e in entries})
    stats.stored_size = sum(e.length for e in entries)
    stats.raw_data_size = sum(e.raw_length for e in entries)
    if mode == "restore-size":
        stats.total_size = stats.restore_size
    elif mode == "files-by-contents":
        stats.total_size = sum(unique_files.values())
        stats.total_file_count = len(unique_files)
    else:
        stats.total_size = stats.stored_size
        stats.total_uncompressed_size = stats.raw_data_size
        stats.total_blob_count = stats.blobs
    for info in objects:
        row_class = stats.storage_classes.setdefault(info.storage_class, {"bytes": 0, "objects": 0})
        row_class["bytes"] += info.size
        row_class["objects"] += 1
    return stats


async def _tree_figures(
    loader: BlobLoader, tree_id: bytes, memo: dict[bytes, _TreeFigures]
) -> _TreeFigures:
    known = memo.get(tree_id)
    if known is not None:
        return known
    tree = await load_tree(loader, tree_id)
    blobs: set[bytes] = {tree_id}
    entries = 0
    files: list[tuple[int, tuple[bytes, ...], tuple[int, int] | None]] = []
    for node in tree.nodes:
        entries += 1
        if node.type == DIR and node.subtree is not None:
            below = await _tree_figures(loader, node.subtree, memo)
            blobs |= below.blobs
            entries += below.entries
            files.extend(below.files)
        elif node.type == FILE:
            blobs.update(node.content)
            link = (node.device, node.inode) if node.nlink > 1 else None
            files.append((node.size, tuple(node.content), link))
    figures = _TreeFigures(frozenset(blobs), entries, tuple(files))
    memo[tree_id] = figures
    return figures
