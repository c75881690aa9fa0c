"""The restorer: rebuilds a snapshot's files, links and metadata under a target directory.

Plan first (walk the trees, create directories, special files and files that get no
writes), then read the blobs each pack holds for the snapshot with a few ranged reads,
decrypt and verify them in worker threads and write each to every place it belongs
(`restore_files`: a file gets its metadata as its last blob lands). Directories get
theirs last, each after everything in it, so nothing written afterwards disturbs their
times. Everything is reached from the target's descriptor without following a symlink
(`restore_target`), so the restore never writes outside its target.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bbackup.errors import BbackupError, IntegrityError
from bbackup.ops.restore_files import CREATE_FLAGS, FileWriter, RestoredFile, creation_mode
from bbackup.ops.restore_metadata import restore_owners, set_metadata, set_metadata_at
from bbackup.ops.restore_target import (
    SPECIAL_TYPES,
    OpenDirectories,
    RestoredDir,
    clear_entry,
    join_path,
    make_directory,
    make_special,
)
from bbackup.repository import BlobLoader, IndexEntry, pack_object_name
from bbackup.repository.config import RepositoryConfig
from bbackup.snapshot.model import DIR, FILE, SOCKET, Node, Snapshot
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
    #: Entries left out on purpose (sockets: nothing can be restored of them).
    skipped: int = 0
    skipped_list: list[dict[str, str]] = field(default_factory=list)
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
        on_warning: Callable[[str, str], None] | None = None,
        numeric_owner: bool = False,
    ) -> None:
        """`read_size`: split reads of a pack so none spans more than this many bytes
        (None: one read per run of needed blobs; right where requests cost money).
        `max_gap`: unneeded bytes between needed blobs that one read spans.
        `numeric_owner`: owners by their recorded numbers, not by name (run as root)."""
        self.repo = repo
        self.snapshot = snapshot
        self.target = os.fsencode(os.path.abspath(target))
        self.include = [os.fsencode(p.rstrip("/")) for p in include or []]
        self.workers = workers
        self.connections = max(1, connections)
        self.read_size = read_size
        self.max_gap = max_gap
        self.on_error = on_error
        self.on_warning = on_warning
        self.progress = RestoreProgress()
        self.summary = RestoreSummary(snapshot_id=snapshot.id)
        self._files: list[RestoredFile] = []
        #: Directories to give metadata, each after everything below it.
        self._dirs: list[RestoredDir] = []
        self._hardlinks: dict[tuple[int, int], RestoredFile] = {}
        self._directories = OpenDirectories(self.target)
        self._writer = FileWriter(
            self._directories, chown=restore_owners(numeric=numeric_owner), on_error=self._error
        )

    async def run(self) -> RestoreSummary:
        started = time.monotonic()
        target_fd = self._directories.open_target()
        try:
            await self._plan(self.snapshot.tree, self._directories.root, target_fd, b"")
            await self._fetch_all(self._plan_reads())
            await asyncio.to_thread(self._finish_dirs)
        finally:
            self._directories.close_all()
        self.summary.duration_seconds = round(time.monotonic() - started, 3)
        self.summary.errors = len(self.summary.error_list)
        self.summary.skipped = len(self.summary.skipped_list)
        return self.summary

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.error_list.append({"path": text, "message": message})
        if self.on_error is not None:
            self.on_error(text, message)

    def _skip(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.skipped_list.append({"path": text, "message": message})
        if self.on_warning is not None:
            self.on_warning(text, message)

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

    async def _plan(
        self,
        tree_id: bytes,
        directory: RestoredDir,
        dir_fd: int,
        rel: bytes,
        *,
        fresh: bool = False,
    ) -> None:
        """Walk a tree: make directories and special files, note files. `dir_fd` is
        `directory`'s, held open for the walk. `fresh`: we just created the directory,
        so nothing in it can be in the way."""
        tree = await load_tree(self.repo, tree_id)
        for node in tree.nodes:
            name = node.name
            if b"/" in name or b"\0" in name or name in (b"", b".", b".."):
                raise BbackupError(f"refusing unsafe name {name!r} in snapshot tree")
            child = rel + b"/" + name
            wanted, descend = self._wanted(child)
            if node.type == DIR:
                if descend:
                    await self._plan_dir(directory, dir_fd, node, child, wanted=wanted)
            elif not wanted:
                continue
            elif node.type == SOCKET:
                self._skip(join_path(directory.path, name), "sockets are not restored")
            else:
                try:
                    if node.type == FILE:
                        self._plan_file(directory, dir_fd, node, fresh=fresh)
                    else:
                        self._plan_special(directory, dir_fd, node, fresh=fresh)
                except OSError as exc:
                    kind = "" if node.type == FILE else f" {node.type}"
                    message = f"cannot create{kind}: {exc.strerror or exc}"
                    self._error(join_path(directory.path, name), message)

    async def _plan_dir(
        self, parent: RestoredDir, parent_fd: int, node: Node, rel: bytes, *, wanted: bool
    ) -> None:
        directory = RestoredDir(parent, node.name, join_path(parent.path, node.name))
        try:
            created = make_directory(parent_fd, node.name)
            dir_fd = self._directories.acquire(directory)
        except OSError as exc:
            self._error(directory.path, f"cannot create directory: {exc.strerror or exc}")
            return
        try:
            if node.subtree is not None:
                await self._plan(node.subtree, directory, dir_fd, rel, fresh=created)
        finally:
            self._directories.release(directory)
        if wanted:
            directory.node = node
            self._dirs.append(directory)

    def _plan_file(self, parent: RestoredDir, parent_fd: int, node: Node, *, fresh: bool) -> None:
        """Clear the way for a file; files with content are created by their first write."""
        name = node.name
        if not fresh:
            clear_entry(parent_fd, name)  # restored files replace what is there
        key = (node.device, node.inode)
        first = self._hardlinks.get(key) if node.nlink > 1 else None
        if first is not None:
            first_fd = self._directories.acquire(first.parent)
            try:
                os.link(
                    first.name,
                    name,
                    src_dir_fd=first_fd,
                    dst_dir_fd=parent_fd,
                    follow_symlinks=False,
                )
            finally:
                self._directories.release(first.parent)
            self.summary.links += 1
            return
        file = RestoredFile(parent, name, node, pending=len(node.content))
        if not node.content or node.nlink > 1:
            # Empty files get no write; a hard link's first path must exist to link to.
            fd = os.open(name, CREATE_FLAGS, creation_mode(node), dir_fd=parent_fd)
            file.created = True
            try:
                if not node.content:
                    self._writer.finish_unwritten(file, fd)
            finally:
                os.close(fd)
        if node.nlink > 1:
            self._hardlinks[key] = file
        if node.content:
            self._files.append(file)
        self.summary.files += 1
        self.progress.bytes_total += node.size

    def _plan_special(
        self, parent: RestoredDir, parent_fd: int, node: Node, *, fresh: bool
    ) -> None:
        """Make a symlink, FIFO or device node in place of what is there, with its metadata."""
        if node.type not in SPECIAL_TYPES:
            raise OSError(errno.EINVAL, "not a type of entry this version can restore")
        if not fresh:
            clear_entry(parent_fd, node.name)
        make_special(parent_fd, node.name, node)
        try:
            set_metadata_at(parent_fd, node.name, node, chown=self._writer.chown)
        except OSError as exc:
            message = f"cannot set metadata: {exc.strerror or exc}"
            self._error(join_path(parent.path, node.name), message)

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

        tasks = [asyncio.ensure_future(one(read)) for read in reads]
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

    # ---- directories -------------------------------------------------------------------

    def _finish_dirs(self) -> None:
        """Directory metadata, each directory after everything below it (`_dirs` is in
        that order), through its own descriptor."""
        for directory in self._dirs:
            assert directory.node is not None
            try:
                fd = self._directories.acquire(directory)
                try:
                    set_metadata(fd, directory.node, chown=self._writer.chown)
                finally:
                    self._directories.release(directory)
            except OSError as exc:
                self._error(directory.path, f"cannot set metadata: {exc.strerror or exc}")
            self.summary.dirs += 1
