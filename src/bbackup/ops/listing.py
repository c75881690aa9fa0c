"""Listing the files of a snapshot (`bbackup ls`): a walk of its trees from the root,
only as deep as the path asked for needs, into (path, node) pairs sorted by path."""

from __future__ import annotations

from bbackup.ops.walk_gc import TreeLoader, WalkCollection
from bbackup.snapshot.model import DIR, Node

__all__ = ["TreeLoader", "list_files"]


async def list_files(
    load_tree: TreeLoader, root: bytes, path: str | None = None
) -> list[tuple[str, Node]]:
    """Every entry of the tree `root` at or below `path` (everything without one), with
    its absolute path in the snapshot, sorted by path. Subtrees beside `path` are not
    loaded."""
    prefix = "/" + path.strip("/") if path and path.strip("/") else ""  # a/b/ → /a/b
    out: list[tuple[str, Node]] = []
    pending: list[tuple[bytes, str]] = [(root, "")]
    with WalkCollection() as collection:
        load = collection.counting(load_tree)
        while pending:
            tree_id, where = pending.pop()
            tree = await load(tree_id)
            for node in reversed(tree.nodes):
                full = f"{where}/{node.display_name}"
                below = prefix and (full == prefix or full.startswith(prefix + "/"))
                above = prefix and prefix.startswith(full + "/")
                if not prefix or below:
                    out.append((full, node))
                if node.type == DIR and node.subtree and (not prefix or below or above):
                    pending.append((node.subtree, full))
    return sorted(out, key=lambda e: e[0])
