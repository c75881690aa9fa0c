"""The read-only filesystem `bbackup mount` serves: the made-up directories of
`mount_namespace` above each snapshot's own trees, file content through `mount_content`.

mfusepy calls these methods from libfuse's threads; every repository read goes to the
repository's event loop through a `LoopCaller`. Directories (a tree and its files' sizes)
are kept in a small cache, decoded content blobs in the blob cache. The snapshot list is
read again when a made-up directory is listed and the last read is older than
SNAPSHOT_REFRESH_SECONDS, so snapshots made meanwhile appear (with the index read again
when there are new ones: their trees and content are in packs the old index lacks).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bbackup.errors import BbackupError
from bbackup.ops.mount_content import (
    DEFAULT_CACHE_BYTES,
    READ_AHEAD_BLOBS,
    BlobCache,
    FileLayout,
    LoopCaller,
    file_layout,
    read_range,
)
from bbackup.ops.mount_namespace import (
    LatestLink,
    VirtualDir,
    build_namespace,
    snapshot_time_ns,
)
from bbackup.snapshot.model import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Node,
    Snapshot,
    is_safe_name,
)
from bbackup.snapshot.store import SnapshotSource, load_snapshots, load_tree

#: How old the snapshot list may be before listing a made-up directory reads it again.
SNAPSHOT_REFRESH_SECONDS = 30.0
#: Directories kept decoded (a tree blob, its entries by name and its files' layouts).
DIRECTORY_CACHE_ENTRIES = 4096

_TYPE_BITS = {
    FILE: stat.S_IFREG,
    DIR: stat.S_IFDIR,
    SYMLINK: stat.S_IFLNK,
    CHARDEV: stat.S_IFCHR,
    BLOCKDEV: stat.S_IFBLK,
    FIFO: stat.S_IFIFO,
    SOCKET: stat.S_IFSOCK,
}


class FilesystemError(OSError):
    """An errno for libfuse to return (mfusepy turns an OSError into -errno)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))


class MountSource(SnapshotSource, Protocol):
    """What the mount reads: snapshots, trees and blobs, and the index again when new
    snapshots appear."""

    async def load_index(self) -> None: ...


async def _read_snapshots_again(source: MountSource, known: frozenset[str]) -> list[Snapshot]:
    snapshots = await load_snapshots(source)
    if any(s.id not in known for s in snapshots):
        await source.load_index()
    return snapshots


@dataclass(frozen=True, slots=True)
class Directory:
    """One tree of a snapshot, decoded: entries by name, and each file's content layout."""

    nodes: dict[bytes, Node]
    layouts: dict[bytes, FileLayout]


@dataclass(frozen=True, slots=True)
class FoundNode:
    """An entry inside a snapshot's trees, and its content layout if it is a file."""

    node: Node
    layout: FileLayout | None


Found = VirtualDir | LatestLink | Snapshot | FoundNode


def _tree_of(found: Found) -> bytes | None:
    """The tree listing a directory inside a snapshot (its root, or a directory node);
    None for an empty one; ENOTDIR for anything else."""
    if isinstance(found, Snapshot):
        return found.tree
    if isinstance(found, FoundNode) and found.node.type == DIR:
        return found.node.subtree
    raise FilesystemError(errno.ENOTDIR)


#: Bytes read front to back (each read starting where the last ended) after which the
#: next blobs are fetched ahead: more than the kernel's own read-ahead (128 KiB) around a
#: read in the middle of a file, so such a read still fetches only what it needs.
SEQUENTIAL_RUN = 1024 * 1024


@dataclass(slots=True)
class OpenFile:
    """An open file: its layout, where its last read ended, and where the run of reads
    each starting where the last ended began."""

    layout: FileLayout
    next_offset: int = 0
    run_start: int = 0


async def _load_directory(source: SnapshotSource, tree_id: bytes) -> Directory:
    tree = await load_tree(source, tree_id)
    # A damaged or forged tree's unsafe names (`..`, `a/b`), and any second entry of one
    # name, are left out: what lists the mount only ever sees one-component names.
    nodes: dict[bytes, Node] = {}
    for node in tree.nodes:
        if is_safe_name(node.name):
            nodes.setdefault(node.name, node)
    layouts: dict[bytes, FileLayout] = {}
    for node in nodes.values():
        if node.type == FILE:
            # A file whose content is not in the index lists, but reading it fails.
            with contextlib.suppress(BbackupError):
                layouts[node.name] = file_layout(source, node.content)
    return Directory(nodes, layouts)


class SnapshotFilesystem:
    """The operations mfusepy calls (it reads methods by name; see mfusepy.Operations)."""

    #: Times in getattr are integer nanoseconds.
    use_ns = True

    def __init__(
        self,
        source: MountSource,
        call: LoopCaller,
        snapshots: list[Snapshot],
        *,
        on_error: Callable[[str], None],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        refresh_seconds: float = SNAPSHOT_REFRESH_SECONDS,
    ) -> None:
        self._source = source
        self._call = call
        self._on_error = on_error
        self._root = build_namespace(snapshots)
        self._known = frozenset(s.id for s in snapshots)
        self._loaded_at = time.monotonic()
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._directories: OrderedDict[bytes, Directory] = OrderedDict()
        self._open: dict[int, OpenFile] = {}
        self._next_handle = 1
        self.blobs = BlobCache(source, call, cache_bytes)
        self.snapshot_count = len(snapshots)
        self._uid, self._gid = os.getuid(), os.getgid()

    # ---- looking paths up -----------------------------------------------------------

    def _directory(self, tree_id: bytes) -> Directory:
        with self._lock:
            found = self._directories.get(tree_id)
            if found is not None:
                self._directories.move_to_end(tree_id)
                return found
        try:
            directory = self._call(_load_directory(self._source, tree_id))
        except BbackupError as exc:
            self._on_error(f"tree {tree_id.hex()[:16]}: {exc}")
            raise FilesystemError(errno.EIO) from None
        with self._lock:
            self._directories[tree_id] = directory
            while len(self._directories) > DIRECTORY_CACHE_ENTRIES:
                self._directories.popitem(last=False)
        return directory

    def _refresh_snapshots(self) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_seconds:
            return
        self._loaded_at = time.monotonic()
        try:
            snapshots = self._call(_read_snapshots_again(self._source, self._known))
        except BbackupError as exc:
            self._on_error(f"reading the snapshot list again: {exc}")
            return
        self._known = frozenset(s.id for s in snapshots)
        self._root = build_namespace(snapshots)
        self.snapshot_count = len(snapshots)

    def _lookup(self, path: str) -> Found:
        parts = [p for p in path.split("/") if p]
        here: Found = self._root
        for part in parts:
            if isinstance(here, VirtualDir):
                entry = here.entries.get(part)
                if entry is None:
                    raise FilesystemError(errno.ENOENT)
                here = entry
                continue
            tree_id = _tree_of(here)
            if tree_id is None:
                raise FilesystemError(errno.ENOENT)
            directory = self._directory(tree_id)
            name = os.fsencode(part)
            node = directory.nodes.get(name)
            if node is None:
                raise FilesystemError(errno.ENOENT)
            here = FoundNode(node, directory.layouts.get(name))
        return here

    def _children(self, found: Found) -> list[tuple[str, int]]:
        """A directory's entries: (name, file type bits)."""
        if isinstance(found, VirtualDir):
            return [
                (name, stat.S_IFLNK if isinstance(entry, LatestLink) else stat.S_IFDIR)
                for name, entry in found.entries.items()
            ]
        tree_id = _tree_of(found)
        if tree_id is None:
            return []
        nodes = self._directory(tree_id).nodes.values()
        return [(os.fsdecode(n.name), _TYPE_BITS.get(n.type, stat.S_IFREG)) for n in nodes]

    # ---- what mfusepy calls ---------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        found = self._lookup(path)
        if isinstance(found, FoundNode):
            return self._node_attributes(found)
        if isinstance(found, LatestLink):
            mode, size, mtime = stat.S_IFLNK | 0o777, len(found.target), found.mtime_ns
        elif isinstance(found, Snapshot):
            mode, size, mtime = stat.S_IFDIR | 0o555, 0, snapshot_time_ns(found)
        else:
            mode, size, mtime = stat.S_IFDIR | 0o555, 0, found.mtime_ns
        return {
            "st_mode": mode,
            "st_nlink": 2 if stat.S_ISDIR(mode) else 1,
            "st_size": size,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_mtime": mtime,
            "st_atime": mtime,
            "st_ctime": mtime,
        }

    @staticmethod
    def _node_attributes(found: FoundNode) -> dict[str, Any]:
        node = found.node
        if node.type == FILE:
            size = found.layout.size if found.layout is not None else node.size
        elif node.type == SYMLINK:
            size = len(node.link_target)
        else:
            size = 0
        return {
            "st_mode": _TYPE_BITS.get(node.type, stat.S_IFREG) | stat.S_IMODE(node.mode),
            "st_nlink": 2 if node.type == DIR else max(node.nlink, 1),
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_uid": node.uid,
            "st_gid": node.gid,
            "st_rdev": node.rdev,
            "st_mtime": node.mtime_ns,
            "st_atime": node.atime_ns or node.mtime_ns,
            "st_ctime": node.ctime_ns or node.mtime_ns,
        }

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        found = self._lookup(path)
        if isinstance(found, VirtualDir):
            self._refresh_snapshots()
            found = self._lookup(path)
        entries = [(".", stat.S_IFDIR), ("..", stat.S_IFDIR), *self._children(found)]
        return [(name, {"st_mode": bits}, 0) for name, bits in entries]

    def readlink(self, path: str) -> str:
        found = self._lookup(path)
        if isinstance(found, LatestLink):
            return found.target
        if isinstance(found, FoundNode) and found.node.type == SYMLINK:
            return os.fsdecode(found.node.link_target)
        raise FilesystemError(errno.EINVAL)

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise FilesystemError(errno.EROFS)
        found = self._lookup(path)
        if not isinstance(found, FoundNode) or found.node.type != FILE:
            raise FilesystemError(errno.EISDIR if not isinstance(found, FoundNode) else errno.EIO)
        if found.layout is None:
            self._on_error(f"{path}: its content is not in the index")
            raise FilesystemError(errno.EIO)
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._open[handle] = OpenFile(found.layout)
        return handle

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            opened = self._open.get(fh)
        if opened is None:
            raise FilesystemError(errno.EBADF)
        try:
            data = read_range(self.blobs, opened.layout, offset, size)
        except BbackupError as exc:
            self._on_error(f"{path}: {exc}")
            raise FilesystemError(errno.EIO) from None
        end = offset + len(data)
        if offset != opened.next_offset:
            opened.run_start = offset
        opened.next_offset = end
        if end - opened.run_start >= SEQUENTIAL_RUN and end < opened.layout.size:
            self.blobs.read_ahead(opened.layout.blobs_from(end, READ_AHEAD_BLOBS))
        return data

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._open.pop(fh, None)
        return 0

    def listxattr(self, path: str) -> list[str]:
        found = self._lookup(path)
        if not isinstance(found, FoundNode):
            return []
        return [os.fsdecode(name) for name, _ in found.node.xattrs]

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        found = self._lookup(path)
        if isinstance(found, FoundNode):
            wanted = os.fsencode(name)
            for key, value in found.node.xattrs:
                if key == wanted:
                    return value
        raise FilesystemError(getattr(errno, "ENOATTR", errno.ENODATA))

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    def close(self) -> None:
        """Stop what runs in the background (once unmounted, before the loop stops)."""
        self.blobs.close()
