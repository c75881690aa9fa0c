"""Check's structure pass: every index segment opens, every pack the index lists is stored
with the indexed size (packs no index lists are one warning), and every tree a snapshot
reaches loads, with each blob it references in the index."""

from __future__ import annotations

from bbackup.errors import IntegrityError, StorageError
from bbackup.ops.check_report import REPAIR_PACKS_ADVICE, CheckReport
from bbackup.ops.walk_gc import WalkCollection
from bbackup.report_format import human_bytes
from bbackup.repository import PackInventory, pack_object_name
from bbackup.snapshot.model import DIR, FILE, Node
from bbackup.snapshot.store import SnapshotSource, load_tree, read_snapshots


async def _check_packs_exist(
    inventory: PackInventory, report: CheckReport, damaged: dict[str, frozenset[bytes]]
) -> None:
    for name, problem in inventory.damaged_segments.items():
        report.errors.append(f"{name}: {problem}; run `bbackup repair index`")
    stored = {info.name: info.size for info in await inventory.list_packs()}
    packs = inventory.index.all_packs()
    report.packs = len(packs)
    indexed_names = set()
    for pack in packs.values():
        name = pack_object_name(pack.blob_type, pack.pack_id)
        indexed_names.add(name)
        if name not in stored:
            report.errors.append(
                f"{name}: pack is in the index but missing from the repository; "
                + REPAIR_PACKS_ADVICE
            )
        elif stored[name] != pack.size:
            report.errors.append(
                f"{name}: size {stored[name]} does not match the indexed size {pack.size}; "
                + REPAIR_PACKS_ADVICE
            )
        else:
            continue
        # None of its blobs can be trusted without reading it: none is deduplicated.
        damaged[pack.pack_id] = frozenset(blob[0] for blob in pack.blobs)
    unindexed = {name: stored[name] for name in sorted(set(stored) - indexed_names)}
    report.unindexed_packs = unindexed
    if unindexed:
        # One line however many: an interrupted backup leaves hundreds.
        why = (
            "a damaged index segment may list them; run `bbackup repair index`"
            if inventory.damaged_segments
            else "left by interrupted backups; the next backup adopts them, or prune "
            "removes them after the grace period"
        )
        report.warnings.append(
            f"{len(unindexed)} packs ({human_bytes(sum(unindexed.values()))}) are not in any "
            f"index: {why}"
        )


async def _check_snapshots(repo: SnapshotSource, report: CheckReport) -> None:
    snapshots, damaged = await read_snapshots(repo)
    report.errors.extend(f"{name}: {problem}" for name, problem in damaged.items())
    report.snapshots = len(snapshots)
    seen_trees: set[bytes] = set()
    referenced: set[bytes] = set()
    with WalkCollection() as collection:
        for snapshot in snapshots:
            stack = [(snapshot.tree, f"snapshot {snapshot.short_id}:/")]
            while stack:
                tree_id, where = stack.pop()
                if tree_id in seen_trees:
                    continue
                seen_trees.add(tree_id)
                if not repo.index.has(tree_id):
                    report.errors.append(
                        f"tree {tree_id.hex()} ({where}): not in the index; "
                        "run `bbackup repair snapshots`"
                    )
                    continue
                try:
                    tree = await load_tree(repo, tree_id)
                except (IntegrityError, StorageError) as exc:
                    report.errors.append(f"tree {tree_id.hex()} ({where}): {exc}")
                    continue
                collection.walked(len(tree.nodes))
                _check_nodes(repo, tree.nodes, where, stack, referenced, report)
    report.trees = len(seen_trees)
    report.blobs_referenced = len(referenced)


def _check_nodes(
    repo: SnapshotSource,
    nodes: list[Node],
    where: str,
    stack: list[tuple[bytes, str]],
    referenced: set[bytes],
    report: CheckReport,
) -> None:
    """Check one tree's nodes (in `where`): each directory has a subtree, which is queued
    on `stack`; each blob a file references, the first time, is in the index."""
    for node in nodes:
        if node.type == DIR:
            if node.subtree is None:
                report.errors.append(f"{_node_path(where, node)}: directory without a subtree")
            else:
                stack.append((node.subtree, _node_path(where, node)))
        elif node.type == FILE:
            for blob_id in node.content:
                if blob_id not in referenced:
                    referenced.add(blob_id)
                    if not repo.index.has(blob_id):
                        report.errors.append(
                            f"blob {blob_id.hex()} ({_node_path(where, node)}): not in the "
                            "index; run `bbackup repair snapshots`"
                        )


def _node_path(where: str, node: Node) -> str:
    # Made only where needed (a directory, an error): check visits every node.
    return where.rstrip("/") + "/" + node.display_name
