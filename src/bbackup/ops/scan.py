"""Reading the filesystem for backup: node metadata from stat, excludes, listing.

`node_from_stat` builds a Node, `scan_dir` lists one directory, `Excluder` decides what
to skip, and `Prescan` walks the sources in a thread while the repository is being opened.
Entries are read relative to their directory's descriptor, and `open_path` reaches paths
longer than PATH_MAX, so a tree of any depth can be backed up.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from bbackup.ops.excludes import Excluder
from bbackup.ops.file_open import DIRECTORY_FLAGS, LONG_PATH, open_path
from bbackup.ops.posix_acl import ACL_USER, ACL_XATTRS, named_qualifiers
from bbackup.ops.sparse_files import find_holes, may_have_holes
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


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _proc_path(dir_fd: int, name: bytes) -> bytes:
    """A short path to `name` in the directory `dir_fd`, for calls that take no dir_fd
    (the xattr ones); `name` itself is not followed by the *xattr(follow_symlinks=False)."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def read_xattrs(path: bytes) -> list[tuple[bytes, bytes]]:
    """Extended attributes of `path` (not following symlinks); none where unsupported.
    POSIX ACLs are among them (`system.posix_acl_access`, `system.posix_acl_default`)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    attrs = []
    for name in sorted(names):
        try:
            attrs.append((os.fsencode(name), os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return attrs


def acl_names(xattrs: list[tuple[bytes, bytes]]) -> list[tuple[int, int, str]]:
    """(tag, id, name) of each user and group the POSIX ACLs among `xattrs` name, where
    this machine has a name for the id."""
    found = set()
    for key, value in xattrs:
        if key in ACL_XATTRS:
            for tag, ident in named_qualifiers(value):
                name = user_name(ident) if tag == ACL_USER else group_name(ident)
                if name:
                    found.add((tag, ident, name))
    return sorted(found)


def read_holes(name: bytes, dir_fd: int | None, st: os.stat_result) -> list[tuple[int, int]]:
    """The holes of the regular file `name` (in `dir_fd`); none if it cannot be opened
    (then reading it reports the error)."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return []
    try:
        return find_holes(fd, st.st_size)
    finally:
        os.close(fd)


def same_inode(previous: Node | None, kind: str, st: os.stat_result) -> bool:
    """True if `st` is the inode `previous` (the entry's node in the parent snapshot)
    recorded, unchanged since: same type, inode, device, size, mtime and ctime. Setting
    or removing an extended attribute, retargeting a symlink (a new inode) and punching
    a hole all change the ctime, which no one can set back: such an entry still has the
    attributes, target and holes recorded, and they need not be read again."""
    return (
        previous is not None
        and previous.type == kind
        and previous.ctime_ns == st.st_ctime_ns
        and previous.inode == st.st_ino
        and previous.device == st.st_dev
        and previous.mtime_ns == st.st_mtime_ns
        and previous.size == (st.st_size if kind == FILE else 0)
    )


def node_from_stat(
    name: bytes,
    path: bytes,
    st: os.stat_result,
    *,
    dir_fd: int | None = None,
    previous: Node | None = None,
) -> Node:
    """A Node with every metadata field of DESIGN §4 except content and subtree. With
    `dir_fd`, the entry is reached as `name` in that directory (the path may be too long
    for the kernel); without, through `path`. `previous`: the entry's node in the parent
    snapshot; if the inode is unchanged since (`same_inode`), its extended attributes,
    symlink target and holes are taken from it rather than read (three system calls
    fewer per entry of an unchanged backup, at most)."""
    kind = node_type(st.st_mode)
    if dir_fd is None:
        entry, attr_path = path, path
    else:
        entry = name
        attr_path = path if len(path) < LONG_PATH else _proc_path(dir_fd, name)
    known = previous if same_inode(previous, kind, st) else None
    xattrs = read_xattrs(attr_path) if known is None else list(known.xattrs)
    # Positional (snapshot.model.POSITIONAL_FIELDS): every entry of every backup is made
    # here, and keywords cost more than the rest of the call.
    node = Node(
        name,
        kind,
        st.st_mode,
        st.st_uid,
        st.st_gid,
        user_name(st.st_uid),
        group_name(st.st_gid),
        st.st_mtime_ns,
        # Reading a directory changes its atime: recording it would make every backup
        # store every directory again. Files are read with O_NOATIME where allowed.
        0 if kind == DIR else st.st_atime_ns,  # atime_ns
        st.st_ctime_ns,
        st.st_size if kind == FILE else 0,  # size
        st.st_ino,
        st.st_dev,
        st.st_nlink,
        b"",  # link_target, read below
        st.st_rdev if kind in (CHARDEV, BLOCKDEV) else 0,  # rdev
        xattrs,
        [],  # holes, read below
        [],  # acl_names, below
        [],  # content
        None,  # subtree
    )
    if node.xattrs:
        # From the names this machine has now, as for the owner's.
        node.acl_names = acl_names(node.xattrs)
    if known is not None:
        node.link_target = known.link_target
        node.holes = list(known.holes)
    elif kind == SYMLINK:
        node.link_target = os.readlink(entry, dir_fd=dir_fd)
    elif kind == FILE and may_have_holes(st):
        node.holes = read_holes(entry, dir_fd, st)
    return node


def excludes_everything(paths: Sequence[str], excluder: Excluder) -> bool:
    """True if `excluder` leaves nothing of `paths` to back up: each path is excluded itself
    or is a directory whose entries all are, and something was excluded (a source that is
    empty to begin with is backed up as it is)."""
    if not excluder.patterns:
        return False
    for path in paths:
        raw = os.fsencode(path)
        if excluder.excluded(raw):
            continue
        try:
            if not stat.S_ISDIR(os.lstat(raw).st_mode):
                return False
            with os.scandir(raw) as it:
                names = [raw + b"/" + entry.name for entry in it]
        except OSError:
            return False  # the backup reports it
        if not names or not all(excluder.excluded(name) for name in names):
            return False
    return True


def scan_dir(
    path: bytes,
    excluder: Excluder,
    on_error: Callable[[bytes, str], None],
    previous: Mapping[bytes, Node] | None = None,
) -> list[tuple[bytes, Node]]:
    """(full path, node) of every entry of directory `path` that is not excluded;
    `previous`: the directory's nodes in the parent snapshot, by name (`node_from_stat`).

    An entry that cannot be stat'ed is reported through `on_error` and left out; one that
    vanished since the listing is left out silently. Listing errors raise OSError.
    """
    entries = []
    # Listed through a descriptor (names come as str, surrogate-escaped), and each entry
    # reached from it, whatever the length of the path.
    dir_fd = open_path(path, DIRECTORY_FLAGS)
    try:
        with os.scandir(dir_fd) as it:
            for entry in it:
                name = os.fsencode(entry.name)
                full = path + b"/" + name
                if excluder.excluded(full):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    before = previous.get(name) if previous else None
                    node = node_from_stat(name, full, st, dir_fd=dir_fd, previous=before)
                    entries.append((full, node))
                except FileNotFoundError:
                    continue  # vanished between listing and stat: not in this snapshot
                except OSError as exc:
                    on_error(full, exc.strerror or str(exc))
    finally:
        os.close(dir_fd)
    return entries


class _Unclean(Exception):
    """A directory the prescan leaves to the archiver, which reports its errors."""


def _unclean(path: bytes, message: str) -> None:
    raise _Unclean(message)


class BackgroundWalk:
    """A walk of the backup's sources in a daemon thread beside the archiver: `_run` does
    the walking and checks `_stopping`; `finished` once it returned, `stop()` ends it."""

    def __init__(self, paths: Sequence[str], excluder: Excluder, thread_name: str) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(list(paths), excluder), name=thread_name, daemon=True
        )
        self._thread.start()

    @property
    def finished(self) -> bool:
        """True once the walk is complete (or stopped)."""
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self, paths: list[str], excluder: Excluder) -> None:
        raise NotImplementedError


class Prescan(BackgroundWalk):
    """Lists and stats the source directories in a thread while the repository opens.

    Opening a repository spends ~0.3 s in the key derivation, which does not hold the
    GIL: a thread walking the sources meanwhile takes that much off the archiver's own
    walk (for many small files, a good part of an unchanged backup). It keeps only
    directories listed without any error (the archiver lists the others again and
    reports what fails), at most `limit` entries in all (~0.5 KiB each; the key derivation
    leaves time for about that many), and it stops at `stop()`, which the archiver calls
    before it walks, so the two never list the same directory at once.
    """

    def __init__(self, paths: Sequence[str], excluder: Excluder, limit: int = 30_000) -> None:
        self._dirs: dict[bytes, list[tuple[bytes, Node]]] = {}
        self._limit = limit
        super().__init__(paths, excluder, "bb-prescan")

    def take(self, path: bytes) -> list[tuple[bytes, Node]] | None:
        """The entries of `path` if the prescan listed it (each is handed out once)."""
        return self._dirs.pop(path, None)

    def _run(self, paths: list[str], excluder: Excluder) -> None:
        pending = [os.fsencode(p) for p in reversed(paths)]
        listed = 0
        while pending and listed < self._limit and not self._stopping.is_set():
            path = pending.pop()
            try:
                entries = scan_dir(path, excluder, _unclean)
            except (OSError, _Unclean):
                continue  # not a directory, or not readable: the archiver will see
            self._dirs[path] = entries
            listed += len(entries)
            pending.extend(full for full, node in reversed(entries) if node.type == DIR)
