"""A tree's contents and metadata as one comparable value: what a restore or an extracted
dump must reproduce, entry by entry."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def tree_metadata(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `root` (and `root` itself, as "."): type and permission bits,
    owner, ns mtime, content or symlink target, and for hard links which entry shares the
    inode, by path relative to `root` (names that are not UTF-8 as their escaped bytes)."""
    inodes: dict[int, str] = {}
    out: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = os.fsdecode(bytes(path.relative_to(root))) if path != root else "."
        if stat.S_ISREG(st.st_mode):
            body: object = path.read_bytes()
            if st.st_nlink > 1:
                body = (body, "same inode as " + inodes.setdefault(st.st_ino, rel))
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        else:
            body = None
        out[rel] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, body)
    return out
