"""A job's runs under a fake clock: the rotation makes the first run of each month a full
backup and the others incremental, and the retention keeps what it says; the clock is the
runner's parameter, so the snapshots carry its times."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from bbackup.repository import Repository, RepositoryConfig, init_repository, open_repository
from bbackup.service.config import RepositorySettings, parse_config
from bbackup.service.run import JobRunner
from bbackup.service.state import StateDirectory
from bbackup.snapshot.store import load_snapshots
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.memory import MemoryStorage

PASSWORD = "pw"


def test_the_first_run_of_each_month_is_full(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("alpha\n")
    config = parse_config(
        f"""
[repositories.mem]
url = "memory:"

[jobs.docs]
repository = "mem"
sources = ["{source}"]
schedule = "daily 02:00"
full_every = "monthly"
retention = {{ keep_last = 3 }}
prune = "never"
""",
        tmp_path / "config.toml",
    )
    backend = MemoryStorage()
    days = ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02", "2026-04-03"]
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]

    @contextlib.asynccontextmanager
    async def open_memory(settings: RepositorySettings) -> AsyncIterator[Repository]:
        stack = open_storage(settings.url, StorageOptions(memory_backend=backend))
        try:
            yield await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
        finally:
            await stack.storage.aclose()

    async def scenario() -> list[str | None]:
        stack = open_storage("memory:", StorageOptions(memory_backend=backend))
        await init_repository(stack, PASSWORD, RepositoryConfig())
        runner = JobRunner(
            config, open_memory, state=StateDirectory(tmp_path / "state"), clock=lambda: clock[0]
        )
        types = []
        for day in days:
            clock[0] = datetime.fromisoformat(f"{day}T02:00:00+00:00")
            report = await runner.run("docs")
            assert report.result == "success", report
            types.append(report.backup_type)
        async with open_memory(config.repositories["mem"]) as repo:
            kept = await load_snapshots(repo)
        assert [s.time.date().isoformat() for s in kept] == days[-3:]
        return types

    assert asyncio.run(scenario()) == ["full", "incremental", "full", "incremental", "full"]
