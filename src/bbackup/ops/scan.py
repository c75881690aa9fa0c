"""Reading the filesystem for backup: node metadata from stat, excludes, change detection.

All of it is plain functions: `node_from_stat` builds a Node, `Excluder` decides what to
skip, `unchanged` compares a file with its node in the parent snapshot.
"""

from __future__ import annotations

import fnmatch
import grp
import os
import pwd
import re
import stat
from collections.abc import Sequence
from functools import lru_cache

from bbackup.snapshot.model import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Node,
)


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def node_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    if stat.S_ISCHR(mode):
        return CHARDEV
    if stat.S_ISBLK(mode):
        return BLOCKDEV
    if stat.S_ISFIFO(mode):
        return FIFO
    return SOCKET


def read_xattrs(path: bytes) -> list[tuple[bytes, bytes]]:
    """Extended attributes of `path` (not following symlinks); none where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    attrs = []
    for name in sorted(names):
        try:
            attrs.append((name.encode(), os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return attrs


def node_from_stat(name: bytes, path: bytes, st: os.stat_result) -> Node:
    """A Node with every metadata field of DESIGN §4 except content and subtree."""
    kind = node_type(st.st_mode)
    node = Node(
        name=name,
        type=kind,
        mode=st.st_mode,
        uid=st.st_uid,
        gid=st.st_gid,
        user=user_name(st.st_uid),
        group=group_name(st.st_gid),
        mtime_ns=st.st_mtime_ns,
        # Reading a directory changes its atime: recording it would make every backup
        # store every directory again. Files are read with O_NOATIME where allowed.
        atime_ns=0 if kind == DIR else st.st_atime_ns,
        ctime_ns=st.st_ctime_ns,
        size=st.st_size if kind == FILE else 0,
        inode=st.st_ino,
        device=st.st_dev,
        nlink=st.st_nlink,
        rdev=st.st_rdev if kind in (CHARDEV, BLOCKDEV) else 0,
        xattrs=read_xattrs(path),
    )
    if kind == SYMLINK:
        node.link_target = os.readlink(path)
    return node


def unchanged(node: Node, previous: Node | None) -> bool:
    """True if a file's size, mtime, ctime and inode match its node in the parent."""
    return (
        previous is not None
        and previous.type == FILE
        and node.type == FILE
        and previous.size == node.size
        and previous.mtime_ns == node.mtime_ns
        and previous.ctime_ns == node.ctime_ns
        and previous.inode == node.inode
    )


class Excluder:
    """restic-style exclude patterns.

    A pattern without '/' matches a name at any depth (`*.tmp`, `node_modules`); a pattern
    with '/' matches the absolute path (`/home/*/.cache`); `**` matches across directories.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [p.rstrip("/") for p in patterns if p.strip()]

    def excluded(self, path: bytes) -> bool:
        if not self.patterns:
            return False
        text = os.fsdecode(path)
        base = text.rsplit("/", 1)[-1]
        for pattern in self.patterns:
            if "/" in pattern:
                if _compile(pattern).match(text):
                    return True
            elif fnmatch.fnmatchcase(base, pattern):
                return True
        return False


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    # fnmatch's '*' already crosses '/', so '**' needs no special case beyond collapsing.
    return re.compile(fnmatch.translate(pattern.replace("**", "*")))
