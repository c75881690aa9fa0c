"""Backup then restore brings back every kind of entry with every piece of its metadata,
compared field by field: type, mode (set-id and sticky bits too), owner, size, ns mtime,
link targets, xattrs and POSIX ACLs, hard-link groups, holes (st_blocks), device numbers
and bytes; names that are not UTF-8 and paths longer than PATH_MAX included.

Ownership goes by name where the restoring machine knows the name: the tests play the
backing-up machine's user database by giving the scanner another name for a uid, rather
than adding users to this machine's /etc/passwd.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest
from cli_harness import Cli, restored_path
from fidelity_harness import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
    acl_xattr,
    differences,
    read_tree,
    walk_fds,
)

import bbackup.ops.scan

KiB, MiB = 1024, 1024 * 1024
OTHER_UID, OTHER_GID = 4321, 8765
NO_ID = ACL_UNDEFINED_ID
FILE_ACL = acl_xattr(
    (ACL_USER_OBJ, 6, NO_ID),
    (ACL_USER, 4, OTHER_UID),
    (ACL_GROUP_OBJ, 4, NO_ID),
    (ACL_GROUP, 6, OTHER_GID),
    (ACL_MASK, 6, NO_ID),
    (ACL_OTHER, 0, NO_ID),
)
DIR_ACL = acl_xattr(
    (ACL_USER_OBJ, 7, NO_ID),
    (ACL_USER, 5, OTHER_UID),
    (ACL_GROUP_OBJ, 5, NO_ID),
    (ACL_MASK, 5, NO_ID),
    (ACL_OTHER, 0, NO_ID),
)
#: 24 directories of 200 bytes: the file below them is more than 4 KiB from the source.
DEEP_LEVELS, DEEP_NAME = 24, b"d" * 199

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership and device nodes need root")


def write(path: Path | bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def make_sparse(path: Path, size: int, extents: list[tuple[int, bytes]]) -> None:
    """A file of `size` bytes holding only `extents`; everything else is a hole."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in extents:
            f.seek(offset)
            f.write(data)


def make_deep_tree(parent: Path) -> None:
    """Directories nested until the path is over 4 KiB long, made through descriptors
    (the kernel refuses such a path), with a file, a symlink and an xattr at the bottom."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP_LEVELS):
            os.mkdir(DEEP_NAME, dir_fd=fd)
            child = os.open(DEEP_NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
        os.write(leaf, b"more than 4 KiB down\n")
        os.setxattr(leaf, "user.deep", b"yes")
        os.close(leaf)
        os.symlink(b"leaf.txt", b"leaf-link", dir_fd=fd)
    finally:
        os.close(fd)


def set_times(root: Path) -> None:
    """Distinct ns mtimes on everything, children first, then on `root` itself."""
    mtime = 1_600_000_000_123_456_789
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for dir_fd, name, _rel in walk_fds(fd):
            mtime += 1_000_000_007
            os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
        os.utime(fd, ns=(mtime + 1, mtime + 1))
    finally:
        os.close(fd)


def build_matrix(src: Path) -> None:
    """One of every kind of entry and of metadata the issue names."""
    src.mkdir()
    write(src / "regular.txt", b"regular file\n")
    write(src / "empty", b"")
    write(src / "multi-chunk.bin", os.urandom(3 * MiB + 12345))
    make_sparse(
        src / "sparse.img",
        12 * MiB,
        [(0, os.urandom(64 * KiB)), (8 * MiB, os.urandom(4 * KiB)), (10 * MiB, b"x")],
    )
    make_sparse(src / "all-hole.img", 4 * MiB, [])
    make_sparse(src / "hole-at-end.img", 3 * MiB, [(0, b"head" * 1024)])
    (src / "dir" / "nested").mkdir(parents=True)
    (src / "dir" / "empty-dir").mkdir()
    write(src / "dir" / "nested" / "inner.txt", b"inner\n" * 50)
    os.symlink("regular.txt", src / "link")
    os.symlink("does/not/exist", src / "dangling")
    os.symlink("/absolute/elsewhere", src / "dir" / "absolute-link")
    # Hard links: three names across directories, and a pair.
    write(src / "hard-a", b"one inode, three names\n")
    os.link(src / "hard-a", src / "dir" / "hard-b")
    os.link(src / "hard-a", src / "dir" / "nested" / "hard-c")
    write(src / "pair-1", os.urandom(2 * MiB))
    os.link(src / "pair-1", src / "pair-2")
    os.mkfifo(src / "fifo", 0o640)
    # Set-id, sticky and unusual permission bits.
    write(src / "setuid", b"#!/bin/sh\n")
    os.chmod(src / "setuid", 0o4755)
    write(src / "setgid", b"#!/bin/sh\n")
    os.chmod(src / "setgid", 0o2711)
    write(src / "no-permissions", b"nobody may read this\n")
    os.chmod(src / "no-permissions", 0o000)
    (src / "sticky").mkdir()
    os.chmod(src / "sticky", 0o1777)
    (src / "setgid-dir").mkdir()
    write(src / "setgid-dir" / "f", b"in a setgid directory\n")
    os.chmod(src / "setgid-dir", 0o2750)
    # Names and link targets that are not UTF-8.
    bsrc = os.fsencode(src)
    write(bsrc + b"/caf\xe9", b"latin-1 name\n")
    os.mkdir(bsrc + b"/dir\xff\xfe")
    write(bsrc + b"/dir\xff\xfe/inside", b"inside a non-UTF-8 directory\n")
    os.symlink(b"target-\xfe\xff", bsrc + b"/link\xe9")
    # Extended attributes and ACLs (the xattrs `setfacl` writes).
    write(src / "xattrs", b"extended attributes\n")
    os.setxattr(src / "xattrs", "user.plain", b"value")
    os.setxattr(src / "xattrs", "user.binary", b"\x00\xff\xfe binary")
    os.setxattr(src / "dir", "user.on-a-directory", b"dir value")
    write(src / "acl-file", b"has an access ACL\n")
    os.chmod(src / "acl-file", 0o640)
    os.setxattr(src / "acl-file", "system.posix_acl_access", FILE_ACL)
    (src / "acl-dir").mkdir()
    write(src / "acl-dir" / "made-before-the-default", b"no ACL of its own\n")
    os.setxattr(src / "acl-dir", "system.posix_acl_access", DIR_ACL)
    os.setxattr(src / "acl-dir", "system.posix_acl_default", DIR_ACL)
    make_deep_tree(src)
    if os.geteuid() == 0:
        os.setxattr(src / "xattrs", "trusted.root-only", b"trusted value")
        os.mknod(src / "char-device", stat.S_IFCHR | 0o620, os.makedev(1, 3))
        os.mknod(src / "block-device", stat.S_IFBLK | 0o660, os.makedev(7, 250))
        os.chown(src / "setuid", OTHER_UID, OTHER_GID)
        os.chmod(src / "setuid", 0o4755)  # chown cleared it
        os.chown(src / "setgid-dir", 0, OTHER_GID)
        os.chmod(src / "setgid-dir", 0o2750)
        os.chown(src / "dir" / "nested", OTHER_UID + 1, OTHER_GID + 1)
        os.lchown(src / "dangling", OTHER_UID + 2, OTHER_GID + 2)
        os.chown(src / "fifo", OTHER_UID, 0)
        daemon = pwd.getpwnam("daemon") if _has_user("daemon") else None
        if daemon is not None:
            os.chown(src / "regular.txt", daemon.pw_uid, daemon.pw_gid)
    set_times(src)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def backup_and_restore(
    cli: Cli, repo: Path, src: Path, target: Path, *extra: str, backups: int = 1
) -> Path:
    """Back `src` up (`backups` times: the later ones reuse what the first stored) and
    restore the latest snapshot into `target`; where `src` landed there."""
    for _ in range(backups):
        backup = cli("backup", "-r", repo, src)
        assert backup.exit_code == 0, backup
    restore = cli("restore", "latest", "-r", repo, "--target", target, *extra)
    assert restore.exit_code == 0, restore
    return restored_path(target, src)


def test_restore_matches_the_source_field_by_field(tmp_path: Path, repo: Path, cli: Cli) -> None:
    src = tmp_path / "src"
    build_matrix(src)
    source = read_tree(src)

    # The second backup finds everything unchanged: what it takes from the first must be
    # as complete as what the first read.
    restored = backup_and_restore(cli, repo, src, tmp_path / "target", backups=2)

    assert differences(source, read_tree(restored)) == []
    # The comparison covered what the issue names; spelled out for the reader.
    deep = b"/" + b"/".join([DEEP_NAME] * DEEP_LEVELS) + b"/leaf.txt"
    assert len(os.fsencode(restored) + deep) > 4096 and deep in source
    assert source[b"/sparse.img"].sparse_blocks is not None
    assert dict(source[b"/acl-dir"].xattrs)["system.posix_acl_default"] == DIR_ACL
    if os.geteuid() == 0:
        assert source[b"/block-device"].rdev == os.makedev(7, 250)


def test_holes_come_back_as_holes(tmp_path: Path, repo: Path, cli: Cli) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(64 * KiB)
    make_sparse(src / "disk.img", 20 * MiB, [(MiB, data), (12 * MiB, data)])
    make_sparse(src / "trailing-hole", 6 * MiB, [(0, data)])
    make_sparse(src / "only-hole", 10 * MiB, [])
    write(src / "written-zeros", bytes(MiB))  # allocated zeros stay allocated

    restored = backup_and_restore(cli, repo, src, tmp_path / "target")

    for name in ("disk.img", "trailing-hole", "only-hole", "written-zeros"):
        before, after = os.stat(src / name), os.stat(restored / name)
        assert (after.st_size, after.st_blocks) == (before.st_size, before.st_blocks), name
        assert (restored / name).read_bytes() == (src / name).read_bytes(), name
    assert os.stat(restored / "disk.img").st_blocks * 512 <= 256 * KiB


def test_a_partial_file_left_by_another_restore_gets_zeros_in_its_holes(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    """A leftover `NAME.bbackup-partial` (a killed restore of another snapshot) may hold
    data where this snapshot's file has a hole: the resumed restore must write the zeros,
    not skip them as it may in a file it created empty."""
    src = tmp_path / "src"
    src.mkdir()
    # Data enough at the start for several chunks the leftover already holds in place.
    make_sparse(src / "disk.img", 16 * MiB, [(0, os.urandom(4 * MiB)), (12 * MiB, b"end")])
    assert cli("backup", "-r", repo, src).exit_code == 0
    stale = restored_path(tmp_path / "target", src) / "disk.img.bbackup-partial"
    stale.parent.mkdir(parents=True)
    # The other snapshot's file: the same data, and more where this one has a hole.
    other = bytearray((src / "disk.img").read_bytes())
    other[5 * MiB : 11 * MiB] = os.urandom(6 * MiB)
    write(stale, bytes(other))

    restore = cli("restore", "latest", "-r", repo, "--target", tmp_path / "target", "--json")

    assert restore.exit_code == 0, restore
    assert restore.event("summary")["bytes_reused"] > 0  # it did resume from the leftover
    restored = restored_path(tmp_path / "target", src)
    assert (restored / "disk.img").read_bytes() == (src / "disk.img").read_bytes()
    assert not stale.exists()


def test_restore_into_a_directory_with_a_default_acl_adds_no_acls(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write(src / "sub" / "plain.txt", b"no ACL\n")
    os.chmod(src / "sub" / "plain.txt", 0o644)
    set_times(src)
    source = read_tree(src)
    target = tmp_path / "target"
    target.mkdir()
    os.setxattr(target, "system.posix_acl_default", DIR_ACL)  # what new entries inherit

    restored = backup_and_restore(cli, repo, src, target)

    assert differences(source, read_tree(restored)) == []


@as_root
def test_owner_is_restored_by_name_where_the_name_exists_here(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    here_user = pwd.getpwnam("daemon") if _has_user("daemon") else pytest.skip("no daemon user")
    here_group = grp.getgrgid(here_user.pw_gid)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("named", "unnamed"):
        write(src / name, name.encode())
    os.symlink("named", src / "named-link")
    os.chown(src / "named", OTHER_UID, OTHER_GID)
    os.lchown(src / "named-link", OTHER_UID, OTHER_GID)
    os.chown(src / "unnamed", OTHER_UID + 1, OTHER_GID + 1)
    os.chmod(src / "named", 0o6755)  # set-id bits survive the chown by name
    write(src / "acl", b"an ACL naming the user and group\n")
    os.setxattr(src / "acl", "system.posix_acl_access", FILE_ACL)
    # The backing-up machine calls uid 4321 "daemon"; 4322 it calls by a name this one
    # does not know.
    names = {OTHER_UID: here_user.pw_name, OTHER_UID + 1: "bbackup-no-such-user"}
    groups = {OTHER_GID: here_group.gr_name, OTHER_GID + 1: "bbackup-no-such-group"}
    monkeypatch.setattr(bbackup.ops.scan, "user_name", lambda uid: names.get(uid, ""))
    monkeypatch.setattr(bbackup.ops.scan, "group_name", lambda gid: groups.get(gid, ""))

    by_name = backup_and_restore(cli, repo, src, tmp_path / "by-name")
    numeric = cli("restore", "latest", "-r", repo, "--target", tmp_path / "numeric",
                  "--numeric-owner")  # fmt: skip
    assert numeric.exit_code == 0, numeric
    by_number = restored_path(tmp_path / "numeric", src)

    def owner(path: Path) -> tuple[int, int]:
        st = os.lstat(path)
        return st.st_uid, st.st_gid

    here = (here_user.pw_uid, here_group.gr_gid)
    assert owner(by_name / "named") == here
    assert owner(by_name / "named-link") == here
    assert stat.S_IMODE(os.stat(by_name / "named").st_mode) == 0o6755
    assert owner(by_name / "unnamed") == (OTHER_UID + 1, OTHER_GID + 1)
    assert owner(by_number / "named") == (OTHER_UID, OTHER_GID)
    assert owner(by_number / "named-link") == (OTHER_UID, OTHER_GID)
    assert owner(by_number / "unnamed") == (OTHER_UID + 1, OTHER_GID + 1)
    # The users and groups an ACL names go by name too.
    acl_here = acl_xattr(
        (ACL_USER_OBJ, 6, NO_ID),
        (ACL_USER, 4, here_user.pw_uid),
        (ACL_GROUP_OBJ, 4, NO_ID),
        (ACL_GROUP, 6, here_group.gr_gid),
        (ACL_MASK, 6, NO_ID),
        (ACL_OTHER, 0, NO_ID),
    )
    assert os.getxattr(by_name / "acl", "system.posix_acl_access") == acl_here
    assert os.getxattr(by_number / "acl", "system.posix_acl_access") == FILE_ACL
