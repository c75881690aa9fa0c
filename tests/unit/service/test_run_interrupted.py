"""A run stopped in the middle of its backup (the service's SIGTERM cancels it): the
repository keeps no lock of it, the report says interrupted, and the next run succeeds,
reusing the packs the stopped one uploaded."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from bbackup.chunking import MiB
from bbackup.repository import Repository, RepositoryConfig, init_repository, open_repository
from bbackup.service.config import RepositorySettings, parse_config
from bbackup.service.run import JobRunner
from bbackup.service.state import StateDirectory
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.base import Storage
from bbackup.storage.fault import FaultyStorage
from bbackup.storage.memory import MemoryStorage

PASSWORD = "pw"


def test_a_backup_cancelled_mid_upload_leaves_no_lock_and_the_next_run_reuses_its_packs(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for n in range(4):
        (source / f"{n}.bin").write_bytes(os.urandom(3 * MiB))
    config = parse_config(
        f'[repositories.mem]\nurl = "memory:"\n\n[jobs.docs]\nrepository = "mem"\n'
        f'sources = ["{source}"]\n',
        tmp_path / "config.toml",
    )
    backend = MemoryStorage()
    slow = [True]

    def slow_data_puts(inner: Storage) -> Storage:
        # Data pack uploads take a while, so the run is stopped with some of them done.
        return FaultyStorage(
            inner, delay=0.2 if slow[0] else 0.0, only=lambda n: n.startswith("data/")
        )

    @contextlib.asynccontextmanager
    async def open_memory(settings: RepositorySettings) -> AsyncIterator[Repository]:
        options = StorageOptions(memory_backend=backend, wrap_backend=slow_data_puts)
        stack = open_storage(settings.url, options)
        try:
            yield await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
        finally:
            await stack.storage.aclose()

    async def scenario() -> None:
        stack = open_storage("memory:", StorageOptions(memory_backend=backend))
        await init_repository(stack, PASSWORD, RepositoryConfig(pack_size=4 * MiB))
        runner = JobRunner(config, open_memory, state=StateDirectory(tmp_path / "state"))
        task = asyncio.create_task(runner.run("docs"))
        for _ in range(1000):  # until the first data pack is stored (at most 10 s)
            if any(name.startswith("data/") for name in backend.objects):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not [n for n in backend.objects if n.startswith(("locks/", "snapshots/"))]
        state = runner.state.job_state("docs")
        assert state.last is not None and state.last["result"] == "interrupted"
        assert state.last_completed is None  # the service catches it up at its next start

        slow[0] = False
        report = await runner.run("docs")
        assert report.result == "success"
        assert report.bytes_added < 12 * MiB  # what the stopped run uploaded was reused

    asyncio.run(scenario())
