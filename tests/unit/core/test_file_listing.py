"""`bbackup ls` lists a snapshot's entries by absolute path, sorted, and below a path
only what is there, without loading the directories beside it."""

from __future__ import annotations

import asyncio

import pytest

from bbackup.ops.listing import list_files
from bbackup.snapshot.model import DIR, FILE, Node, Tree


def directory(name: bytes, subtree: bytes) -> Node:
    return Node(name=name, type=DIR, subtree=subtree)


def file(name: bytes, size: int = 0) -> Node:
    return Node(name=name, type=FILE, size=size)


#: /etc/hosts, /home/ann/notes.txt, /home/ann/b\xffd (not UTF-8), /home/bob/x, /zz
TREES = {
    b"root": Tree([directory(b"etc", b"etc"), directory(b"home", b"home"), file(b"zz")]),
    b"etc": Tree([file(b"hosts", 12)]),
    b"home": Tree([directory(b"ann", b"ann"), directory(b"bob", b"bob")]),
    b"ann": Tree([file(b"b\xffd"), file(b"notes.txt", 3)]),
    b"bob": Tree([file(b"x")]),
}


def listed(path: str | None) -> tuple[list[str], list[bytes]]:
    """The paths listed below `path`, and the trees that were loaded for them."""
    loaded: list[bytes] = []

    async def load(tree_id: bytes) -> Tree:
        loaded.append(tree_id)
        return TREES[tree_id]

    entries = asyncio.run(list_files(load, b"root", path))
    return [p for p, _ in entries], loaded


def test_everything_is_listed_by_absolute_path_in_order() -> None:
    paths, _ = listed(None)

    assert paths == [
        "/etc",
        "/etc/hosts",
        "/home",
        "/home/ann",
        "/home/ann/b\\xffd",
        "/home/ann/notes.txt",
        "/home/bob",
        "/home/bob/x",
        "/zz",
    ]


@pytest.mark.parametrize("path", ["home/ann", "/home/ann", "/home/ann/"])
def test_below_a_path_only_that_directory_is_listed_and_nothing_beside_is_loaded(
    path: str,
) -> None:
    paths, loaded = listed(path)

    assert paths == ["/home/ann", "/home/ann/b\\xffd", "/home/ann/notes.txt"]
    assert sorted(loaded) == [b"ann", b"home", b"root"]


def test_a_file_path_lists_that_file_and_a_missing_path_lists_nothing() -> None:
    assert listed("/etc/hosts")[0] == ["/etc/hosts"]
    assert listed("/home/an")[0] == []  # a prefix of a name is not a directory


def test_the_nodes_come_with_their_metadata() -> None:
    async def load(tree_id: bytes) -> Tree:
        return TREES[tree_id]

    entries = dict(asyncio.run(list_files(load, b"root", "/etc")))

    assert entries["/etc/hosts"].size == 12
    assert entries["/etc"].type == DIR
