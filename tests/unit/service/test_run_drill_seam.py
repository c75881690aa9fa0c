"""The drill seam: a run calls the drill step when the job's drill is due, records its
report, and fails with the integrity code when the drill fails; without a drill step (a
build without `bbackup drill`) the step is left out of the run."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from memory_repository import MemoryRepository

from bbackup.errors import ExitCode
from bbackup.repository import Repository
from bbackup.service.config import DrillSettings, JobSettings, ServiceConfig, parse_config
from bbackup.service.run import JobRunner
from bbackup.service.state import RunReport, StateDirectory


def job_config(tmp_path: Path) -> ServiceConfig:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("alpha\n")
    return parse_config(
        f'metrics_file = "{tmp_path / "bbackup.prom"}"\n\n'
        '[repositories.mem]\nurl = "memory:"\n\n[jobs.docs]\nrepository = "mem"\n'
        f'sources = ["{source}"]\ndrill = {{ schedule = "weekly", sample = "5%" }}\n',
        tmp_path / "config.toml",
    )


def test_a_due_drill_runs_its_verdict_is_recorded_and_a_failure_fails_the_run(
    tmp_path: Path, memory_repository: MemoryRepository
) -> None:
    config = job_config(tmp_path)
    calls: list[tuple[str | None, str | None]] = []
    verdicts = [
        {"ok": True, "message": "12 files restored and verified"},
        {"ok": False, "message": "a.txt: restored bytes differ", "files_failed": ["a.txt"]},
    ]

    async def drill_for_job(
        repo: Repository, job: JobSettings, settings: DrillSettings, snapshot_id: str | None
    ) -> dict[str, Any]:
        calls.append((snapshot_id, settings.sample))
        return verdicts[len(calls) - 1]

    now = [datetime.fromisoformat("2026-03-09T02:00:00+00:00")]  # a Monday
    runner = JobRunner(
        config,
        memory_repository.open,
        state=StateDirectory(tmp_path / "state"),
        clock=lambda: now[0],
        drill_step=drill_for_job,
    )

    def run_on(day: str) -> RunReport:
        now[0] = datetime.fromisoformat(f"{day}T02:00:00+00:00")
        return asyncio.run(runner.run("docs"))

    first = run_on("2026-03-09")
    assert first.result == "success" and first.drill == verdicts[0]
    assert calls == [(first.snapshot_id, "5%")]  # the run's new snapshot is drilled
    assert [s.name for s in first.steps] == ["backup", "drill"]
    assert run_on("2026-03-12").step("drill") is None  # not due again this week
    failed = run_on("2026-03-16")
    assert (failed.result, failed.exit_code) == ("failure", ExitCode.INTEGRITY)
    assert failed.error == "restore drill failed: a.txt: restored bytes differ"
    state = runner.state.job_state("docs")
    assert state.last_drill_ok == first.started and state.last_drill == failed.started
    metrics = (tmp_path / "bbackup.prom").read_text()
    assert 'bbackup_last_drill_success{job="docs"} 0' in metrics


def test_without_a_drill_step_the_drill_is_left_out(
    tmp_path: Path, memory_repository: MemoryRepository
) -> None:
    runner = JobRunner(
        job_config(tmp_path), memory_repository.open, state=StateDirectory(tmp_path / "state")
    )
    report = asyncio.run(runner.run("docs"))
    assert report.result == "success"
    assert [s.name for s in report.steps] == ["backup"] and report.drill is None
