"""The scheduler's loop in fake time: a clock and a sleep that move time on without
waiting, and a runner that takes as long as the test says. A job that never ran runs at
once; slots passing during a long run are skipped, not queued; jobs sharing a repository
take turns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bbackup.service.config import ServiceConfig, parse_config
from bbackup.service.daemon import Scheduler
from bbackup.service.state import StateDirectory


class FakeTime:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


class FakeRunner:
    """Records when each job started; each run takes `minutes[job]` of fake time; sets
    `stop` once `runs` runs have started."""

    def __init__(self, time: FakeTime, minutes: dict[str, int], runs: int) -> None:
        self.time = time
        self.minutes = minutes
        self.runs = runs
        self.started: list[tuple[str, str]] = []
        self.stop = asyncio.Event()

    async def run(self, name: str, *, wait: bool = False) -> None:
        self.started.append((name, f"{self.time.now:%H:%M}"))
        if len(self.started) >= self.runs:
            self.stop.set()
        await asyncio.sleep(0)
        self.time.now += timedelta(minutes=self.minutes[name])


def config(tmp_path: Path, jobs: dict[str, str]) -> ServiceConfig:
    text = '[repositories.r]\nurl = "/srv/repo"\n' + "".join(
        f'\n[jobs.{name}]\nrepository = "r"\nsources = ["/srv"]\nschedule = "{schedule}"\n'
        for name, schedule in jobs.items()
    )
    return parse_config(text, tmp_path / "config.toml")


def serve(
    tmp_path: Path, jobs: dict[str, str], minutes: dict[str, int], runs: int
) -> tuple[list[tuple[str, str]], list[str]]:
    time = FakeTime(datetime(2026, 3, 10, 12, 3, tzinfo=UTC))
    settings = config(tmp_path, jobs)
    log: list[dict[str, Any]] = []

    async def scenario() -> list[tuple[str, str]]:
        runner = FakeRunner(time, minutes, runs)
        scheduler = Scheduler(
            lambda: settings,
            lambda _config: runner,  # type: ignore[arg-type,return-value]
            state=StateDirectory(tmp_path / "state"),
            clock=time.clock,
            sleep=time.sleep,
            on_event=log.append,
        )
        await scheduler.serve(runner.stop)
        return runner.started

    started = asyncio.run(scenario())
    return started, [f"{e['job']}: {e['message']}" for e in log]


def test_slots_that_pass_during_a_long_run_are_skipped(tmp_path: Path) -> None:
    started, log = serve(tmp_path, {"docs": "*/10 * * * *"}, {"docs": 25}, runs=3)
    # Never ran: at once. Then the first slot after each 25-minute run ends.
    assert started == [("docs", "12:03"), ("docs", "12:30"), ("docs", "13:00")]
    assert "docs: due now (missed or never run)" in log
    assert "docs: 2 slots from 2026-03-10T12:10+00:00 skipped: the job was still running" in log


def test_jobs_on_one_repository_take_turns(tmp_path: Path) -> None:
    minutes = {"docs": 5, "mail": 7}
    started, log = serve(tmp_path, {"docs": "0 * * * *", "mail": "0 * * * *"}, minutes, runs=4)
    # Both due at once at start, and both at 13:00: one runs, the other when it is done.
    assert started[:2] == [("docs", "12:03"), ("mail", "12:08")]
    (first, at), (second, then) = started[2:]
    assert {first, second} == {"docs", "mail"}
    assert (at, then) == ("13:00", f"13:{minutes[first]:02d}")
    assert "mail: waiting for another job on the same repository" in log
