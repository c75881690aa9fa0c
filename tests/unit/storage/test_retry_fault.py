"""RetryingStorage over FaultyStorage: transient faults are survived, other errors are not
retried, and retrying stops after the time budget."""

from __future__ import annotations

import asyncio
import time

import pytest

from bbackup.errors import AccessDenied, NotFound, Permanent, Transient
from bbackup.storage.counting import CountingStorage
from bbackup.storage.fault import FaultyStorage
from bbackup.storage.memory import MemoryStorage
from bbackup.storage.retry import RetryingStorage


def fast_retry(inner: FaultyStorage | CountingStorage, **kwargs: float) -> RetryingStorage:
    options: dict[str, float] = {
        "max_elapsed": 30.0,
        "max_attempts": 40,
        "initial_wait": 0.001,
        "max_wait": 0.005,
    }
    options.update(kwargs)
    return RetryingStorage(
        inner,
        max_elapsed=options["max_elapsed"],
        max_attempts=int(options["max_attempts"]),
        initial_wait=options["initial_wait"],
        max_wait=options["max_wait"],
    )


def test_every_put_and_get_survives_transient_faults_with_the_right_bytes() -> None:
    memory = MemoryStorage()
    faulty = FaultyStorage(
        memory, seed=7, fail_rate=0.3, truncate_rate=0.2, fail_after_put_rate=0.2, delay=0.001
    )
    storage = fast_retry(faulty)
    payloads = {f"data/{i:02x}/obj{i}": bytes([i]) * (100 + i) for i in range(60)}

    async def go() -> tuple[dict[str, bytes], dict[str, bytes], list[str]]:
        await asyncio.gather(*(storage.put(n, p, if_absent=True) for n, p in payloads.items()))
        whole = {n: await storage.get(n) for n in payloads}
        ranged = {n: await storage.get(n, 10, 20) for n in payloads}
        listed = sorted([info.name async for info in storage.list("data/")])
        return whole, ranged, listed

    whole, ranged, listed = asyncio.run(go())
    assert whole == payloads
    assert ranged == {n: p[10:30] for n, p in payloads.items()}
    assert listed == sorted(payloads)
    assert {n: data for n, (data, _, _) in memory.objects.items()} == payloads
    # The faults really happened: every kind was injected, and retried through.
    assert faulty.injected["fail"] > 10
    assert faulty.injected["truncate"] > 5
    assert faulty.injected["fail_after_put"] > 5


def test_truncated_read_raises_instead_of_returning_short_data() -> None:
    memory = MemoryStorage()
    faulty = FaultyStorage(memory, truncate_rate=1.0)

    async def go() -> bytes:
        await faulty.put("index/x", b"complete")
        return await faulty.get("index/x")

    with pytest.raises(Transient, match="truncated"):
        asyncio.run(go())


def test_only_predicate_limits_faults_to_matching_names() -> None:
    faulty = FaultyStorage(MemoryStorage(), fail_rate=1.0, only=lambda n: n.startswith("data/"))

    async def go() -> bytes:
        await faulty.put("index/ok", b"fine")
        with pytest.raises(Transient):
            await faulty.put("data/aa/x", b"never")
        return await faulty.get("index/ok")

    assert asyncio.run(go()) == b"fine"
    assert faulty.injected["fail"] == 1


def test_broken_listing_raises_instead_of_ending_early() -> None:
    memory = MemoryStorage()
    faulty = FaultyStorage(memory, seed=3, fail_rate=1.0, only=lambda n: n == "data/")

    async def go() -> list[str]:
        for i in range(20):
            await memory.put(f"data/{i:02d}", b"x")
        return [info.name async for info in faulty.list("data/")]

    with pytest.raises(Transient, match="listing"):
        asyncio.run(go())


@pytest.mark.parametrize("error", [Permanent, AccessDenied])
def test_permanent_errors_are_not_retried(error: type[Permanent]) -> None:
    faulty = FaultyStorage(MemoryStorage(), fail_rate=1.0, error=error)
    counter = CountingStorage(faulty)
    storage = fast_retry(counter)

    with pytest.raises(error):
        asyncio.run(storage.put("config", b"x"))
    assert counter.counts["PUT"] == 1


def test_not_found_is_not_retried() -> None:
    counter = CountingStorage(MemoryStorage())
    storage = fast_retry(counter)

    with pytest.raises(NotFound):
        asyncio.run(storage.get("snapshots/missing"))
    assert counter.counts["GET"] == 1


def test_retries_stop_after_max_elapsed() -> None:
    counter = CountingStorage(FaultyStorage(MemoryStorage(), fail_rate=1.0))
    storage = fast_retry(counter, max_elapsed=0.5, max_attempts=10_000, max_wait=0.05)

    started = time.monotonic()
    with pytest.raises(Transient, match="injected fault"):
        asyncio.run(storage.stat("config"))
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 2.0
    assert counter.counts["HEAD"] > 3
