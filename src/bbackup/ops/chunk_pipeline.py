"""The reader threads' work: open a file, cut it into chunks and hand each chunk to the pack
writer (hash, dedup, compress, seal), reading a file again once if it changes meanwhile.

Every library on this path releases the GIL, so the reader threads run in parallel; a file
of LARGE_FILE or more has its chunks sealed in the CPU pool, so that one large file keeps
every core busy, not one.

A reader opens the files of its batch a few ahead of the one it reads and asks the kernel
to read them in (`posix_fadvise(WILLNEED)`): from a cold cache, small files otherwise wait
for the disk one at a time, a full device round trip each, where the disk could serve many
at once (docs/bench/session9.md, "Reading small files ahead").
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import resource
import stat
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from bbackup.chunking import Chunker, ChunkerParams
from bbackup.crypto.aead import BlobType
from bbackup.ops.backup_summary import BackupProgress
from bbackup.ops.scan import open_path
from bbackup.repository import BlobWriter

#: Files at least this large have their chunks processed by the CPU pool in parallel.
LARGE_FILE = 32 * 1024 * 1024
CHUNKS_IN_FLIGHT = 2
#: What reading one file gives: (content, size, warning), or the error.
FileOutcome = tuple[list[bytes], int, str | None] | OSError
#: A reader keeps this many files of its batch open ahead of the one it reads, their
#: reads requested from the kernel; files of PREFETCH_LIMIT or more are left to the
#: kernel's own read-ahead of sequential reads.
PREFETCH_FILES = 16
PREFETCH_LIMIT = 1024 * 1024
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
#: A file opened for reading: its descriptor and its status when opened.
_Opened = tuple[int, os.stat_result]


class ChunkPipeline:
    """Turns files into lists of blob IDs, sealed into packs, in the calling thread."""

    def __init__(
        self,
        writer: BlobWriter,
        chunker_seed: int,
        chunker_params: ChunkerParams,
        progress: BackupProgress,
        *,
        cpu_pool: ThreadPoolExecutor,
        workers: int,
    ) -> None:
        self._writer = writer
        self._chunker_seed = chunker_seed
        self._chunker_params = chunker_params
        self._min_size = chunker_params.min_size
        self.progress = progress
        self._cpu_pool = cpu_pool
        self._workers = workers
        self._ahead = prefetch_window(workers)
        self._local = threading.local()

    def _chunker(self) -> Chunker:
        chunker: Chunker | None = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = Chunker(self._chunker_seed, self._chunker_params)
            self._local.chunker = chunker
        return chunker

    def read_files(self, paths: list[bytes]) -> list[FileOutcome]:
        """Store each file; an error reading one becomes its outcome."""
        outcomes: list[FileOutcome] = []
        ahead: deque[_Opened | OSError | None] = deque()
        upcoming = iter(paths)
        try:
            for path in paths:
                for following in itertools.islice(upcoming, self._ahead + 1 - len(ahead)):
                    ahead.append(_open_ahead(following))
                opened = ahead.popleft()
                try:
                    if opened is None:  # not opened ahead: now
                        opened = _open(path)
                    if isinstance(opened, OSError):
                        raise opened
                    outcomes.append(self._read_file(path, opened))
                except OSError as exc:
                    outcomes.append(exc)
        finally:
            for left in ahead:
                if isinstance(left, tuple):
                    os.close(left[0])
        return outcomes

    def _read_file(self, path: bytes, opened: _Opened) -> tuple[list[bytes], int, str | None]:
        """Chunk, hash and seal one file; retried once if it changes while being read."""
        content, size, changed = self._read_once(*opened)
        if changed:
            content, size, changed = self._read_once(*_open(path))
            if changed:
                return content, size, "file changed while being read; stored as read"
        return content, size, None

    def _read_once(self, fd: int, before: os.stat_result) -> tuple[list[bytes], int, bool]:
        """Store the open file `fd` (closed here), whose status was `before` when opened."""
        try:
            if before.st_size >= LARGE_FILE and self._workers > 1:
                content, size = self._store_chunks_parallel(fd)
            elif before.st_size < self._min_size:
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
        limit = self._min_size
        data = os.read(fd, min(size + 1, limit))
        # Not read again to see the end when all `size` bytes came: a file that grows
        # meanwhile is caught by the status after reading (and read again).
        while data and len(data) < limit and len(data) != size:  # it grew, or a short read
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
        prepared = self._writer.prepare(BlobType.DATA, chunk)
        # Sealed into its pack before the chunk's buffer is reused.
        self._writer.put(prepared)
        self.progress.bytes_read += len(chunk)
        self.progress.bytes_seen += len(chunk)
        return prepared.blob_id


def prefetch_window(workers: int) -> int:
    """Files each of `workers` readers keeps open ahead: PREFETCH_FILES, fewer where the
    descriptor limit is low, so that all of them together take at most a quarter of it."""
    try:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 0
    if limit == resource.RLIM_INFINITY:
        return PREFETCH_FILES
    return max(0, min(PREFETCH_FILES, limit // 4 // max(1, workers) - 1))


def _open(path: bytes) -> _Opened:
    """Open a regular file for reading, with its status. Anything else put in its place
    since the walk (a FIFO, whose reads would wait for a writer forever; a device) is an
    error of that file."""
    fd = _open_for_reading(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _open_ahead(path: bytes) -> _Opened | OSError | None:
    """Open a file to be read soon and have the kernel start reading it, if it is small.
    None if the descriptors ran out: the file is opened when its turn comes."""
    try:
        opened = _open(path)
    except OSError as exc:
        return None if exc.errno in (errno.EMFILE, errno.ENFILE) else exc
    size = opened[1].st_size
    if _WILLNEED is not None and 0 < size < PREFETCH_LIMIT:
        with contextlib.suppress(OSError):  # only advice
            os.posix_fadvise(opened[0], 0, size, _WILLNEED)
    return opened


def _open_for_reading(path: bytes) -> int:
    # Non-blocking: opening a FIFO swapped in since the walk must not wait for a writer
    # (reads of regular files ignore the flag).
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        with contextlib.suppress(PermissionError):
            return open_path(path, flags | noatime)
    return open_path(path, flags)
