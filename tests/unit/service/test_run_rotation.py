"""A job's runs under a fake clock: the rotation makes the first run of each month a full
backup and the others incremental, and the retention keeps what it says; the clock is the
runner's parameter, so the snapshots carry its times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from memory_repository import MemoryRepository

from bbackup.service.config import parse_config
from bbackup.service.run import JobRunner
from bbackup.service.state import StateDirectory
from bbackup.snapshot.store import load_snapshots

PASSWORD = "pw"


def test_the_first_run_of_each_month_is_full(
    tmp_path: Path, memory_repository: MemoryRepository
) -> None:
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
    days = ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02", "2026-04-03"]
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]

    async def scenario() -> list[str | None]:
        runner = JobRunner(
            config,
            memory_repository.open,
            state=StateDirectory(tmp_path / "state"),
            clock=lambda: clock[0],
        )
        types = []
        for day in days:
            clock[0] = datetime.fromisoformat(f"{day}T02:00:00+00:00")
            report = await runner.run("docs")
            assert report.result == "success", report
            types.append(report.backup_type)
        async with memory_repository.open() as repo:
            kept = await load_snapshots(repo)
        assert [s.time.date().isoformat() for s in kept] == days[-3:]
        return types

    assert asyncio.run(scenario()) == ["full", "incremental", "full", "incremental", "full"]
