"""Prune's repack, run in-process on a repository in memory: the copies are written the way
a backup writes blobs, the emptied packs go, and what a snapshot uses still reads back."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from bbackup.crypto.aead import BlobType
from bbackup.ops.check import check_repository
from bbackup.ops.prune import prune
from bbackup.ops.prune_input import PruneOptions
from bbackup.repository import Repository, RepositoryConfig, init_repository, open_repository
from bbackup.snapshot.model import FILE, Node, Snapshot, Tree
from bbackup.snapshot.store import delete_snapshot, load_snapshots, save_snapshot, save_tree
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.memory import MemoryStorage

MiB = 1024 * 1024
PASSWORD = "pw"


async def open_memory_repo(backend: MemoryStorage) -> Repository:
    stack = open_storage("memory:", StorageOptions(memory_backend=backend))
    return await open_repository(stack, PASSWORD, use_cache=False)


async def back_up(repo: Repository, files: dict[str, bytes], day: int) -> tuple[str, list[bytes]]:
    """Store one snapshot of `files` (one blob each); return its ID and the blob IDs."""
    writer = repo.new_writer()
    nodes, blob_ids = [], []
    for name, data in files.items():
        blob = writer.prepare(BlobType.DATA, data)
        await writer.add(blob)
        blob_ids.append(blob.blob_id)
        nodes.append(Node(name.encode(), FILE, size=len(data), content=[blob.blob_id]))
    tree_id = await save_tree(writer, Tree(nodes))
    await writer.flush()
    snapshot = Snapshot(datetime(2026, 1, day, tzinfo=UTC), "host", ["/src"], tree_id)
    return await save_snapshot(repo, snapshot), blob_ids


async def data_packs(backend: MemoryStorage) -> dict[str, int]:
    return {info.name: info.size async for info in backend.list("data/")}


def test_prune_repacks_a_half_used_pack_and_the_used_blob_still_reads_back() -> None:
    kept, dropped = os.urandom(MiB), os.urandom(MiB)

    async def scenario() -> None:
        backend = MemoryStorage()
        stack = open_storage("memory:", StorageOptions(memory_backend=backend))
        await init_repository(stack, PASSWORD, RepositoryConfig(pack_size=4 * MiB))
        repo = await open_memory_repo(backend)
        # Both files in one data pack; the second snapshot uses only the first file.
        _, (kept_id, dropped_id) = await back_up(repo, {"kept": kept, "dropped": dropped}, 1)
        await back_up(repo, {"kept": kept}, 2)
        [old_pack] = (await data_packs(backend)).items()
        await delete_snapshot(repo, (await load_snapshots(repo))[0])

        report = await prune(repo, PruneOptions(grace_seconds=0, max_unused=0.0))

        assert report.packs["repack"]["packs"] >= 1
        assert report.bytes_repacked_written > 0
        [new_pack] = (await data_packs(backend)).items()
        assert new_pack[0] != old_pack[0]
        assert new_pack[1] < old_pack[1] * 0.6  # only the used blob was copied
        fresh = await open_memory_repo(backend)
        assert await fresh.load_blob(kept_id) == kept
        assert not fresh.index.has(dropped_id)
        checked = await check_repository(fresh)
        assert checked.ok, checked.errors
        assert checked.warnings == []  # no pack is left outside the index
        assert [s.tree for s in await load_snapshots(fresh)] == [
            s.tree for s in await load_snapshots(repo)
        ]
        await repo.aclose()
        await fresh.aclose()

    asyncio.run(scenario())


def test_the_document_store_never_deletes_a_pack() -> None:
    async def scenario() -> None:
        backend = MemoryStorage()
        stack = open_storage("memory:", StorageOptions(memory_backend=backend))
        await init_repository(stack, PASSWORD, RepositoryConfig(pack_size=4 * MiB))
        repo = await open_memory_repo(backend)
        await back_up(repo, {"file": os.urandom(1000)}, 1)
        [pack] = await data_packs(backend)

        with pytest.raises(ValueError, match="not a deletable document"):
            await repo.delete_document(pack)
        with pytest.raises(ValueError, match="not a pack"):
            await repo.delete_pack("snapshots/" + "00" * 32)

        assert list(await data_packs(backend)) == [pack]
        await repo.aclose()

    asyncio.run(scenario())
