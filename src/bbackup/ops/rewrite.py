"""Removing files from existing snapshots (`bbackup rewrite --exclude`): a secret backed
up by mistake. The trees on the way to an excluded entry are written again without it,
then a new snapshot that points at the new root, tagged `rewrite`; with `forget` the old
snapshot document is deleted once its replacement is stored. The content itself goes
when `prune` finds no snapshot referencing it any more."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bbackup.ops.excludes import Excluder
from bbackup.ops.tag import replacement
from bbackup.repository import (
    BlobLoader,
    BlobSaverSource,
    DocumentStore,
    PackInventory,
    RepositoryLock,
)
from bbackup.snapshot.model import DIR, Snapshot, Tree
from bbackup.snapshot.store import (
    SnapshotFilter,
    delete_snapshot,
    find_snapshots,
    load_snapshots,
    load_tree,
    save_snapshot,
    save_tree,
)

#: The tag a rewritten snapshot carries (restic's `rewrite` adds the same).
REWRITE_TAG = "rewrite"


class RewrittenRepository(PackInventory, BlobLoader, BlobSaverSource, DocumentStore, Protocol):
    """What rewrite needs: the index (read again under its lock), trees to read, a blob
    saver for new ones, snapshot documents."""


@dataclass(slots=True)
class RewrittenSnapshot:
    original: str
    #: The new snapshot's ID ("" in a dry run).
    new: str
    #: Full paths of the entries left out (a directory once, not what was below it).
    removed: list[str]


@dataclass(slots=True)
class RewriteReport:
    dry_run: bool
    rewritten: list[RewrittenSnapshot] = field(default_factory=list)
    #: Snapshots no pattern matched anything in: left as they were.
    unchanged: list[str] = field(default_factory=list)
    #: Snapshots every one of whose paths the patterns match: no new snapshot is written
    #: for them (it would hold nothing); `forget` removes them, as restic does.
    emptied: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)


#: A tree as rewritten: its new ID (the same if nothing was left out) and what was.
_RewrittenTree = tuple[bytes, list[str]]


async def rewrite_snapshots(
    repo: RewrittenRepository,
    references: Sequence[str],
    filters: SnapshotFilter,
    excludes: Sequence[str],
    *,
    forget: bool = False,
    dry_run: bool = False,
) -> RewriteReport:
    """Leave out every entry whose full path `excludes` match (backup's exclude syntax)
    from the snapshots the references name (every one the filters pass without any).

    The new snapshot keeps the original's time, host, paths and tags, adds the tag
    `rewrite` and the patterns to its excludes, and records the original's ID in its
    summary (`original`). Trees and their index segment are stored before the snapshots.
    Holds an exclusive lock, so no prune collects the new trees before a snapshot
    references them, and reads the index and the snapshots once it holds it: a prune
    that ran since the repository was opened may have deleted packs the index loaded
    then still lists, which new trees must not be deduplicated against."""
    excluder = Excluder(excludes)
    report = RewriteReport(dry_run=dry_run)
    async with RepositoryLock(repo, exclusive=True, purpose="rewrite"):
        await repo.load_index()
        snapshots = find_snapshots(await load_snapshots(repo), references, filters)
        writer = None if dry_run else repo.new_writer()

        async def store(tree: Tree) -> bytes:
            if writer is None:  # a dry run only needs to tell a new tree from the old
                return hashlib.sha256(tree.to_bytes()).digest()
            return await save_tree(writer, tree)

        done: dict[tuple[bytes, bytes], _RewrittenTree] = {}
        planned: list[tuple[Snapshot, Snapshot, list[str]]] = []
        try:
            for snapshot in snapshots:
                root, removed = await _rewrite_tree(repo, snapshot.tree, b"", excluder, done, store)
                if not removed:
                    report.unchanged.append(snapshot.id)
                    continue
                if _holds_nothing(snapshot, removed):
                    report.emptied.append(snapshot.id)
                    continue
                tags = sorted({*snapshot.tags, REWRITE_TAG})
                excluded = [
                    *snapshot.excludes,
                    *(p for p in excludes if p not in snapshot.excludes),
                ]
                new = replacement(snapshot, tree=root, tags=tags, excludes=excluded)
                planned.append((snapshot, new, removed))
            if writer is not None:
                await writer.flush()
        except BaseException:
            if writer is not None:  # what was uploaded stays unreferenced, for prune
                await writer.abort()
            raise
        for original, new, removed in planned:
            if not dry_run:
                await save_snapshot(repo, new)
            report.rewritten.append(RewrittenSnapshot(original.id, new.id, removed))
            if forget and not dry_run:
                await delete_snapshot(repo, original)
                report.forgotten.append(original.id)
        if forget and not dry_run:
            for snapshot in snapshots:
                if snapshot.id in report.emptied:
                    await delete_snapshot(repo, snapshot)
                    report.forgotten.append(snapshot.id)
    return report


def _holds_nothing(snapshot: Snapshot, removed: list[str]) -> bool:
    """Whether every path the snapshot backed up is, or lies below, a removed entry."""
    return all(any(p == r or p.startswith(r + "/") for r in removed) for p in snapshot.paths)


async def _rewrite_tree(
    repo: BlobLoader,
    tree_id: bytes,
    where: bytes,
    excluder: Excluder,
    done: dict[tuple[bytes, bytes], _RewrittenTree],
    store: Callable[[Tree], Awaitable[bytes]],
) -> _RewrittenTree:
    """The tree at path `where` without the excluded entries, depth first; `done`
    remembers each (tree, path), so a directory many snapshots share is walked once."""
    known = done.get((tree_id, where))
    if known is not None:
        return known
    tree = await load_tree(repo, tree_id)
    nodes = []
    removed: list[str] = []
    for node in tree.nodes:
        full = where + b"/" + node.name
        if excluder.excluded(full):
            removed.append(full.decode("utf-8", "backslashreplace"))
            continue
        if node.type == DIR and node.subtree is not None:
            subtree, below = await _rewrite_tree(repo, node.subtree, full, excluder, done, store)
            removed += below
            if subtree != node.subtree:
                node = dataclasses.replace(node, subtree=subtree)
        nodes.append(node)
    result = (tree_id, []) if not removed else (await store(Tree(nodes)), removed)
    done[(tree_id, where)] = result
    return result
