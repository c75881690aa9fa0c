"""Change detection against the parent snapshot: which parent a backup type compares
with, and when a file or a directory may be taken from it without being read again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bbackup.ops.backup_changes import same_tree, select_parent, unchanged
from bbackup.snapshot.model import DIR, FILE, Node, Snapshot

BLOB_A, BLOB_B, TREE = b"a" * 32, b"b" * 32, b"t" * 32


def file_node(name: bytes = b"f", **changes: Any) -> Node:
    node = Node(name=name, type=FILE, size=10, mtime_ns=1, ctime_ns=2, inode=3)
    node.content = [BLOB_A, BLOB_B]
    return replace(node, **changes)


def snapshot(snap_id: str, day: int, backup_type: str, host: str = "h") -> Snapshot:
    when = datetime(2024, 1, day, tzinfo=UTC)
    return Snapshot(when, host, ["/data"], TREE, backup_type=backup_type, id=snap_id)


HISTORY = [
    snapshot("full1", 1, "full"),
    snapshot("inc2", 2, "incremental"),
    snapshot("full3", 3, "full"),
    snapshot("inc4", 4, "incremental"),
    snapshot("other-host", 5, "incremental", host="elsewhere"),
]


@pytest.mark.parametrize(
    ("backup_type", "parent"),
    [("incremental", "inc4"), ("differential", "full3"), ("full", None)],
)
def test_each_backup_type_compares_with_its_parent(backup_type: str, parent: str | None) -> None:
    chosen = select_parent(HISTORY, "h", ["/data"], backup_type)
    assert (chosen.id if chosen else None) == parent


def test_a_snapshot_of_other_paths_is_no_parent() -> None:
    assert select_parent(HISTORY, "h", ["/data", "/etc"], "incremental") is None


def test_a_file_with_the_same_metadata_and_live_blobs_is_unchanged() -> None:
    assert unchanged(file_node(content=[]), file_node(), {BLOB_A, BLOB_B})


@pytest.mark.parametrize("field", ["size", "mtime_ns", "ctime_ns", "inode"])
def test_a_file_whose_metadata_moved_is_read_again(field: str) -> None:
    moved = file_node(**{field: 99})
    assert not unchanged(moved, file_node(), {BLOB_A, BLOB_B})


def test_a_file_whose_blob_prune_marked_is_read_again() -> None:
    assert not unchanged(file_node(), file_node(), {BLOB_A})


def test_a_file_that_was_a_directory_is_read_again() -> None:
    assert not unchanged(file_node(), file_node(type=DIR), {BLOB_A, BLOB_B})


def test_a_directory_with_the_same_nodes_keeps_its_live_tree() -> None:
    nodes = [file_node(b"x"), file_node(b"y")]
    previous = {n.name: n for n in nodes}
    assert same_tree(nodes, previous, TREE, {TREE})
    assert not same_tree(nodes, previous, TREE, set())  # the tree's pack is marked
    assert not same_tree(nodes[:1], previous, TREE, {TREE})  # an entry went
    assert not same_tree([nodes[0], file_node(b"y", size=11)], previous, TREE, {TREE})
