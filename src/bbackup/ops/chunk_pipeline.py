"""The reader threads' work: open a file, cut it into chunks and hand each chunk to the pack
writer (hash, dedup, compress, seal), reading a file again once if it changes meanwhile.

Every library on this path releases the GIL, so the reader threads run in parallel; a file
of LARGE_FILE or more has its chunks sealed in the CPU pool, so that one large file keeps
every core busy, not one.

A reader opens the files of its batch a few ahead of the one it reads and asks the kernel
to read them in (`posix_fadvise(WILLNEED)`): from a cold cache, small files otherwise wait
for the disk one at a time, a full device round trip each, where the disk could serve many
at once (docs/bench/session9.md, "Reading small files ahead").

With seal workers (`ops/seal_processes.py`), a batch of small files is read and sealed in
another process instead, and only placed in packs here: the per-file interpreter work
that held the one lock the tree walk needs goes to another core.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from bbackup.chunking import Chunker, ChunkerParams
from bbackup.crypto.aead import BlobType
from bbackup.ops.backup_summary import BackupProgress
from bbackup.ops.file_open import Opened, open_regular, prefetch_window, read_each
from bbackup.ops.seal_processes import SealWorkers
from bbackup.ops.seal_protocol import EMPTY, FAILED, SEALED
from bbackup.ops.worker_processes import WorkerFailed
from bbackup.repository import BlobWriter

#: Files at least this large have their chunks processed by the CPU pool in parallel.
LARGE_FILE = 32 * 1024 * 1024
CHUNKS_IN_FLIGHT = 2
#: What reading one file gives: (content, size, warning), or the error.
FileOutcome = tuple[list[bytes], int, str | None] | OSError
#: Batches are read by the seal workers, when there are any, once this many files have
#: been read here: a backup of a few files does not start them.
SEAL_AFTER_FILES = 256
CHANGED_WHILE_READ = "file changed while being read; stored as read"


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
        sealers: SealWorkers | None = None,
        on_warning: Callable[[str], object] | None = None,
    ) -> None:
        """`sealers`: seal workers for batches of small files (`ops/seal_processes.py`);
        if one fails, the files are read here from then on and `on_warning` (called from
        a reader thread) hears why."""
        self._writer = writer
        self._chunker_seed = chunker_seed
        self._chunker_params = chunker_params
        self._min_size = chunker_params.min_size
        self.progress = progress
        self._cpu_pool = cpu_pool
        self._workers = workers
        self._ahead = prefetch_window(workers)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sealers = sealers
        self._on_warning = on_warning
        self._read_here = 0  # files read in this process (see SEAL_AFTER_FILES)

    def _chunker(self) -> Chunker:
        chunker: Chunker | None = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = Chunker(self._chunker_seed, self._chunker_params)
            self._local.chunker = chunker
        return chunker

    def read_files(self, paths: list[bytes]) -> list[FileOutcome]:
        """Store each file; an error reading one becomes its outcome."""
        sealers = self._sealers
        if sealers is not None and len(paths) > 1 and self._read_here >= SEAL_AFTER_FILES:
            try:
                return self._read_sealed(sealers, paths)
            except WorkerFailed as exc:
                # Nothing of the batch was stored (a reply is used whole or not at all):
                # read it here, and every batch after it.
                self._drop_sealers(sealers, exc)
        self._read_here += len(paths)
        return read_each(paths, self._ahead, self._read_file, _as_outcome)

    def _read_file(self, path: bytes, opened: Opened) -> tuple[list[bytes], int, str | None]:
        """Chunk, hash and seal one file; retried once if it changes while being read."""
        content, size, changed = self._read_once(*opened)
        if changed:
            content, size, changed = self._read_once(*open_regular(path))
            if changed:
                return content, size, CHANGED_WHILE_READ
        return content, size, None

    def _drop_sealers(self, sealers: SealWorkers, failure: WorkerFailed) -> None:
        with self._lock:
            first = self._sealers is sealers
            self._sealers = None
        if first and self._on_warning is not None:
            self._on_warning(f"{failure}; the backup reads its files itself from here on")

    def _read_sealed(self, sealers: SealWorkers, paths: list[bytes]) -> list[FileOutcome]:
        """Have a seal worker read a batch; place what it sealed in packs. A file one
        chunk cannot hold is read here."""
        outcomes: list[FileOutcome] = []
        progress = self.progress
        for path, outcome in zip(paths, sealers.seal(paths), strict=True):
            tag = outcome[0]
            if tag == SEALED:
                _, blob_id, size, sealed, changed = outcome
                prepared = self._writer.prepare_sealed(BlobType.DATA, blob_id, sealed, size)
                self._writer.put(prepared)
                progress.bytes_read += size
                progress.bytes_seen += size
                outcomes.append(([blob_id], size, CHANGED_WHILE_READ if changed else None))
            elif tag == EMPTY:
                outcomes.append(([], 0, CHANGED_WHILE_READ if outcome[1] else None))
            elif tag == FAILED:
                outcomes.append(OSError(outcome[1], outcome[2], path))
            else:
                try:
                    outcomes.append(self._read_file(path, open_regular(path)))
                except OSError as exc:
                    outcomes.append(exc)
        return outcomes

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


def _as_outcome(error: OSError) -> FileOutcome:
    return error
