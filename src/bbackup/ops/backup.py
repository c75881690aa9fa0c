"""The archiver: walks the source paths and writes one snapshot.

scan (os.scandir + lstat) → change detection against the parent snapshot → read → chunk
→ hash → dedup → compress → seal into the pack → hash the pack (reader threads; every
library involved releases the GIL) → upload (asyncio tasks). The writer bounds the packs
in memory, so a slow store slows the readers instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from bbackup import __version__
from bbackup.chunking import Chunker
from bbackup.crypto.aead import BlobType
from bbackup.errors import BbackupError, NoSpace
from bbackup.ops.scan import Excluder, Prescan, node_from_stat, scan_dir, unchanged
from bbackup.repository import (
    BlobWriter,
    Repository,
    RepositoryLock,
    current_user,
)
from bbackup.snapshot.model import DIR, FILE, Node, Snapshot, Tree
from bbackup.snapshot.store import load_snapshots, load_tree, save_snapshot, save_tree

T = TypeVar("T")
BACKUP_TYPES = ("incremental", "differential", "full")
#: Files at least this large have their chunks processed by the CPU pool in parallel.
LARGE_FILE = 32 * 1024 * 1024
CHUNKS_IN_FLIGHT = 2
#: Files smaller than this are read in batches of up to BATCH_FILES files / BATCH_BYTES;
#: larger ones one at a time.
SMALL_FILE = 1024 * 1024
BATCH_FILES = 64
BATCH_BYTES = 8 * 1024 * 1024
#: What reading one file gives: (content, size, warning), or the error.
_Outcome = tuple[list[bytes], int, str | None] | OSError


@dataclass(slots=True)
class BackupOptions:
    """What to back up and how."""

    paths: Sequence[str]
    host: str = field(default_factory=socket.gethostname)
    tags: Sequence[str] = ()
    excludes: Sequence[str] = ()
    backup_type: str = "incremental"
    time: datetime | None = None
    storage_class: str | None = None
    compression_level: int | None = None
    workers: int = 2
    upload_slots: int = 4
    #: Directories listed ahead, while the repository was being opened (stopped by run).
    prescan: Prescan | None = None


@dataclass(slots=True)
class BackupProgress:
    """Live counters for progress display; written by the archiver, read by the CLI."""

    files: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_seen: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class BackupSummary:
    """What one backup did; stored in the snapshot and printed as the --json summary."""

    snapshot_id: str = ""
    type: str = "incremental"
    parent: str | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    total_files: int = 0
    total_bytes: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    packs_written: int = 0
    errors: int = 0
    error_list: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Leaf:
    """Marks a backup source path inside the virtual tree of path components."""


_LEAF = _Leaf()
_VirtualTree = dict[bytes, "_VirtualTree | _Leaf"]


def normalize_paths(paths: Sequence[str]) -> list[str]:
    """Absolute, de-duplicated source paths; a path inside another is dropped."""
    absolute = sorted({os.path.abspath(os.path.expanduser(p)) for p in paths})
    kept: list[str] = []
    for path in absolute:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def _virtual_tree(paths: Sequence[str]) -> _VirtualTree:
    root: _VirtualTree = {}
    for path in paths:
        parts = [os.fsencode(p) for p in path.strip("/").split("/") if p]
        if not parts:
            raise BbackupError("backing up / itself: name the directories under it instead")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        node[parts[-1]] = _LEAF
    return root


def select_parent(
    snapshots: Sequence[Snapshot], host: str, paths: Sequence[str], backup_type: str
) -> Snapshot | None:
    """The snapshot to compare with: latest (incremental) or latest full (differential)."""
    if backup_type == "full":
        return None
    same = [s for s in snapshots if s.host == host and sorted(s.paths) == sorted(paths)]
    if backup_type == "differential":
        same = [s for s in same if s.backup_type == "full"]
    return max(same, key=lambda s: (s.time, s.id), default=None)


class Archiver:
    """Backs up a set of paths into one snapshot."""

    def __init__(
        self,
        repo: Repository,
        options: BackupOptions,
        *,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        if options.backup_type not in BACKUP_TYPES:
            raise BbackupError(f"unknown backup type {options.backup_type!r}")
        self.repo = repo
        self.options = options
        self.on_error = on_error
        self.progress = BackupProgress()
        self.summary = BackupSummary(type=options.backup_type)
        self.excluder = Excluder(options.excludes)
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._cpu_pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._batch_done: asyncio.Future[list[_Outcome]] | None = None
        self._writer: BlobWriter | None = None
        self._file_slots = asyncio.Semaphore(max(2, options.workers * 4))

    # ---- entry point -------------------------------------------------------------------

    async def run(self) -> Snapshot:
        started = time.monotonic()
        paths = normalize_paths(self.options.paths)
        missing = [p for p in paths if not await asyncio.to_thread(os.path.lexists, p)]
        if missing:
            raise BbackupError(f"{missing[0]}: no such file or directory")
        async with RepositoryLock(self.repo, exclusive=False, purpose="backup"):
            # Read the index and the snapshots only once our lock is visible: a prune that
            # cannot see the lock yet may delete any pack no snapshot uses, so nothing
            # read before it may be deduplicated against or reused from a parent.
            await self.repo.load_index()
            snapshots = await load_snapshots(self.repo)
            parent = select_parent(snapshots, self.options.host, paths, self.options.backup_type)
            fulls = [
                s for s in snapshots if s.backup_type == "full" and s.host == self.options.host
            ]
            base = max(fulls, key=lambda s: (s.time, s.id), default=None)
            self.summary.parent = parent.id if parent else None
            self._loop = asyncio.get_running_loop()
            self._writer = self.repo.new_writer(
                compression_level=self.options.compression_level,
                data_storage_class=self.options.storage_class,
                upload_slots=self.options.upload_slots,
            )
            if self.options.prescan is not None:
                await asyncio.to_thread(self.options.prescan.stop)
            self._pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="bb-read")
            self._cpu_pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="bb-cpu")
            try:
                tree_id = await self._save_virtual(
                    b"", _virtual_tree(paths), parent.tree if parent else None
                )
                await self._writer.flush()
            except BaseException:
                for task in list(self._tasks):
                    task.cancel()
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                await self._writer.abort()
                raise
            finally:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._cpu_pool.shutdown(wait=True, cancel_futures=True)
            stats = self._writer.stats
            self.summary.bytes_added = stats.bytes_added
            self.summary.bytes_stored = stats.bytes_stored
            self.summary.packs_written = stats.packs
            self.summary.bytes_read = self.progress.bytes_read
            self.summary.errors = len(self.summary.error_list)
            self.summary.duration_seconds = round(time.monotonic() - started, 3)
            snapshot = Snapshot(
                time=self.options.time or datetime.now().astimezone(),
                host=self.options.host,
                paths=paths,
                tree=tree_id,
                user=current_user(),
                tags=sorted(set(self.options.tags)),
                backup_type=self.options.backup_type,
                parent=parent.id if parent else None,
                base=None if self.options.backup_type == "full" else (base.id if base else None),
                program_version=f"bbackup {__version__}",
                excludes=list(self.options.excludes),
                summary=self._stored_summary(),
            )
            await save_snapshot(self.repo, snapshot)
        self.summary.snapshot_id = snapshot.id
        return snapshot

    def _stored_summary(self) -> dict[str, Any]:
        summary = self.summary.to_dict()
        for transient in ("snapshot_id", "requests", "error_list"):
            summary.pop(transient, None)
        return summary

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.error_list.append({"path": text, "message": message})
        self.progress.errors += 1
        if self.on_error is not None:
            self.on_error(text, message)

    # ---- trees -------------------------------------------------------------------------

    async def _parent_nodes(self, tree_id: bytes | None) -> dict[bytes, Node]:
        if tree_id is None or not self.repo.index.has(tree_id):
            return {}
        return {n.name: n for n in (await load_tree(self.repo, tree_id)).nodes}

    async def _save_virtual(
        self, prefix: bytes, children: _VirtualTree, parent_tree: bytes | None
    ) -> bytes:
        """Save the directories leading to the source paths (not their other entries)."""
        assert self._writer is not None
        previous = await self._parent_nodes(parent_tree)
        nodes: list[Node] = []
        tasks: list[Node | asyncio.Task[Node | None]] = []
        for name, child in sorted(children.items()):
            path = prefix + b"/" + name
            try:
                node = await asyncio.to_thread(_stat_node, name, path)
            except OSError as exc:
                self._error(path, exc.strerror or str(exc))
                continue
            prev = previous.get(name)
            if isinstance(child, _Leaf):
                tasks.append(await self._schedule(path, node, prev))
            else:
                node.subtree = await self._save_virtual(
                    path, child, prev.subtree if prev and prev.type == DIR else None
                )
                nodes.append(node)
        await self._flush_batch()  # the walk below is done: nothing else will send it
        nodes.extend(await _resolve(tasks))
        return await save_tree(self._writer, Tree(nodes))

    async def _save_dir(self, path: bytes, parent_tree: bytes | None) -> asyncio.Task[bytes]:
        """Walk one directory now; return a task for its tree, saved once its files are.

        The walk goes on to the next directory without waiting for this one's files, so
        the reader threads always have work; how far it runs ahead is bounded by the
        files in flight (`_file_slots`), since scheduling a file waits for a slot.
        """
        assert self._writer is not None
        self.progress.dirs += 1
        self.summary.dirs += 1
        previous = await self._parent_nodes(parent_tree)
        try:
            # Inline, not in a thread: one directory costs well under a millisecond, less
            # than the thread hop, and directories are walked one after the other.
            entries = self._scan_dir(path)
        except OSError as exc:
            self._error(path, f"cannot read directory: {exc.strerror or exc}")
            entries = []
        scheduled = [await self._schedule(p, n, previous.get(n.name)) for p, n in entries]
        return self._task(self._save_tree(scheduled, parent_tree, previous))

    async def _save_tree(
        self,
        scheduled: list[Node | asyncio.Task[Node | None]],
        parent_tree: bytes | None,
        previous: dict[bytes, Node],
    ) -> bytes:
        assert self._writer is not None
        nodes = await _resolve(scheduled)
        if (
            parent_tree is not None
            and len(nodes) == len(previous)
            and all(previous.get(n.name) == n for n in nodes)
            and parent_tree in self.repo.index  # live, not in a pack prune marked
        ):
            # The same nodes serialise to the same bytes: the parent's tree, as it is.
            return parent_tree
        return await save_tree(self._writer, Tree(nodes))

    async def _dir_node(self, node: Node, tree: asyncio.Task[bytes]) -> Node | None:
        node.subtree = await tree
        return node

    def _task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task that is cancelled if the backup fails before it is awaited."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _scan_dir(self, path: bytes) -> list[tuple[bytes, Node]]:
        prescan = self.options.prescan
        entries = prescan.take(path) if prescan is not None else None
        if entries is None:
            entries = scan_dir(path, self.excluder, self._error)
        return entries

    async def _schedule(
        self, path: bytes, node: Node, prev: Node | None
    ) -> Node | asyncio.Task[Node | None]:
        """Save one entry: directories recurse, changed files go to the reader threads (a
        task is returned for those); everything else is done at once."""
        if node.type == DIR:
            subtree = prev.subtree if prev and prev.type == DIR else None
            return self._task(self._dir_node(node, await self._save_dir(path, subtree)))
        if node.type != FILE:
            return node
        self.summary.total_files += 1
        self.progress.files += 1
        if (
            self.options.backup_type != "full"
            and unchanged(node, prev)
            and prev is not None
            and all(blob in self.repo.index for blob in prev.content)
        ):
            node.content = prev.content
            self.summary.files_unchanged += 1
            self.summary.total_bytes += node.size
            self.progress.bytes_seen += node.size
            return node
        alone = node.size >= SMALL_FILE  # a larger file goes in a batch of its own
        if alone:
            await self._flush_batch()
        task = self._batch_file(path, node, is_new=prev is None)
        if alone or len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            await self._flush_batch()
        return task

    def _batch_file(self, path: bytes, node: Node, *, is_new: bool) -> asyncio.Task[Node | None]:
        """Queue a file for the next batch; its task ends when the batch is read.

        Files go to the reader threads in batches: small files up to BATCH_FILES or
        BATCH_BYTES together, one thread hop (and one wake-up of the event loop) per
        batch instead of per file; a file of SMALL_FILE or more alone.
        """
        assert self._loop is not None
        if self._batch_done is None:
            self._batch_done = self._loop.create_future()
        done = self._batch_done
        position = len(self._batch)
        self._batch.append(path)
        self._batch_bytes += node.size
        return self._task(self._batched_file(done, position, path, node, is_new))

    async def _batched_file(
        self,
        done: asyncio.Future[list[_Outcome]],
        position: int,
        path: bytes,
        node: Node,
        is_new: bool,
    ) -> Node | None:
        return self._file_done(path, node, is_new, (await done)[position])

    async def _flush_batch(self) -> None:
        """Hand the queued files to a reader thread (holding one file slot)."""
        if not self._batch:
            return
        batch, done = self._batch, self._batch_done
        assert done is not None
        self._batch, self._batch_bytes, self._batch_done = [], 0, None
        await self._file_slots.acquire()
        self._task(self._read_batch(batch, done))

    async def _read_batch(self, paths: list[bytes], done: asyncio.Future[list[_Outcome]]) -> None:
        assert self._loop is not None
        try:
            outcomes = await self._loop.run_in_executor(self._pool, self._read_files, paths)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            return
        finally:
            self._file_slots.release()
        done.set_result(outcomes)

    def _file_done(self, path: bytes, node: Node, is_new: bool, outcome: _Outcome) -> Node | None:
        """The node of a file that was read, or None (reported) if it could not be."""
        if isinstance(outcome, OSError):
            if outcome.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"{os.fsdecode(path)}: no space left on device") from outcome
            if isinstance(outcome, FileNotFoundError):
                self._error(path, "vanished before it could be read")
            else:
                self._error(path, f"cannot read: {outcome.strerror or outcome}")
            return None
        content, size, warning = outcome
        if warning:
            self._error(path, warning)
        node.content = content
        node.size = size
        self.summary.total_bytes += size
        if is_new:
            self.summary.files_new += 1
        else:
            self.summary.files_changed += 1
        return node

    # ---- reader threads ----------------------------------------------------------------

    def _chunker(self) -> Chunker:
        chunker: Chunker | None = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = Chunker(self.repo.master.chunker_seed, self.repo.config.chunker)
            self._local.chunker = chunker
        return chunker

    def _read_files(self, paths: list[bytes]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        for path in paths:
            try:
                outcomes.append(self._read_file(path))
            except OSError as exc:
                outcomes.append(exc)
        return outcomes

    def _read_file(self, path: bytes) -> tuple[list[bytes], int, str | None]:
        """Chunk, hash and seal one file; retried once if it changes while being read."""
        content, size, changed = self._read_once(path)
        if changed:
            content, size, changed = self._read_once(path)
            if changed:
                return content, size, "file changed while being read; stored as read"
        return content, size, None

    def _read_once(self, path: bytes) -> tuple[list[bytes], int, bool]:
        fd = _open_for_reading(path)
        try:
            before = os.fstat(fd)
            if before.st_size >= LARGE_FILE and self.options.workers > 1:
                content, size = self._store_chunks_parallel(fd)
            elif before.st_size < self.repo.config.chunker.min_size:
                content, size = self._store_small(fd, before.st_size)
            else:
                content, size = self._store_chunks(fd)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
        return content, size, changed or size != after.st_size

    def _store_small(self, fd: int, size: int) -> tuple[list[bytes], int]:
        """A file below the minimum chunk size is one chunk: read it whole, no chunker.

        The first read asks for its size plus one byte: a buffer of the minimum chunk
        size (512 KiB) for every small file would come from the top of the heap, which
        glibc trims after each free: page faults and TLB shoot-downs, per file.
        """
        limit = self.repo.config.chunker.min_size
        data = os.read(fd, min(size + 1, limit))
        while data and len(data) < limit:  # it grew, or a short read
            more = os.read(fd, min(len(data) + 1, limit - len(data)))
            if not more:
                break
            data += more
        if len(data) >= limit:  # it grew past one chunk: chunk it from the start
            os.lseek(fd, 0, os.SEEK_SET)
            return self._store_chunks(fd)
        if not data:
            return [], 0
        return [self._store_chunk(data)], len(data)

    def _store_chunks(self, fd: int) -> tuple[list[bytes], int]:
        """Chunk, hash, compress and seal a file's chunks in this thread."""
        content: list[bytes] = []
        size = 0
        for chunk in self._chunker().chunk_fd(fd):
            content.append(self._store_chunk(chunk))
            size += len(chunk)
        return content, size

    def _store_chunks_parallel(self, fd: int) -> tuple[list[bytes], int]:
        """Chunk a large file here and hash, compress and seal its chunks in the CPU pool,
        so that one large file keeps every core busy, not one."""
        assert self._cpu_pool is not None
        content: list[bytes] = []
        size = 0
        in_flight: deque[Future[bytes]] = deque()
        try:
            for chunk in self._chunker().chunk_fd(fd):
                # A copy: the chunker reuses its buffer for what it reads next.
                in_flight.append(self._cpu_pool.submit(self._store_chunk, bytes(chunk)))
                size += len(chunk)
                if len(in_flight) >= CHUNKS_IN_FLIGHT:
                    content.append(in_flight.popleft().result())
            while in_flight:
                content.append(in_flight.popleft().result())
        finally:
            for future in in_flight:
                future.cancel()
        return content, size

    def _store_chunk(self, chunk: bytes | memoryview) -> bytes:
        assert self._writer is not None
        prepared = self._writer.prepare(BlobType.DATA, chunk)
        # Sealed into its pack before the chunk's buffer is reused.
        self._writer.put(prepared)
        self.progress.bytes_read += len(chunk)
        self.progress.bytes_seen += len(chunk)
        return prepared.blob_id


async def _resolve(items: list[Node | asyncio.Task[Node | None]]) -> list[Node]:
    """Nodes in order, awaiting the ones still being read; unreadable files drop out."""
    nodes = []
    for item in items:
        node = await item if isinstance(item, asyncio.Task) else item
        if node is not None:
            nodes.append(node)
    return nodes


def _stat_node(name: bytes, path: bytes) -> Node:
    return node_from_stat(name, path, os.lstat(path))


def _open_for_reading(path: bytes) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        with contextlib.suppress(PermissionError):
            return os.open(path, flags | noatime)
    return os.open(path, flags)
