"""What prune works from: the repository roles it needs (PrunedRepository), its options,
and the planner's input gathered from the snapshots, the index and the stored packs.
`used_blobs`, every blob some snapshot reaches, also tells `locks extend` the live packs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bbackup.errors import IntegrityError
from bbackup.ops.prune_plan import PackState, PruneInput
from bbackup.ops.walk_gc import WalkCollection
from bbackup.repository import (
    BlobLoader,
    BlobSaverSource,
    DamageRecord,
    DocumentStore,
    PackInventory,
)
from bbackup.snapshot.model import DIR, FILE
from bbackup.snapshot.store import SnapshotSource, load_tree, read_snapshots
from bbackup.storage import ObjectInfo, VersionedStore


class PrunedRepository(PackInventory, BlobLoader, BlobSaverSource, DocumentStore, Protocol):
    """What prune needs: the stored packs and the index, blobs to verify and copy, a blob
    saver for the copies, the snapshot and lock documents, and the damage records."""

    @property
    def damage_records(self) -> dict[str, DamageRecord]: ...


@dataclass(slots=True)
class PruneOptions:
    dry_run: bool = False
    grace_seconds: float = 24 * 3600.0
    max_unused: float = 0.05
    connections: int = 4
    #: The bucket's versions, when it keeps them (an object-locked repository): deletes
    #: then only hide packs, and prune says when their space is really freed.
    versions: VersionedStore | None = None


async def used_blobs(repo: SnapshotSource) -> set[bytes]:
    """Every blob (trees and contents) that some snapshot reaches; IntegrityError if a
    snapshot document is damaged, since what it reaches cannot be known."""
    used: set[bytes] = set()
    snapshots, damaged = await read_snapshots(repo)
    if damaged:
        name, problem = next(iter(damaged.items()))
        raise IntegrityError(
            f"{name}: {problem}: prune cannot tell which data that snapshot uses; "
            "prune did nothing (remove the damaged snapshot document first)"
        )
    with WalkCollection() as collection:
        for snapshot in snapshots:
            stack = [snapshot.tree]
            while stack:
                tree_id = stack.pop()
                if tree_id in used:
                    continue
                used.add(tree_id)
                nodes = (await load_tree(repo, tree_id)).nodes
                collection.walked(len(nodes))
                for node in nodes:
                    if node.type == DIR and node.subtree is not None:
                        stack.append(node.subtree)
                    elif node.type == FILE:
                        used.update(node.content)
    return used


async def _stored_packs(packs: PackInventory) -> dict[str, ObjectInfo]:
    return {info.name.rsplit("/", 1)[-1]: info for info in await packs.list_packs()}


async def gather_input(
    repo: PrunedRepository,
    options: PruneOptions,
    *,
    now: float,
    oldest_other_lock: float | None,
    delete_unused_at_once: bool,
    fence: float | None = None,
) -> tuple[PruneInput, dict[str, ObjectInfo]]:
    """Read snapshots, index (already loaded) and stored packs, all after the locks."""
    used = await used_blobs(repo)
    stored = await _stored_packs(repo)
    index = repo.index
    used_home = {}
    for blob_id in used:
        if index.has(blob_id):
            used_home[blob_id] = index.lookup(blob_id).pack_id
    states = []
    all_packs = index.all_packs()
    for pack_id, pack in all_packs.items():
        info = stored.get(pack_id)
        states.append(
            PackState(
                pack_id,
                pack.size,
                tuple((b[0], b[2]) for b in pack.blobs),
                indexed=True,
                stored=info is not None,
                marked_at=index.marked.get(pack_id),
                storage_class=info.storage_class if info else "STANDARD",
                mtime=info.mtime if info else 0.0,
            )
        )
    for pack_id, info in stored.items():
        if pack_id not in all_packs:
            states.append(
                PackState(
                    pack_id,
                    info.size,
                    indexed=False,
                    storage_class=info.storage_class,
                    mtime=info.mtime,
                )
            )
    inp = PruneInput(
        tuple(states),
        used_home,
        now=now,
        grace=options.grace_seconds,
        max_unused=options.max_unused,
        oldest_other_lock=oldest_other_lock,
        delete_unused_at_once=delete_unused_at_once,
        fence=fence,
    )
    return inp, stored
