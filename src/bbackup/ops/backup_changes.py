"""What a backup may take from its parent snapshot without reading it again: which snapshot
is the parent, which files kept their content, which directories kept their tree.

Pure functions over plain data; the index is only asked whether a blob is still live.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from bbackup.snapshot.model import FILE, Node, Snapshot


def select_parent(
    snapshots: Sequence[Snapshot], host: str, paths: Sequence[str], backup_type: str
) -> Snapshot | None:
    """The snapshot to compare with: latest (incremental) or latest full (differential)."""
    if backup_type == "full":
        return None
    same = [s for s in snapshots if s.host == host and sorted(s.paths) == sorted(paths)]
    if backup_type == "differential":
        same = [s for s in same if s.backup_type == "full"]
    return max(same, key=lambda s: (s.time, s.id), default=None)


def unchanged(node: Node, previous: Node, live: Container[bytes]) -> bool:
    """True if a file's size, mtime, ctime and inode match its node in the parent, and
    every blob of the parent's content is still live: the file needs no reading."""
    return (
        previous.type == FILE
        and node.type == FILE
        and previous.size == node.size
        and previous.mtime_ns == node.mtime_ns
        and previous.ctime_ns == node.ctime_ns
        and previous.inode == node.inode
        and all(blob in live for blob in previous.content)
    )


def same_file(node: Node, previous: Node) -> bool:
    """True if a file read again has the content and change-detection metadata it had in
    the parent: what restic calls unmodified (a file only touched counts as changed)."""
    return (
        previous.type == FILE
        and previous.content == node.content
        and previous.size == node.size
        and previous.mtime_ns == node.mtime_ns
        and previous.ctime_ns == node.ctime_ns
        and previous.inode == node.inode
    )


def same_tree(
    nodes: Sequence[Node],
    previous: dict[bytes, Node],
    parent_tree: bytes,
    live: Container[bytes],
) -> bool:
    """True if a directory's nodes equal the parent's and the parent's tree blob is live
    (not in a pack prune marked): the same nodes serialise to the same bytes, so the
    parent's tree can be used as it is."""
    return (
        len(nodes) == len(previous)
        and all(previous.get(n.name) == n for n in nodes)
        and parent_tree in live
    )
