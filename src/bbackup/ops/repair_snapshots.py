"""Repair snapshots: rewrite each snapshot whose trees reference blobs that are no longer
in the index (after `repair packs` dropped damaged ones), keeping everything intact and
naming what was lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bbackup.errors import IntegrityError, NotFound
from bbackup.repository import (
    BlobLoader,
    BlobSaverSource,
    DocumentStore,
    PackInventory,
    RepositoryLock,
    require_intact_index,
)
from bbackup.snapshot.model import DIR, FILE, Node, Snapshot, Tree
from bbackup.snapshot.store import (
    delete_snapshot,
    load_tree,
    read_snapshots,
    save_snapshot,
    save_tree,
)

#: The tag a rewritten snapshot carries (restic's `repair snapshots` adds the same).
REPAIRED_TAG = "repaired"


class RepairedSnapshots(PackInventory, BlobLoader, BlobSaverSource, DocumentStore, Protocol):
    """What repair snapshots needs: snapshot documents, the index and the trees they
    reach, and a blob saver for the rewritten trees."""


@dataclass(slots=True)
class RewrittenSnapshot:
    original: str
    #: The new snapshot's ID ("" in a dry run).
    new: str
    #: Paths (from the snapshot's root) of the files and directories left out: a file
    #: whose content lost a blob, a directory whose listing is lost (ending in "/").
    lost: list[str]


@dataclass(slots=True)
class RepairSnapshotsReport:
    dry_run: bool = False
    snapshots_checked: int = 0
    rewritten: list[RewrittenSnapshot] = field(default_factory=list)
    #: Snapshots whose root tree is lost: nothing to keep (removed with --forget).
    unrepairable: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: A tree as repaired: its ID (the original's if nothing was lost; None if the tree
#: itself is lost) and the paths, relative to it, of what was left out.
_RepairedTree = tuple[bytes | None, list[str]]


async def repair_snapshots(
    repo: RepairedSnapshots, *, dry_run: bool = False, forget: bool = False
) -> RepairSnapshotsReport:
    """Rewrite every snapshot that reaches a blob the index lacks.

    A file with any content blob missing is left out (a restored file with silent holes
    would be worse than none), as is a directory whose tree is missing or unreadable;
    everything else is kept as it was. The new snapshot keeps the original's time, host,
    paths and tags, adds the tag `repaired`, and records in its summary the original's ID
    and the lost paths. Trees and their index segment are stored before the snapshots,
    and with `forget` each original is removed only after its replacement is stored.
    Holds an exclusive lock, so no prune collects the new trees meanwhile.
    """
    report = RepairSnapshotsReport(dry_run=dry_run)
    async with RepositoryLock(repo, exclusive=True, purpose="repair snapshots"):
        await repo.load_index()
        # The blobs only it lists look lost: files would be dropped that are intact.
        require_intact_index(repo.damaged_segments, "repair snapshots")
        snapshots, _damaged = await read_snapshots(repo)
        report.snapshots_checked = len(snapshots)
        writer = None if dry_run else repo.new_writer()
        repaired: dict[bytes, _RepairedTree] = {}

        async def store(tree: Tree) -> bytes:
            if writer is None:  # a dry run only needs to tell a new tree from the old
                return hashlib.sha256(tree.to_bytes()).digest()
            return await save_tree(writer, tree)

        replacements: list[tuple[Snapshot, Snapshot | None]] = []
        for snapshot in snapshots:
            root, lost = await _repair_tree(repo, snapshot.tree, repaired, store)
            if root is None:
                report.unrepairable.append(snapshot.id)
                replacements.append((snapshot, None))
            elif root != snapshot.tree:
                replacements.append((snapshot, _replacement(snapshot, root, lost)))
        if writer is not None:
            await writer.flush()
        for original, new in replacements:
            if new is not None:
                if not dry_run:
                    await save_snapshot(repo, new)
                lost = list(new.summary["lost"])
                report.rewritten.append(RewrittenSnapshot(original.id, new.id, lost))
            if forget and not dry_run:
                await delete_snapshot(repo, original)
                report.forgotten.append(original.id)
    return report


def _replacement(original: Snapshot, root: bytes, lost: list[str]) -> Snapshot:
    tags = original.tags if REPAIRED_TAG in original.tags else [*original.tags, REPAIRED_TAG]
    summary = {**original.summary, "repaired_from": original.id, "lost": ["/" + p for p in lost]}
    return dataclasses.replace(original, tree=root, tags=tags, summary=summary, id="")


async def _repair_tree(
    repo: RepairedSnapshots,
    tree_id: bytes,
    repaired: dict[bytes, _RepairedTree],
    store: Callable[[Tree], Awaitable[bytes]],
) -> _RepairedTree:
    """`tree_id` with what is lost left out, depth first; `repaired` remembers each tree
    so one shared by many snapshots is walked and stored once."""
    known = repaired.get(tree_id)
    if known is not None:
        return known
    try:
        tree = await load_tree(repo, tree_id)
    except (IntegrityError, NotFound):  # damaged or gone; a store that fails is not loss
        repaired[tree_id] = (None, [""])
        return repaired[tree_id]
    nodes: list[Node] = []
    lost: list[str] = []
    for node in tree.nodes:
        name = node.display_name
        if node.type == DIR and node.subtree is not None:
            subtree, lost_below = await _repair_tree(repo, node.subtree, repaired, store)
            lost.extend(f"{name}/{path}" for path in lost_below)
            if subtree is None:
                continue
            if subtree != node.subtree:
                node = dataclasses.replace(node, subtree=subtree)
        elif node.type == FILE and not all(repo.index.has(b) for b in node.content):
            lost.append(name)
            continue
        nodes.append(node)
    if not lost:
        repaired[tree_id] = (tree_id, [])
    else:
        repaired[tree_id] = (await store(Tree(nodes)), lost)
    return repaired[tree_id]
