"""What the fidelity tests compare: every entry of a tree read field by field through
directory descriptors (so paths longer than PATH_MAX are read too), and the differences
between two such readings."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

#: Tags and the "no qualifier" id of the Linux POSIX ACL xattr format (acl_ea.h).
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 16, 32
ACL_UNDEFINED_ID = 0xFFFFFFFF
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def acl_xattr(*entries: tuple[int, int, int]) -> bytes:
    """The bytes of `system.posix_acl_access`/`_default` for (tag, perm, id) entries,
    what `setfacl` writes (entries sorted by tag, then id)."""
    body = b"".join(struct.pack("<HHI", *entry) for entry in sorted(entries))
    return struct.pack("<I", 2) + body


@dataclass(frozen=True, slots=True)
class Entry:
    """What a user would check of one restored entry."""

    type: int
    mode: str
    uid: int
    gid: int
    size: int | None  # None for directories (their size is the filesystem's business)
    mtime_ns: int
    nlink: int
    rdev: int
    link_target: bytes | None
    xattrs: tuple[tuple[str, bytes], ...]
    sha256: str | None
    #: st_blocks of sparse files (None for the others): holes must stay holes.
    sparse_blocks: int | None
    #: Not compared: what hard links share.
    inode: int


def proc_path(dir_fd: int, name: bytes) -> bytes:
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def read_entry(dir_fd: int, name: bytes) -> Entry:
    """The entry `name` in `dir_fd`, or with an empty name the directory `dir_fd` itself."""
    if name:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        path = proc_path(dir_fd, name)
        names = _xattr_names(lambda: os.listxattr(path, follow_symlinks=False))
        xattrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
    else:
        st = os.fstat(dir_fd)
        names = _xattr_names(lambda: os.listxattr(dir_fd))
        xattrs = tuple((n, os.getxattr(dir_fd, n)) for n in names)
    digest = None
    if stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    sparse = stat.S_ISREG(st.st_mode) and st.st_blocks * 512 < st.st_size
    return Entry(
        type=stat.S_IFMT(st.st_mode),
        mode=oct(stat.S_IMODE(st.st_mode)),
        uid=st.st_uid,
        gid=st.st_gid,
        size=None if stat.S_ISDIR(st.st_mode) else st.st_size,
        mtime_ns=st.st_mtime_ns,
        nlink=st.st_nlink,
        rdev=st.st_rdev,
        link_target=os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None,
        xattrs=xattrs,
        sha256=digest,
        sparse_blocks=st.st_blocks if sparse else None,
        inode=st.st_ino,
    )


def _xattr_names(list_names: Callable[[], list[str]]) -> list[str]:
    try:
        return sorted(list_names())
    except OSError:
        return []


def walk_fds(dir_fd: int, rel: bytes = b"") -> Iterator[tuple[int, bytes, bytes]]:
    """(directory descriptor, name, relative path) of every entry below `dir_fd`, children
    before their directory (so setting times bottom-up does not disturb them)."""
    for name in sorted(os.fsencode(n) for n in os.listdir(dir_fd)):
        child = rel + b"/" + name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=dir_fd)
            try:
                yield from walk_fds(fd, child)
            finally:
                os.close(fd)
        yield dir_fd, name, child


def read_tree(root: Path) -> dict[bytes, Entry]:
    """Every entry under `root` by relative path (root itself as b"")."""
    fd = os.open(root, _DIRECTORY_FLAGS)
    try:
        found = {rel: read_entry(dir_fd, name) for dir_fd, name, rel in walk_fds(fd)}
        found[b""] = read_entry(fd, b"")
    finally:
        os.close(fd)
    return found


def hard_link_groups(tree: dict[bytes, Entry]) -> set[frozenset[bytes]]:
    """The sets of paths that are one file (non-directories with more than one link)."""
    by_inode: dict[int, set[bytes]] = {}
    for rel, entry in tree.items():
        if entry.nlink > 1 and not stat.S_ISDIR(entry.type):
            by_inode.setdefault(entry.inode, set()).add(rel)
    return {frozenset(paths) for paths in by_inode.values()}


def differences(source: dict[bytes, Entry], restored: dict[bytes, Entry]) -> list[str]:
    """Every way `restored` differs from `source`, field by field."""
    problems = [f"missing: {p!r}" for p in sorted(source.keys() - restored.keys())]
    problems += [f"unexpected: {p!r}" for p in sorted(restored.keys() - source.keys())]
    compared = [f.name for f in fields(Entry) if f.name != "inode"]
    for rel in sorted(source.keys() & restored.keys()):
        want, got = source[rel], restored[rel]
        for name in compared:
            a, b = getattr(want, name), getattr(got, name)
            if a != b:
                problems.append(f"{rel!r}: {name} {a!r} restored as {b!r}")
    if hard_link_groups(source) != hard_link_groups(restored):
        problems.append(
            f"hard links {sorted(map(sorted, hard_link_groups(source)))} restored as "
            f"{sorted(map(sorted, hard_link_groups(restored)))}"
        )
    return problems
