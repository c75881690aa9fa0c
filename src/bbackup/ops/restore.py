"""The restorer: rebuilds a snapshot's files, links and metadata under a target directory.

Plan first (walk the trees, create directories and empty files), then fetch each pack
that holds needed blobs once, with one ranged read over the blobs it needs, decrypt and
verify every blob in worker threads and write it to every place it belongs with pwrite.
Metadata comes last: files, then directories deepest first, so writing contents does not
disturb directory times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bbackup.errors import BbackupError, NoSpace
from bbackup.repository import IndexEntry, Repository, pack_object_name
from bbackup.snapshot.model import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Node, Snapshot
from bbackup.snapshot.store import load_tree

#: Blobs of one pack further apart than this are fetched with separate ranged reads.
MAX_RANGE_GAP = 1024 * 1024
MAX_BYTES_IN_FLIGHT = 96 * 1024 * 1024


@dataclass(slots=True)
class RestoreProgress:
    files: int = 0
    bytes_written: int = 0
    bytes_total: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class RestoreSummary:
    snapshot_id: str = ""
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    errors: int = 0
    error_list: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Target:
    """One place a blob's bytes go."""

    path: bytes
    offset: int


class Restorer:
    """Restores one snapshot (or a subtree of it) into a target directory."""

    def __init__(
        self,
        repo: Repository,
        snapshot: Snapshot,
        target: str,
        *,
        include: list[str] | None = None,
        workers: int = 2,
        connections: int = 4,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.repo = repo
        self.snapshot = snapshot
        self.target = os.fsencode(os.path.abspath(target))
        self.include = [os.fsencode(p.rstrip("/")) for p in include or []]
        self.workers = workers
        self.connections = max(1, connections)
        self.on_error = on_error
        self.progress = RestoreProgress()
        self.summary = RestoreSummary(snapshot_id=snapshot.id)
        self._files: list[tuple[bytes, Node]] = []
        self._dirs: list[tuple[bytes, Node]] = []
        self._others: list[tuple[bytes, Node]] = []
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self._is_root = os.geteuid() == 0

    async def run(self) -> RestoreSummary:
        started = time.monotonic()
        os.makedirs(self.target, exist_ok=True)
        await self._plan(self.snapshot.tree, b"", fresh=False)
        blobs = self._place_blobs()
        await self._fetch_all(blobs)
        await asyncio.to_thread(self._apply_metadata)
        self.summary.duration_seconds = round(time.monotonic() - started, 3)
        self.summary.errors = len(self.summary.error_list)
        return self.summary

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.error_list.append({"path": text, "message": message})
        if self.on_error is not None:
            self.on_error(text, message)

    def _wanted(self, rel: bytes) -> tuple[bool, bool]:
        """(restore this path, descend into it) under the include filter."""
        if not self.include:
            return True, True
        for inc in self.include:
            if rel == inc or rel.startswith(inc + b"/"):
                return True, True
            if inc.startswith(rel + b"/"):
                return False, True
        return False, False

    # ---- planning ----------------------------------------------------------------------

    async def _plan(self, tree_id: bytes, rel: bytes, *, fresh: bool) -> None:
        """Walk a tree: make directories, note files. `fresh`: we just created the
        directory at `rel`, so nothing in it can be in the way."""
        tree = await load_tree(self.repo, tree_id)
        for node in tree.nodes:
            if b"/" in node.name or node.name in (b"", b".", b".."):
                raise BbackupError(f"refusing unsafe name {node.name!r} in snapshot tree")
            child = rel + b"/" + node.name
            wanted, descend = self._wanted(child)
            dest = self.target + child
            if node.type == DIR:
                if descend:
                    created = True
                    try:
                        os.mkdir(dest, 0o700)
                    except FileExistsError:
                        created = False
                    if wanted:
                        self._dirs.append((dest, node))
                    if node.subtree is not None:
                        await self._plan(node.subtree, child, fresh=created)
            elif not wanted:
                continue
            elif node.type == FILE:
                try:
                    self._plan_file(dest, node, fresh=fresh)
                except OSError as exc:
                    self._error(dest, f"cannot create: {exc.strerror or exc}")
            else:
                self._others.append((dest, node))

    def _plan_file(self, dest: bytes, node: Node, *, fresh: bool) -> None:
        """Clear the way for a file; files with content are created by their first write."""
        if not fresh:
            with contextlib.suppress(FileNotFoundError):
                os.lstat(dest)
                os.unlink(dest)  # restored files replace what is there, never merge with it
        key = (node.device, node.inode)
        if node.nlink > 1 and key in self._hardlinks:
            os.link(self._hardlinks[key], dest)
            self.summary.links += 1
            return
        if node.size == 0 or node.nlink > 1:
            # Empty files get no write; a hard link's first path must exist to link to.
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        if node.nlink > 1:
            self._hardlinks[key] = dest
        self._files.append((dest, node))
        self.summary.files += 1
        self.progress.bytes_total += node.size

    def _place_blobs(self) -> dict[str, list[tuple[bytes, IndexEntry, list[_Target]]]]:
        """Group every needed blob by pack, with every place its bytes go."""
        targets: dict[bytes, list[_Target]] = defaultdict(list)
        for dest, node in self._files:
            offset = 0
            for blob_id in node.content:
                entry = self.repo.index.lookup(blob_id)
                targets[blob_id].append(_Target(dest, offset))
                offset += entry.raw_length
        by_pack: dict[str, list[tuple[bytes, IndexEntry, list[_Target]]]] = defaultdict(list)
        for blob_id, places in targets.items():
            entry = self.repo.index.lookup(blob_id)
            by_pack[entry.pack_id].append((blob_id, entry, places))
        for blobs in by_pack.values():
            blobs.sort(key=lambda b: b[1].offset)
        return by_pack

    # ---- fetching ----------------------------------------------------------------------

    async def _fetch_all(
        self, by_pack: dict[str, list[tuple[bytes, IndexEntry, list[_Target]]]]
    ) -> None:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bb-restore")
        # Each fetch holds up to a pack in memory: bound the bytes in flight, not only the
        # number of requests (16 S3 connections × 16 MiB packs would be 256 MiB).
        in_flight = max(2, MAX_BYTES_IN_FLIGHT // self.repo.config.pack_size)
        slots = asyncio.Semaphore(min(self.connections, in_flight))
        try:

            async def one(ranges: list[tuple[bytes, IndexEntry, list[_Target]]]) -> None:
                async with slots:
                    await self._fetch_range(pool, ranges)

            await asyncio.gather(
                *(one(r) for blobs in by_pack.values() for r in _split_ranges(blobs))
            )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    async def _fetch_range(
        self, pool: ThreadPoolExecutor, blobs: list[tuple[bytes, IndexEntry, list[_Target]]]
    ) -> None:
        first = blobs[0][1]
        start = first.offset
        end = max(e.offset + e.length for _, e, _ in blobs)
        name = pack_object_name(first.blob_type, first.pack_id)
        data = await self.repo.storage.get(name, start, end - start)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, self._write_blobs, data, start, blobs)

    def _write_blobs(
        self, data: bytes, start: int, blobs: list[tuple[bytes, IndexEntry, list[_Target]]]
    ) -> None:
        view = memoryview(data)
        for blob_id, entry, places in blobs:
            sealed = view[entry.offset - start : entry.offset - start + entry.length]
            plain = self.repo.decode_blob(blob_id, entry, sealed)
            for place in places:
                try:
                    fd = os.open(place.path, os.O_WRONLY | os.O_CREAT, 0o600)
                    try:
                        os.pwrite(fd, plain, place.offset)
                    finally:
                        os.close(fd)
                except OSError as exc:
                    if exc.errno == 28:
                        raise NoSpace(
                            f"{os.fsdecode(place.path)}: no space left on device"
                        ) from exc
                    raise
                self.progress.bytes_written += len(plain)
                self.summary.bytes += len(plain)

    # ---- metadata ----------------------------------------------------------------------

    def _apply_metadata(self) -> None:
        for dest, node in self._others:
            try:
                self._create_special(dest, node)
            except OSError as exc:
                self._error(dest, f"cannot create {node.type}: {exc.strerror or exc}")
                continue
            self._set_metadata(dest, node)
        for dest, node in self._files:
            self._set_metadata(dest, node)
            self.progress.files += 1
        for dest, node in sorted(self._dirs, key=lambda d: d[0].count(b"/"), reverse=True):
            self._set_metadata(dest, node)
            self.summary.dirs += 1

    def _create_special(self, dest: bytes, node: Node) -> None:
        with contextlib.suppress(FileNotFoundError):
            if not os.path.isdir(dest) or os.path.islink(dest):
                os.unlink(dest)
        if node.type == SYMLINK:
            os.symlink(node.link_target, dest)
        elif node.type == FIFO:
            os.mkfifo(dest, 0o600)
        elif node.type in (CHARDEV, BLOCKDEV):
            kind = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
            os.mknod(dest, kind | 0o600, node.rdev)
        else:
            raise OSError(0, "sockets are not restored")

    def _set_metadata(self, dest: bytes, node: Node) -> None:
        is_link = node.type == SYMLINK
        try:
            if self._is_root:
                os.chown(dest, node.uid, node.gid, follow_symlinks=False)
            if not is_link:
                os.chmod(dest, stat.S_IMODE(node.mode))
            for name, value in node.xattrs:
                with contextlib.suppress(OSError):
                    os.setxattr(dest, name, value, follow_symlinks=False)
            atime = node.atime_ns or node.mtime_ns  # directories carry no atime
            os.utime(dest, ns=(atime, node.mtime_ns), follow_symlinks=False)
        except OSError as exc:
            self._error(dest, f"cannot set metadata: {exc.strerror or exc}")


def _split_ranges(
    blobs: list[tuple[bytes, IndexEntry, list[_Target]]],
) -> list[list[tuple[bytes, IndexEntry, list[_Target]]]]:
    """Split a pack's needed blobs (sorted by offset) where the gap between them is large."""
    ranges: list[list[tuple[bytes, IndexEntry, list[_Target]]]] = []
    for blob in blobs:
        if ranges:
            last = ranges[-1][-1][1]
            if blob[1].offset - (last.offset + last.length) <= MAX_RANGE_GAP:
                ranges[-1].append(blob)
                continue
        ranges.append([blob])
    return ranges
