"""Opening a repository with its index reads the snapshots ahead (listing and documents,
beside the index); any write drops what was read ahead, so a command that locks before it
decides (prune, forget) sees a snapshot stored after the open."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bbackup.repository import RepositoryConfig, init_repository, open_repository
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.store import load_snapshots, save_snapshot
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.memory import MemoryStorage

PASSWORD = "pw"


def snapshot(host: str) -> Snapshot:
    return Snapshot(time=datetime.now(UTC), host=host, paths=["/src"], tree=bytes(32))


def test_snapshots_read_ahead_answer_the_next_load_and_a_write_drops_them() -> None:
    backend = MemoryStorage()
    stack = open_storage("memory:", StorageOptions(memory_backend=backend))
    asyncio.run(init_repository(stack, PASSWORD, RepositoryConfig()))

    async def scenario() -> None:
        first = await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
        await save_snapshot(first, snapshot("one"))

        reader = await open_repository(stack, PASSWORD, use_cache=False)
        other = await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
        await save_snapshot(other, snapshot("two"))  # stored after the reader's read ahead
        assert [s.host for s in await load_snapshots(reader)] == ["one"]
        # The read ahead answers one load; the next lists again.
        assert sorted(s.host for s in await load_snapshots(reader)) == ["one", "two"]

        locker = await open_repository(stack, PASSWORD, use_cache=False)
        await save_snapshot(other, snapshot("three"))
        await locker.save_document("locks", "lock", b"a lock")  # prune: lock, then decide
        hosts = sorted(s.host for s in await load_snapshots(locker))
        assert hosts == ["one", "three", "two"]
        for repo in (first, reader, other, locker):
            await repo.stop_read_ahead()

    asyncio.run(scenario())


def test_the_read_ahead_costs_no_request_the_load_would_not_make() -> None:
    backend = MemoryStorage()
    stack = open_storage("memory:", StorageOptions(memory_backend=backend))
    asyncio.run(init_repository(stack, PASSWORD, RepositoryConfig()))

    async def scenario() -> None:
        writer = await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
        for host in ("a", "b", "c"):
            await save_snapshot(writer, snapshot(host))
        counter = stack.counter
        before = counter.snapshot()
        reader = await open_repository(stack, PASSWORD, use_cache=False)
        assert len(await load_snapshots(reader)) == 3
        after = counter.snapshot()
        # config, key listing and key file, index and damaged/ listings; the snapshots'
        # listing and three documents once each.
        assert after["LIST"] - before["LIST"] == 4
        assert after["GET"] - before["GET"] == 2 + 3

    asyncio.run(scenario())
