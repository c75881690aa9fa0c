"""A re-backup takes an unchanged inode's extended attributes, symlink target and holes
from the parent snapshot's node instead of reading them again; any change to them
changes the ctime, and then they are read."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bbackup.ops import scan
from bbackup.ops.excludes import Excluder
from bbackup.ops.scan import scan_dir
from bbackup.snapshot.model import Node


def never(path: bytes, message: str) -> None:
    raise AssertionError(f"{path!r}: {message}")


def listing(root: Path, previous: dict[bytes, Node] | None = None) -> dict[bytes, Node]:
    entries = scan_dir(os.fsencode(root), Excluder([]), never, previous)
    return {node.name: node for _, node in entries}


def without_atime(nodes: dict[bytes, Node]) -> dict[bytes, Node]:
    return {name: replace(node, atime_ns=0) for name, node in nodes.items()}


@pytest.fixture
def xattr_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    reads: list[bytes] = []
    original = scan.read_xattrs

    def counting(path: bytes) -> list[tuple[bytes, bytes]]:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(scan, "read_xattrs", counting)
    return reads


def make_entries(root: Path) -> None:
    (root / "tagged").write_bytes(b"tagged\n")
    os.setxattr(root / "tagged", "user.colour", b"blue")
    (root / "plain").write_bytes(b"plain\n")
    os.symlink("plain", root / "link")
    with open(root / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(b"data in the middle")
    (root / "dir").mkdir()


def test_unchanged_inodes_keep_what_the_parent_recorded_without_reading_it(
    tmp_path: Path, xattr_reads: list[bytes]
) -> None:
    make_entries(tmp_path)
    first = listing(tmp_path)
    assert first[b"tagged"].xattrs == [(b"user.colour", b"blue")]
    reads_first = len(xattr_reads)

    again = listing(tmp_path, first)

    # The same nodes (but the symlink's atime, which the first scan's readlink moved),
    # and no attribute was read again.
    assert without_atime(again) == without_atime(first)
    assert len(xattr_reads) == reads_first
    assert again[b"link"].link_target == b"plain"
    assert again[b"sparse"].holes == first[b"sparse"].holes


def test_a_changed_attribute_target_or_hole_is_read_again(
    tmp_path: Path, xattr_reads: list[bytes]
) -> None:
    make_entries(tmp_path)
    first = listing(tmp_path)
    time.sleep(0.05)  # past the coarse clock's tick: the changes below move the ctime
    os.setxattr(tmp_path / "tagged", "user.colour", b"red")
    os.removexattr(tmp_path / "tagged", "user.colour")
    os.setxattr(tmp_path / "tagged", "user.shape", b"round")
    (tmp_path / "link").unlink()
    os.symlink("elsewhere", tmp_path / "link")
    with open(tmp_path / "sparse", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"more data")
    os.setxattr(tmp_path / "dir", "user.on-dir", b"yes")

    again = listing(tmp_path, first)

    assert again[b"tagged"].xattrs == [(b"user.shape", b"round")]
    assert again[b"link"].link_target == b"elsewhere"
    assert again[b"sparse"].holes != first[b"sparse"].holes
    assert again[b"dir"].xattrs == [(b"user.on-dir", b"yes")]
    # Only the unchanged file's attributes were not read again.
    names = {os.path.basename(p) for p in xattr_reads[len(first) :]}
    assert names == {b"tagged", b"link", b"sparse", b"dir"}


def test_a_node_of_another_inode_or_type_is_never_taken(tmp_path: Path) -> None:
    make_entries(tmp_path)
    first = listing(tmp_path)
    # A parent whose node for "tagged" has another inode: the attributes are read.
    wrong = dict(first)
    stale = first[b"tagged"]
    wrong[b"tagged"] = Node(
        stale.name,
        stale.type,
        stale.mode,
        mtime_ns=stale.mtime_ns,
        ctime_ns=stale.ctime_ns,
        size=stale.size,
        inode=stale.inode + 1,
        device=stale.device,
        xattrs=[(b"user.colour", b"stale")],
    )

    again = listing(tmp_path, wrong)

    assert again[b"tagged"].xattrs == [(b"user.colour", b"blue")]
