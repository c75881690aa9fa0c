"""The diff walk over in-memory trees: an identical subtree is never loaded, a type change
is one `T`, and what lies below an added or removed directory is listed."""

from __future__ import annotations

import asyncio
import hashlib

from bbackup.ops.diff import diff_trees
from bbackup.repository import Index
from bbackup.snapshot.model import DIR, FILE, SYMLINK, Node, Tree


class TreeStore:
    """Trees by ID, remembering which were loaded."""

    def __init__(self) -> None:
        self.trees: dict[bytes, Tree] = {}
        self.loaded: list[bytes] = []

    def add(self, *nodes: Node) -> bytes:
        tree = Tree(list(nodes))
        tree_id = hashlib.sha256(tree.to_bytes()).digest()
        self.trees[tree_id] = tree
        return tree_id

    async def load(self, tree_id: bytes) -> Tree:
        self.loaded.append(tree_id)
        return self.trees[tree_id]


def file(name: str, content: bytes = b"", mode: int = 0o644) -> Node:
    return Node(name.encode(), FILE, mode=mode, content=[hashlib.sha256(content).digest()])


def directory(name: str, subtree: bytes) -> Node:
    return Node(name.encode(), DIR, subtree=subtree)


def test_an_identical_subtree_is_not_loaded() -> None:
    store = TreeStore()
    big = store.add(*(file(f"f{i}", str(i).encode()) for i in range(100)))
    before = store.add(directory("big", big), file("a", b"1"))
    after = store.add(directory("big", big), file("a", b"2"))

    result = asyncio.run(diff_trees(store.load, Index(), before, after))

    assert [(c.modifier, c.path) for c in result.changes] == [("M", "/a")]
    assert big not in store.loaded
    assert store.loaded == [before, after]


def test_type_change_and_directories_added_or_removed() -> None:
    store = TreeStore()
    inner = store.add(file("x"), file("y"))
    link = Node(b"p", SYMLINK, link_target=b"elsewhere")
    before = store.add(directory("gone", inner), file("p"))
    after = store.add(directory("new", inner), link)

    result = asyncio.run(diff_trees(store.load, Index(), before, after))

    assert [(c.modifier, c.path) for c in result.changes] == [
        ("-", "/gone"),
        ("-", "/gone/x"),
        ("-", "/gone/y"),
        ("+", "/new"),
        ("+", "/new/x"),
        ("+", "/new/y"),
        ("T", "/p"),
    ]
    assert (result.added.dirs, result.added.files, result.added.others) == (1, 2, 1)
    assert (result.removed.dirs, result.removed.files) == (1, 3)


def test_metadata_changes_only_with_metadata() -> None:
    store = TreeStore()
    before = store.add(file("a", b"same"))
    after = store.add(file("a", b"same", mode=0o600))

    quiet = asyncio.run(diff_trees(store.load, Index(), before, after))
    shown = asyncio.run(diff_trees(store.load, Index(), before, after, metadata=True))

    assert quiet.changes == []
    assert [(c.modifier, c.path) for c in shown.changes] == [("U", "/a")]
