"""Keyed content-defined chunking: FastCDC with a gear table seeded from the master key.

The seed keeps chunk boundaries secret, so the sizes of stored blobs do not fingerprint
known files. pyfastcdc's Cython core releases the GIL while it scans.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """Chunk size bounds, stored in the repository config."""

    min_size: int = 512 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 8 * MiB


class Chunker:
    """Splits byte streams into content-defined chunks. One instance per thread."""

    def __init__(self, seed: int, params: ChunkerParams) -> None:
        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            seed=seed,
        )

    def chunk_stream(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunks of `stream`; each view is valid only until the next one is yielded."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

    def chunk_buffer(self, buf: bytes | memoryview) -> Iterator[memoryview]:
        """Yield chunks of an in-memory buffer (views into it)."""
        for chunk in self._cdc.cut_buf(buf):
            yield chunk.data
