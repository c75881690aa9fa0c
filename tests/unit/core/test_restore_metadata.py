"""Restored metadata: owners (and the users and groups ACLs name) by name or by number,
and extended attributes that cannot be set reported, not dropped, without losing the
other metadata."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from bbackup.ops.posix_acl import ACL_GROUP, ACL_USER, named_qualifiers, remap_acl
from bbackup.ops.restore_metadata import OwnerMapping, set_metadata
from bbackup.snapshot.model import FILE, Node

MTIME = 1_600_000_000_123_456_789


def test_owner_mapping_prefers_the_name_and_falls_back_to_the_number() -> None:
    mapping, numeric = OwnerMapping(), OwnerMapping(numeric=True)
    known = Node(name=b"f", type=FILE, uid=4321, gid=8765, user="root", group="root")
    unknown = Node(name=b"g", type=FILE, uid=4321, gid=8765, user="bbackup-nobody-here")
    unnamed = Node(name=b"h", type=FILE, uid=4321, gid=8765)

    assert mapping.ids(known) == (0, 0)
    assert mapping.ids(unknown) == (4321, 8765)
    assert mapping.ids(unnamed) == (4321, 8765)
    assert numeric.ids(known) == (4321, 8765)


def test_an_xattr_that_cannot_be_set_is_named_and_the_rest_still_applied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    node = Node(
        name=b"f",
        type=FILE,
        mode=0o100640,
        mtime_ns=MTIME,
        xattrs=[(b"no-such-namespace.attr", b"1"), (b"user.kept", b"2")],
    )
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match=r"extended attribute no-such-namespace\.attr not set"):
            set_metadata(fd, node, chown=None)
    finally:
        os.close(fd)
    st = os.stat(path)
    assert (oct(st.st_mode), st.st_mtime_ns) == (oct(0o100640), MTIME)
    assert os.getxattr(path, "user.kept") == b"2"


def test_user_xattrs_and_acls_the_snapshot_lacks_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.setxattr(path, "user.stale", b"from what was there before")
    node = Node(name=b"f", type=FILE, mode=0o100600, mtime_ns=MTIME)
    fd = os.open(path, os.O_RDONLY)
    try:
        set_metadata(fd, node, chown=None)
    finally:
        os.close(fd)
    assert os.listxattr(path) == []


def test_an_acl_gets_the_ids_its_names_have_here_in_the_kernels_order() -> None:
    def acl(*entries: tuple[int, int, int]) -> bytes:
        return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)

    none = 0xFFFFFFFF
    recorded = acl((1, 6, none), (2, 4, 10), (2, 5, 20), (4, 4, none), (16, 7, none))
    remapped = remap_acl(recorded, {(ACL_USER, 20): 5})

    assert named_qualifiers(recorded) == [(ACL_USER, 10), (ACL_USER, 20)]
    assert remapped == acl((1, 6, none), (2, 5, 5), (2, 4, 10), (4, 4, none), (16, 7, none))
    assert remap_acl(b"not an acl", {(ACL_USER, 20): 5}) == b"not an acl"
    node = Node(name=b"f", type=FILE, acl_names=[(ACL_USER, 10, "root"), (ACL_GROUP, 3, "x")])
    assert OwnerMapping().acl_ids(node) == {(ACL_USER, 10): 0}
    assert OwnerMapping(numeric=True).acl_ids(node) == {}
