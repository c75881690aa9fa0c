"""The restorer: rebuilds a snapshot's files, links and metadata under a target directory.

Plan first (walk the trees, create directories and files that get no writes), then read
the blobs each pack holds for the snapshot with a few ranged reads, decrypt and verify
them in worker threads and write each to every place it belongs (`restore_files`: a file
gets its metadata as its last blob lands). Special files and directories come last,
deepest first, so nothing written afterwards disturbs a directory's times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bbackup.errors import BbackupError, IntegrityError
from bbackup.ops.restore_files import FileWriter, RestoredFile, creation_mode, set_metadata
from bbackup.repository import BlobLoader, IndexEntry, pack_object_name
from bbackup.repository.config import RepositoryConfig
from bbackup.snapshot.model import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Node, Snapshot
from bbackup.snapshot.store import load_tree

#: Blobs of one pack further apart than this are fetched with separate ranged reads.
MAX_RANGE_GAP = 1024 * 1024
#: Beyond a chunk's size, what a sealed chunk may take (AEAD tag, header, zstd frame).
_SEAL_SLACK = 64 * 1024


def remote_range_gap(config: RepositoryConfig) -> int:
    """The unneeded bytes a read of a remote pack skips rather than split in two: one
    largest chunk. A chunk left between needed ones (the old version of an edited part of
    a file) then costs a few MiB of transfer, about what a request waits for its first
    byte, instead of a second request; longer runs (a deleted file) still split."""
    return config.chunker.max_size + _SEAL_SLACK


#: Bytes of fetched ranges held at once, at most (besides the blobs being decoded).
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
class NeededBlob:
    """A blob the restore needs, with every (file, offset) its plaintext goes to."""

    blob_id: bytes
    entry: IndexEntry
    places: list[tuple[RestoredFile, int]] = field(default_factory=list)


@dataclass(slots=True)
class PackRead:
    """One ranged read of a pack: needed blobs that lie close together."""

    blobs: list[NeededBlob]

    @property
    def start(self) -> int:
        return self.blobs[0].entry.offset

    @property
    def end(self) -> int:
        last = self.blobs[-1].entry
        return last.offset + last.length


def plan_reads(
    blobs: Iterable[NeededBlob], *, max_gap: int = MAX_RANGE_GAP, max_bytes: int | None = None
) -> list[PackRead]:
    """Group the needed blobs of one pack into ranged reads, in pack order.

    A read skips gaps of up to `max_gap` unneeded bytes and spans at most `max_bytes`
    (None: no limit; a blob larger than that is read on its own).
    """
    reads: list[PackRead] = []
    for blob in sorted(blobs, key=lambda b: b.entry.offset):
        if reads:
            read = reads[-1]
            entry = blob.entry
            if entry.offset - read.end <= max_gap and (
                max_bytes is None or entry.offset + entry.length - read.start <= max_bytes
            ):
                read.blobs.append(blob)
                continue
        reads.append(PackRead([blob]))
    return reads


class Restorer:
    """Restores one snapshot (or a subtree of it) into a target directory."""

    def __init__(
        self,
        repo: BlobLoader,
        snapshot: Snapshot,
        target: str,
        *,
        include: list[str] | None = None,
        workers: int = 2,
        connections: int = 4,
        read_size: int | None = None,
        max_gap: int = MAX_RANGE_GAP,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        """`read_size`: split reads of a pack so none spans more than this many bytes
        (None: one read per run of needed blobs; right where requests cost money).
        `max_gap`: unneeded bytes between needed blobs that one read spans."""
        self.repo = repo
        self.snapshot = snapshot
        self.target = os.fsencode(os.path.abspath(target))
        self.include = [os.fsencode(p.rstrip("/")) for p in include or []]
        self.workers = workers
        self.connections = max(1, connections)
        self.read_size = read_size
        self.max_gap = max_gap
        self.on_error = on_error
        self.progress = RestoreProgress()
        self.summary = RestoreSummary(snapshot_id=snapshot.id)
        self._files: list[RestoredFile] = []
        self._dirs: list[tuple[bytes, Node]] = []
        self._others: list[tuple[bytes, Node]] = []
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self._writer = FileWriter(chown=os.geteuid() == 0, on_error=self._error)

    async def run(self) -> RestoreSummary:
        started = time.monotonic()
        os.makedirs(self.target, exist_ok=True)
        await self._plan(self.snapshot.tree, b"", fresh=False)
        await self._fetch_all(self._plan_reads())
        await asyncio.to_thread(self._finish_others_and_dirs)
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
        if not node.content or node.nlink > 1:
            # Empty files get no write; a hard link's first path must exist to link to.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            os.close(os.open(dest, flags, creation_mode(node)))
        if node.nlink > 1:
            self._hardlinks[key] = dest
        self._files.append(RestoredFile(dest, node, pending=len(node.content)))
        self.summary.files += 1
        self.progress.bytes_total += node.size

    def _plan_reads(self) -> list[PackRead]:
        """Every needed blob once, with all its places, grouped into reads pack by pack."""
        needed: dict[bytes, NeededBlob] = {}
        lookup = self.repo.index.lookup
        for file in self._files:
            offset = 0
            for blob_id in file.node.content:
                blob = needed.get(blob_id)
                if blob is None:
                    blob = needed[blob_id] = NeededBlob(blob_id, lookup(blob_id))
                blob.places.append((file, offset))
                offset += blob.entry.raw_length
        by_pack: dict[str, list[NeededBlob]] = {}
        for blob in needed.values():
            by_pack.setdefault(blob.entry.pack_id, []).append(blob)
        return [
            read
            for blobs in by_pack.values()
            for read in plan_reads(blobs, max_gap=self.max_gap, max_bytes=self.read_size)
        ]

    # ---- fetching ----------------------------------------------------------------------

    async def _fetch_all(self, reads: list[PackRead]) -> None:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bb-restore")
        # Each read is held in memory until its blobs are written: bound the bytes in
        # flight, not only the number of requests (16 S3 connections x 16 MiB packs
        # would be 256 MiB).
        read_bytes = self.read_size or self.repo.config.pack_size
        slots = asyncio.Semaphore(min(self.connections, max(2, MAX_BYTES_IN_FLIGHT // read_bytes)))

        async def one(read: PackRead) -> None:
            async with slots:
                data = await self._get(read)
                written = await loop.run_in_executor(pool, self._write_read, data, read)
            self.progress.bytes_written += written
            self.summary.bytes += written
            self.progress.files = self._writer.finished

        unwritten = [f for f in self._files if f.pending == 0]
        tasks = [
            asyncio.ensure_future(loop.run_in_executor(pool, self._finish_unwritten, unwritten)),
            *(asyncio.ensure_future(one(read)) for read in reads),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            # After a failure, stop reading at once rather than when the loop closes.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.shutdown(wait=True, cancel_futures=True)
            self._writer.close_all()
        self.progress.files = self._writer.finished

    async def _get(self, read: PackRead) -> bytes:
        first = read.blobs[0].entry
        name = pack_object_name(first.blob_type, first.pack_id)
        data = await self.repo.read_pack(name, read.start, read.end - read.start)
        if len(data) != read.end - read.start:
            raise IntegrityError(f"pack {first.pack_id}: {name} is truncated")
        return data

    def _write_read(self, data: bytes, read: PackRead) -> int:
        """Decode every blob of one read and write it to all its places (a worker thread)."""
        written = 0
        start = read.start
        view = memoryview(data)
        for blob in read.blobs:
            entry = blob.entry
            sealed = view[entry.offset - start : entry.offset - start + entry.length]
            plain = self.repo.decode_blob(blob.blob_id, entry, sealed)
            for file, offset in blob.places:
                self._writer.write(file, plain, offset)
            written += len(plain) * len(blob.places)
        return written

    def _finish_unwritten(self, files: list[RestoredFile]) -> None:
        for file in files:
            self._writer.finish_unwritten(file)

    # ---- special files and directories -------------------------------------------------

    def _finish_others_and_dirs(self) -> None:
        for dest, node in self._others:
            try:
                self._create_special(dest, node)
            except OSError as exc:
                self._error(dest, f"cannot create {node.type}: {exc.strerror or exc}")
                continue
            self._set_metadata(dest, node)
        for dest, node in sorted(self._dirs, key=lambda d: d[0].count(b"/"), reverse=True):
            self._set_metadata(dest, node)
            self.summary.dirs += 1

    def _set_metadata(self, dest: bytes, node: Node) -> None:
        try:
            set_metadata(dest, node, chown=self._writer.chown)
        except OSError as exc:
            self._error(dest, f"cannot set metadata: {exc.strerror or exc}")

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
