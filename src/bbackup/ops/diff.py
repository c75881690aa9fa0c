"""Comparing two snapshots (`bbackup diff`): both trees are walked together, and a
subtree whose ID is the same on both sides is skipped without being loaded, which is what
makes a diff of two snapshots of a mostly unchanged tree fast. The result is restic's:
one change per path (`+`, `-`, `M`, `T`, `U`) and counts and bytes of what was added and
removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bbackup.crypto.aead import BlobType
from bbackup.ops.listing import list_files
from bbackup.ops.walk_gc import TreeLoader, WalkCollection
from bbackup.repository import Index
from bbackup.snapshot.model import DIR, FILE, Node

ADDED = "+"
REMOVED = "-"
MODIFIED = "M"  # a file whose content differs
TYPE_CHANGED = "T"  # the same path is now another kind of entry
METADATA = "U"  # only metadata differs (reported with --metadata)


@dataclass(frozen=True, slots=True)
class Change:
    """One path that differs between the snapshots."""

    path: str
    modifier: str
    type: str
    #: Size before and after (0 on the side where the path does not exist).
    size_before: int = 0
    size_after: int = 0


@dataclass(slots=True)
class SideCounts:
    """What only one side has: entries by kind, and blobs and their plaintext bytes."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "others": self.others,
            "data_blobs": self.data_blobs,
            "tree_blobs": self.tree_blobs,
            "bytes": self.bytes,
        }

    def count(self, node: Node) -> None:
        if node.type == FILE:
            self.files += 1
        elif node.type == DIR:
            self.dirs += 1
        else:
            self.others += 1


@dataclass(slots=True)
class SnapshotDiff:
    """Every change, sorted by path, and the totals `restic diff` prints."""

    changes: list[Change] = field(default_factory=list)
    changed_files: int = 0
    added: SideCounts = field(default_factory=SideCounts)
    removed: SideCounts = field(default_factory=SideCounts)

    def totals(self) -> dict[str, Any]:
        return {
            "changed_files": self.changed_files,
            "added": self.added.to_dict(),
            "removed": self.removed.to_dict(),
        }


def metadata_differs(before: Node, after: Node) -> bool:
    """Whether what restore would set differs: mode, owner, times, links, xattrs (not the
    inode or device, which change on every copy and mean nothing to a user)."""
    return (
        before.mode != after.mode
        or before.uid != after.uid
        or before.gid != after.gid
        or before.user != after.user
        or before.group != after.group
        or before.mtime_ns != after.mtime_ns
        or before.link_target != after.link_target
        or before.rdev != after.rdev
        or before.xattrs != after.xattrs
    )


class _Differ:
    def __init__(self, load_tree: TreeLoader, index: Index, metadata: bool) -> None:
        self.load_tree = load_tree
        self.index = index
        self.metadata = metadata
        self.result = SnapshotDiff()
        #: Blobs referenced by the differing parts of each side (tree and data).
        self.blobs_before: set[bytes] = set()
        self.blobs_after: set[bytes] = set()

    def change(self, path: str, modifier: str, before: Node | None, after: Node | None) -> None:
        node = after or before
        assert node is not None
        self.result.changes.append(
            Change(
                path,
                modifier,
                node.type,
                before.size if before and before.type == FILE else 0,
                after.size if after and after.type == FILE else 0,
            )
        )

    async def one_side(self, path: str, node: Node, *, added: bool, top: bool = True) -> None:
        """`node` and everything below it exist on one side only (`top`: report `node`
        itself as added or removed, not as a type change)."""
        counts = self.result.added if added else self.result.removed
        blobs = self.blobs_after if added else self.blobs_before
        entries = [(path, node)]
        if node.type == DIR and node.subtree:
            blobs.add(node.subtree)
            below = await list_files(self.load_tree, node.subtree)
            entries += [(path + sub, n) for sub, n in below]
            blobs.update(n.subtree for _, n in below if n.type == DIR and n.subtree)
        for full, entry in entries:
            counts.count(entry)
            blobs.update(entry.content)
            if top or full != path:
                modifier = ADDED if added else REMOVED
                self.change(full, modifier, None if added else entry, entry if added else None)

    async def trees(self, path: str, before_id: bytes, after_id: bytes) -> None:
        self.blobs_before.add(before_id)
        self.blobs_after.add(after_id)
        before = {n.name: n for n in (await self.load_tree(before_id)).nodes}
        after = {n.name: n for n in (await self.load_tree(after_id)).nodes}
        for name in sorted(before.keys() | after.keys()):
            old, new = before.get(name), after.get(name)
            if new is None or old is None:
                node = old or new
                assert node is not None  # the name came from one of the two
                await self.one_side(f"{path}/{node.display_name}", node, added=old is None)
                continue
            full = f"{path}/{new.display_name}"
            if old.type != new.type:
                self.change(full, TYPE_CHANGED, old, new)
                await self.one_side(full, old, added=False, top=False)
                await self.one_side(full, new, added=True, top=False)
            else:
                await self.same_kind(full, old, new)

    async def same_kind(self, full: str, old: Node, new: Node) -> None:
        if old.type == FILE and old.content != new.content:
            self.result.changed_files += 1
            self.blobs_before.update(old.content)
            self.blobs_after.update(new.content)
            self.change(full, MODIFIED, old, new)
        elif self.metadata and metadata_differs(old, new):
            self.change(full, METADATA, old, new)
        if old.type == DIR and old.subtree and new.subtree and old.subtree != new.subtree:
            await self.trees(full, old.subtree, new.subtree)

    def count_blobs(self) -> None:
        """Blobs only one side's differing part references: how many and their bytes."""
        for only, counts in (
            (self.blobs_after - self.blobs_before, self.result.added),
            (self.blobs_before - self.blobs_after, self.result.removed),
        ):
            for blob_id in only:
                entry = self.index.get(blob_id)
                if entry is None:
                    continue  # a lost blob: `check` reports it, a diff can do without it
                if entry.blob_type == BlobType.TREE:
                    counts.tree_blobs += 1
                else:
                    counts.data_blobs += 1
                    counts.bytes += entry.raw_length


async def diff_trees(
    load_tree: TreeLoader, index: Index, before: bytes, after: bytes, *, metadata: bool = False
) -> SnapshotDiff:
    """The changes from the tree `before` to the tree `after` (snapshot roots).

    `added.bytes` / `removed.bytes` are the plaintext bytes of the data blobs that only the
    differing part of one side references (as restic counts them): content that moved
    between files is not counted, and content shared with an unchanged directory, which is
    never loaded, is."""
    with WalkCollection() as collection:
        differ = _Differ(collection.counting(load_tree), index, metadata)
        if before != after:
            await differ.trees("", before, after)
    differ.count_blobs()
    differ.result.changes.sort(key=lambda c: c.path)
    return differ.result
