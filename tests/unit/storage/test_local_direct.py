"""Packs written and read around the page cache (O_DIRECT) by the local backend, and the
switch that turns it off."""

from __future__ import annotations

import asyncio
import importlib
import mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbackup.storage import direct_io
from bbackup.storage.direct_io import READ_MAX, READ_MIN, WRITE_MIN, _write_direct
from bbackup.storage.local import LocalStorage


def mapped(data: bytes) -> memoryview:
    """`data` in an anonymous memory map, as the writer holds a pack."""
    m = mmap.mmap(-1, len(data))
    m[:] = data
    return memoryview(m)


@pytest.mark.parametrize("size", [WRITE_MIN, 3 * WRITE_MIN + 1234, WRITE_MIN + 4095])
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
    data = random.Random(7).randbytes(2 * WRITE_MIN + 10)
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
    data = random.Random(3).randbytes(WRITE_MIN * 2)
    storage = LocalStorage(tmp_path)
    asyncio.run(storage.put("data/cd/pack", memoryview(data)))
    assert (tmp_path / "data/cd/pack").read_bytes() == data


def cached(path: Path, offset: int) -> bool:
    """Whether the page at `offset` of `path` is in the page cache (asks without reading)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def evicted(path: Path, data: bytes) -> Path:
    """`path` holding `data`, on disk and no longer in the page cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if cached(path, len(data) // 2):
        pytest.skip("this file system keeps files in memory (no page cache to go around)")
    return path


def test_uncached_range_is_read_around_the_page_cache(tmp_path: Path) -> None:
    data = random.Random(11).randbytes(3 * READ_MIN * 4 + 999)
    path = evicted(tmp_path / "data/ef/pack", data)
    storage = LocalStorage(tmp_path)
    offset, length = 12_345, READ_MIN * 4 + 77  # neither on a block boundary
    assert asyncio.run(storage.get("data/ef/pack", offset, length)) == data[offset:][:length]
    # The bytes came from the disk straight into the reader: the page cache still lacks
    # the middle of the range (a buffered read would have left it, and its read-ahead, there).
    assert not cached(path, offset + length // 2)
    # A second read of the same range (as a restore of the same pack does) is as exact.
    assert asyncio.run(storage.get("data/ef/pack", offset, length)) == data[offset:][:length]


def test_uncached_read_past_the_end_returns_what_there_is(tmp_path: Path) -> None:
    # A truncated pack reads short on both paths, so the caller sees the truncation.
    data = random.Random(12).randbytes(READ_MIN * 2 + 10)
    evicted(tmp_path / "data/ef/short", data)
    storage = LocalStorage(tmp_path)
    got = asyncio.run(storage.get("data/ef/short", 5000, READ_MAX))
    assert got == data[5000:]
    assert asyncio.run(storage.get("data/ef/short", len(data) + 4096, READ_MIN)) == b""


def test_cached_range_is_read_the_ordinary_way(tmp_path: Path) -> None:
    data = random.Random(13).randbytes(READ_MIN * 3)
    path = evicted(tmp_path / "data/ef/warm", data)
    assert path.read_bytes() == data  # now cached
    storage = LocalStorage(tmp_path)
    assert asyncio.run(storage.get("data/ef/warm", 100, READ_MIN)) == data[100:][:READ_MIN]
    assert cached(path, 100 + READ_MIN // 2)


@pytest.fixture
def direct_io_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module as a process started with BBACKUP_NO_DIRECT_IO=1 has it."""
    monkeypatch.setenv("BBACKUP_NO_DIRECT_IO", "1")
    importlib.reload(direct_io)
    try:
        yield
    finally:
        monkeypatch.delenv("BBACKUP_NO_DIRECT_IO")
        importlib.reload(direct_io)


def test_with_the_switch_off_packs_go_through_the_page_cache(
    tmp_path: Path, direct_io_off: None
) -> None:
    assert not direct_io.ENABLED
    data = random.Random(14).randbytes(3 * WRITE_MIN + 1234)
    storage = LocalStorage(tmp_path)

    asyncio.run(storage.put("data/ab/pack", mapped(data)))

    path = tmp_path / "data/ab/pack"
    assert cached(path, len(data) // 2)  # written the ordinary way, through the cache
    assert path.read_bytes() == data
    evicted(path, data)
    offset, length = 12_345, READ_MIN * 4 + 77
    assert asyncio.run(storage.get("data/ab/pack", offset, length)) == data[offset:][:length]
    assert cached(path, offset + length // 2)  # read the ordinary way too
