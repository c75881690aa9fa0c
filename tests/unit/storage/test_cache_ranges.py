"""The local cache serves a tree from a tree pack it verified by reading that tree's range,
not the whole pack again; a cache file changed since it was verified is verified again
(and, damaged, fetched from the store), never served as it is."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from pathlib import Path

import pytest

from bbackup.repository import cache
from bbackup.repository.cache import CachingStorage
from bbackup.storage.memory import MemoryStorage


def pack_named(data: bytes) -> str:
    return f"tree/{hashlib.sha256(data).hexdigest()[:2]}/{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def stored(tmp_path: Path) -> tuple[CachingStorage, str, bytes]:
    """A caching storage holding one 1 MiB tree pack, in the store and in the cache."""
    data = random.Random(5).randbytes(1024 * 1024)
    name = pack_named(data)
    storage = CachingStorage(MemoryStorage(), tmp_path / "cache")
    asyncio.run(storage.put(name, data))
    return storage, name, data


def test_trees_of_a_verified_pack_are_read_by_range(
    stored: tuple[CachingStorage, str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, name, data = stored
    monkeypatch.setattr(cache, "MEMORY_BUDGET", 0)  # as when the packs outgrow memory
    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    def counting_sha256(payload: bytes = b"") -> object:
        hashed.append(len(payload))
        return real_sha256(payload)

    monkeypatch.setattr(cache.hashlib, "sha256", counting_sha256)

    pieces = [(0, 100), (5000, 70_000), (len(data) - 10, 10), (300_000, 1)]
    got = [asyncio.run(storage.get(name, offset, length)) for offset, length in pieces]

    assert got == [data[o : o + n] for o, n in pieces]
    assert hashed == [len(data)]  # verified whole once, then read by range


def test_a_cache_file_changed_after_it_was_verified_is_not_served(
    stored: tuple[CachingStorage, str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, name, data = stored
    monkeypatch.setattr(cache, "MEMORY_BUDGET", 0)
    assert asyncio.run(storage.get(name, 10, 20)) == data[10:30]
    path = storage.directory / name
    damaged = bytearray(data)
    damaged[1000:1100] = bytes(100)
    path.write_bytes(damaged)  # same size, another mtime (and content)
    os.utime(path, ns=(1, 1))

    assert asyncio.run(storage.get(name, 1000, 100)) == data[1000:1100]
    assert path.read_bytes() == data  # the damaged copy was dropped and fetched again


def test_a_cache_file_replaced_by_a_link_is_not_followed(
    stored: tuple[CachingStorage, str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage, name, data = stored
    monkeypatch.setattr(cache, "MEMORY_BUDGET", 0)
    assert asyncio.run(storage.get(name, 0, 10)) == data[:10]
    path = storage.directory / name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(bytes(len(data)))
    path.unlink()
    path.symlink_to(elsewhere)

    assert asyncio.run(storage.get(name, 0, 10)) == data[:10]
