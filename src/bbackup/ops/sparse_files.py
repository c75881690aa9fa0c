"""Sparse files: finding a file's holes at backup (SEEK_HOLE/SEEK_DATA) and leaving them
unwritten at restore, so a 100 GiB disk image with 1 GiB of data comes back taking 1 GiB.

A node's content still covers every byte (a hole reads as zeros, and runs of zeros
deduplicate to a few blobs), so every reader of a snapshot sees the same bytes; the holes
are only a hint to the restorer, which skips the zeros that fall in them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache

Hole = tuple[int, int]


def may_have_holes(st: os.stat_result) -> bool:
    """Fewer blocks allocated than the size needs: the only files worth asking for holes,
    so the other files cost no extra system call. (Inline data and compressed extents
    also land here; `find_holes` then finds none.)"""
    return st.st_blocks * 512 < st.st_size


def find_holes(fd: int, size: int) -> list[Hole]:
    """(offset, length) of each hole of the first `size` bytes of an open file, in order.
    A filesystem without SEEK_HOLE reports none."""
    holes: list[Hole] = []
    offset = 0
    try:
        while offset < size:
            hole = os.lseek(fd, offset, os.SEEK_HOLE)
            if hole >= size:
                break
            try:
                data = min(os.lseek(fd, hole, os.SEEK_DATA), size)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                data = size  # a hole up to the end of the file
            holes.append((hole, data - hole))
            offset = data
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENXIO, errno.EOPNOTSUPP):
            return []  # no SEEK_HOLE here, or the file shrank meanwhile
        raise
    return holes


def _zeros_in(data: bytes | memoryview, start: int, end: int) -> bool:
    """True if data[start:end] is all zeros. Compared with a cached run of zeros as bytes
    (a memcmp): a memoryview compares byte by byte, 50 times slower, and a fresh zero
    buffer per blob costs its page faults."""
    piece = data[start:end] if type(data) is bytes else bytes(data[start:end])
    return piece == _zeros(len(piece))


@lru_cache(maxsize=2)
def _zeros(length: int) -> bytes:
    """Runs of zeros of the lengths met most: the chunker cuts a long run of zeros into
    chunks of one size, so a hole's blobs mostly share one length (at most 2 x 8 MiB kept)."""
    return bytes(length)


def parts_to_write(
    holes: Sequence[Hole], offset: int, data: bytes | memoryview
) -> Iterator[tuple[int, memoryview]]:
    """The (offset, bytes) pieces of `data`, bound for `offset` in a new file, that must be
    written: all of it but the zeros that fall in a recorded hole. A stale or wrong hole
    list costs only space: bytes in a hole that are not zeros are written all the same."""
    view = memoryview(data)
    if not holes:
        yield offset, view
        return
    end = offset + len(view)
    position = offset
    for hole_start, hole_length in holes:
        hole_end = hole_start + hole_length
        if hole_end <= position:
            continue
        if hole_start >= end:
            break
        skip_start, skip_end = max(hole_start, position), min(hole_end, end)
        if not _zeros_in(data, skip_start - offset, skip_end - offset):
            continue  # not zeros: the hole list is out of date; write it as data
        if skip_start > position:
            yield position, view[position - offset : skip_start - offset]
        position = skip_end
    if position < end:
        yield position, view[position - offset :]
