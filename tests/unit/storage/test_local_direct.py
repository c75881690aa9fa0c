"""Packs written around the page cache (O_DIRECT) by the local backend."""

from __future__ import annotations

import asyncio
import mmap
import os
import random
from pathlib import Path

import pytest

from bbackup.storage.local import DIRECT_MIN, LocalStorage, _write_direct


def mapped(data: bytes) -> memoryview:
    """`data` in an anonymous memory map, as the writer holds a pack."""
    m = mmap.mmap(-1, len(data))
    m[:] = data
    return memoryview(m)


@pytest.mark.parametrize("size", [DIRECT_MIN, 3 * DIRECT_MIN + 1234, DIRECT_MIN + 4095])
def test_mapped_pack_round_trips_with_its_unaligned_tail(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    storage = LocalStorage(tmp_path)
    asyncio.run(storage.put("data/ab/pack", mapped(data)))
    assert (tmp_path / "data/ab/pack").read_bytes() == data
    assert asyncio.run(storage.get("data/ab/pack", size - 5000, 5000)) == data[-5000:]
    assert [p.name for p in (tmp_path / "data/ab").iterdir()] == ["pack"]  # no temp file


def test_unaligned_offset_falls_back_to_ordinary_writes(tmp_path: Path) -> None:
    # A direct write at an offset that is not a block multiple is refused (EINVAL) by
    # the kernel on most file systems; the bytes must still all arrive, in order.
    data = random.Random(7).randbytes(2 * DIRECT_MIN + 10)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x")
        rest = _write_direct(fd, mapped(data))
        while rest:
            rest = rest[os.write(fd, rest) :]
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" + data


def test_read_only_payload_is_written_the_ordinary_way(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(DIRECT_MIN * 2)
    storage = LocalStorage(tmp_path)
    asyncio.run(storage.put("data/cd/pack", memoryview(data)))
    assert (tmp_path / "data/cd/pack").read_bytes() == data
