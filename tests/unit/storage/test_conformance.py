"""The storage contract: every backend (local, memory, s3) passes these same tests."""

from __future__ import annotations

import asyncio

import pytest

from bbackup.errors import NotFound
from bbackup.storage import Storage


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def names(storage: Storage, prefix: str) -> list[str]:
    return sorted([info.name async for info in storage.list(prefix)])


def test_put_then_get_returns_same_bytes(storage: Storage) -> None:
    async def go() -> bytes:
        await storage.put("data/ab/abcdef", b"hello world")
        return await storage.get("data/ab/abcdef")

    assert run(go()) == b"hello world"


def test_get_range_returns_exact_bytes(storage: Storage) -> None:
    payload = bytes(range(256)) * 40

    async def go() -> tuple[bytes, bytes, bytes]:
        await storage.put("data/00/range", payload)
        return (
            await storage.get("data/00/range", 10, 100),
            await storage.get("data/00/range", 10000),
            await storage.get("data/00/range", len(payload) - 5, 5),
        )

    middle, tail, end = run(go())
    assert middle == payload[10:110]
    assert tail == payload[10000:]
    assert end == payload[-5:]


def test_get_missing_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        run(storage.get("snapshots/missing"))


def test_stat_reports_size_and_missing(storage: Storage) -> None:
    async def go() -> int:
        await storage.put("index/one", b"x" * 1234)
        return (await storage.stat("index/one")).size

    assert run(go()) == 1234
    with pytest.raises(NotFound):
        run(storage.stat("index/absent"))


def test_list_returns_every_object_under_prefix_once(storage: Storage) -> None:
    async def go() -> tuple[list[str], list[str], list[str]]:
        for i in range(25):
            await storage.put(f"data/{i % 3:02x}/obj{i:03d}", b"x")
        await storage.put("snapshots/s1", b"s")
        await storage.put("config", b"c")
        return (
            await names(storage, "data/"),
            await names(storage, "snapshots/"),
            await names(storage, "nothing-here/"),
        )

    data, snaps, empty = run(go())
    assert len(data) == 25 and len(set(data)) == 25
    assert all(n.startswith("data/") for n in data)
    assert snaps == ["snapshots/s1"]
    assert empty == []


def test_a_listing_of_a_span_returns_the_names_between_its_bounds(storage: Storage) -> None:
    stored = ["config", "index/aa", "keys/k1", "keys/k2", "locks/l1", "snapshots/s1", "tree/t"]

    async def go() -> tuple[list[str], list[str]]:
        for name in stored:
            await storage.put(name, b"x")
        span = [i.name async for i in storage.list("", after="keys", before="locks0")]
        tail = [i.name async for i in storage.list("keys/", after="keys/k1")]
        return sorted(span), tail

    span, tail = run(go())
    assert span == ["keys/k1", "keys/k2", "locks/l1"]
    assert tail == ["keys/k2"]


def test_list_reports_sizes(storage: Storage) -> None:
    async def go() -> dict[str, int]:
        await storage.put("keys/a", b"12345")
        return {info.name: info.size async for info in storage.list("keys/")}

    assert run(go()) == {"keys/a": 5}


def test_put_overwrites_unless_if_absent(storage: Storage) -> None:
    async def go() -> tuple[bytes, bytes]:
        await storage.put("locks/l1", b"first")
        await storage.put("locks/l1", b"second")
        overwritten = await storage.get("locks/l1")
        await storage.put("locks/l1", b"third", if_absent=True)
        return overwritten, await storage.get("locks/l1")

    overwritten, kept = run(go())
    assert overwritten == b"second"
    assert kept == b"second"


def test_delete_removes_and_is_idempotent(storage: Storage) -> None:
    async def go() -> list[str]:
        await storage.put("snapshots/gone", b"x")
        await storage.delete("snapshots/gone")
        await storage.delete("snapshots/gone")
        return await names(storage, "snapshots/")

    assert run(go()) == []


def test_concurrent_puts_all_land(storage: Storage) -> None:
    async def go() -> list[str]:
        await asyncio.gather(*(storage.put(f"data/cc/p{i}", bytes([i]) * 1000) for i in range(20)))
        return await names(storage, "data/cc/")

    assert len(run(go())) == 20


def test_empty_object_round_trips(storage: Storage) -> None:
    async def go() -> bytes:
        await storage.put("index/empty", b"")
        return await storage.get("index/empty")

    assert run(go()) == b""


def test_memoryview_payload_is_stored(storage: Storage) -> None:
    async def go() -> bytes:
        buf = bytearray(b"0123456789")
        await storage.put("data/mv/x", memoryview(buf)[2:8])
        return await storage.get("data/mv/x")

    assert run(go()) == b"234567"
