"""Keyed content-defined chunking: FastCDC with a gear table seeded from the master key.

The seed keeps chunk boundaries secret, so the sizes of stored blobs do not fingerprint
known files. pyfastcdc's Cython core releases the GIL while it scans.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """Chunk size bounds, stored in the repository config."""

    min_size: int = 512 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 8 * MiB


#: Bytes read per system call when chunking a file.
READ_BLOCK = 1 * MiB
#: Of a chunker's buffer, what stays in memory between files: the rest (up to a maximal
#: chunk, 8 MiB by default) is given back after each file that filled it.
KEEP_BUFFER = 2 * MiB


class Chunker:
    """Splits byte streams into content-defined chunks. One instance per thread."""

    def __init__(self, seed: int, params: ChunkerParams) -> None:
        from pyfastcdc import FastCDC  # here: only a backup chunks, every command reads params

        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            seed=seed,
        )
        # Reused for every file. Longer than a maximal chunk, so a full buffer always holds
        # one complete chunk before the (possibly cut short) last one. A private map: its
        # pages take memory only once a read fills them, so small files cost a few pages,
        # and what a large file filled beyond KEEP_BUFFER is given back when it is done
        # (one chunker per reader thread held 9 MiB each for the whole backup).
        self._buffer = mmap.mmap(-1, READ_BLOCK + params.max_size, flags=mmap.MAP_PRIVATE)

    def chunk_fd(self, fd: int) -> Iterator[memoryview]:
        """Yield the chunks of an open file; each view is valid until the next is yielded.

        Reads large blocks into a reused buffer (the read releases the GIL) and cuts them
        with pyfastcdc's buffer chunker, which scans without the GIL. The chunk that runs
        into the end of a full buffer is carried over and cut again with what follows, so
        boundaries are exactly those of one pass over the whole file.
        """
        buf = self._buffer
        view = memoryview(buf)
        filled = high = 0
        eof = False
        try:
            while True:
                while not eof and filled < len(buf):
                    n = os.readv(fd, [view[filled:]])
                    if n == 0:
                        eof = True
                    filled += n
                high = max(high, filled)
                if filled == 0:
                    return
                start = 0
                for chunk in self._cdc.cut_buf(view[:filled]):
                    end = chunk.offset + chunk.length
                    if not eof and end == filled:
                        break  # may be cut short by the buffer's end: carry it over
                    yield chunk.data
                    start = end
                if eof:
                    return
                rest = filled - start
                view[:rest] = view[start:filled]
                filled = rest
        finally:
            if high > KEEP_BUFFER:
                with contextlib.suppress(OSError):  # the pages stay: only memory is lost
                    buf.madvise(mmap.MADV_DONTNEED, KEEP_BUFFER, len(buf) - KEEP_BUFFER)

    def chunk_stream(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunks of `stream`; each view is valid only until the next one is yielded."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

    def chunk_buffer(self, buf: bytes | memoryview) -> Iterator[memoryview]:
        """Yield chunks of an in-memory buffer (views into it)."""
        for chunk in self._cdc.cut_buf(buf):
            yield chunk.data
