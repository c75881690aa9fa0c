"""One run of a job, as `bbackup run JOB` and the service do it: the `before` hook, the
backup (its type by rotation), forget (the job's retention), prune and a restore drill when
they are due, the `after` hook, then the report, the job's state, the metrics file and the
notifications. One run per job at a time (the job's lock file); steps call the ops layer
directly."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bbackup.errors import BbackupError, ExitCode
from bbackup.ops.backup import Archiver, BackupOptions, normalize_paths
from bbackup.ops.forget import apply_forget, plan_forget
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.service.config import (
    JobSettings,
    RepositorySettings,
    ServiceConfig,
)
from bbackup.service.drill_seam import DrillStep
from bbackup.service.hooks import HookResult, run_hook
from bbackup.service.metrics import write_metrics
from bbackup.service.notify import send_notification
from bbackup.service.schedule import backup_type_for, local_now, period_due
from bbackup.service.state import JobState, RunReport, StateDirectory, StepResult
from bbackup.snapshot.store import SnapshotFilter, load_snapshots

T = TypeVar("T")

#: Opens the repository a job names (password, storage stack, cache) for the block.
RepositoryOpener = Callable[[RepositorySettings], AbstractAsyncContextManager[Repository]]
#: Receives each event of a run as a dict with "event", "job" and a one-line "message".
EventSink = Callable[[dict[str, Any]], None]


class StepFailed(Exception):
    """A step failed; the run stops and reports it with this exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class JobRunner:
    """Runs jobs of one configuration; the service keeps one for all its runs."""

    def __init__(
        self,
        config: ServiceConfig,
        open_repository: RepositoryOpener,
        *,
        state: StateDirectory | None = None,
        clock: Callable[[], datetime] = local_now,
        on_event: EventSink | None = None,
        drill_step: DrillStep | None = None,
    ) -> None:
        self.config = config
        self.open_repository = open_repository
        self.state = state or StateDirectory()
        self.clock = clock
        self.on_event = on_event or (lambda _event: None)
        self.drill_step = drill_step
        #: The backup in progress, for `run`'s progress display (the service, which runs
        #: jobs side by side, does not read it).
        self.archiver: Archiver | None = None

    async def run(self, name: str, *, wait: bool = False) -> RunReport:
        """Run job `name` now; JobLocked if it is running already and `wait` is false."""
        job = self.config.job(name)
        async with self.state.job_lock(name, wait=wait):
            return await self._run_locked(job)

    # --- the run --------------------------------------------------------------------

    async def _run_locked(self, job: JobSettings) -> RunReport:
        state = self.state.job_state(job.name)
        report = RunReport(
            job=job.name, started=self.clock(), hostname=job.host or socket.gethostname()
        )
        state.last_started = report.started
        self._event(job, "start", "run started")
        await self._notify(job, "start", report)
        try:
            await self._steps(job, state, report)
        except asyncio.CancelledError:
            # Stopped (SIGTERM): what the backup uploaded is adopted by the next one.
            report.result, report.exit_code = "interrupted", ExitCode.INTERRUPTED
            report.error = "stopped before the run finished"
            self._record(job, state, report)
            raise
        self._record(job, state, report)
        await self._notify(job, report.result, report)
        return report

    async def _steps(self, job: JobSettings, state: JobState, report: RunReport) -> None:
        try:
            if job.hooks.before:
                hook = await self._hook(job, "before", job.hooks.before, report)
                if not hook.ok:
                    report.steps.append(
                        StepResult("backup", "skipped", message="the before hook failed")
                    )
                    raise StepFailed(
                        f"before hook failed ({hook.describe()}): backup skipped", ExitCode.ERROR
                    )
            async with self.open_repository(self.config.repository_of(job)) as repo:
                await self._step(report, "backup", self._backup(repo, job, state, report))
                if job.retention is not None:
                    await self._step(report, "forget", self._forget(repo, job, report))
                    if period_due(job.prune, state.last_prune, report.started):
                        await self._step(report, "prune", self._prune(repo, job, state, report))
                if (
                    job.drill is not None
                    and self.drill_step is not None
                    and period_due(job.drill.every, state.last_drill, report.started)
                ):
                    await self._step(report, "drill", self._drill(job, state, report))
            report.result = "partial" if report.errors else "success"
            report.exit_code = ExitCode.PARTIAL if report.errors else ExitCode.OK
        except StepFailed as exc:
            report.result, report.exit_code, report.error = "failure", exc.exit_code, str(exc)
        except BbackupError as exc:  # opening the repository
            report.result, report.exit_code = "failure", exc.exit_code
            report.error = f"repository {job.repository}: {exc.message}"
        except Exception as exc:
            # An OSError opening a local repository, a hook that cannot start, or a bug:
            # reported like any failure, so that a daemon keeps serving the other jobs.
            report.result, report.exit_code = "failure", ExitCode.ERROR
            report.error = f"{type(exc).__name__}: {exc}"
        if job.hooks.after:
            hook = await self._hook(job, "after", job.hooks.after, report)
            if not hook.ok and report.result != "failure":
                report.result, report.exit_code = "failure", ExitCode.ERROR
                report.error = f"after hook failed ({hook.describe()})"

    async def _step(self, report: RunReport, name: str, work: Coroutine[Any, Any, str]) -> None:
        """Run one step, recording how it went; StepFailed if it failed."""
        started = time.monotonic()
        self._event_for(report.job, "step", f"{name} started", step=name, result="started")
        try:
            message = await work
        except StepFailed as exc:
            self._step_done(report, StepResult(name, "failed", message=str(exc)), started)
            raise
        except BbackupError as exc:
            self._step_done(report, StepResult(name, "failed", message=exc.message), started)
            raise StepFailed(f"{name} failed: {exc.message}", exc.exit_code) from exc
        except OSError as exc:
            text = f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
            self._step_done(report, StepResult(name, "failed", message=text), started)
            raise StepFailed(f"{name} failed: {text}", ExitCode.ERROR) from exc
        except Exception as exc:
            # A daemon outlives a bug in one step: report it, keep serving the other jobs.
            text = f"internal error: {type(exc).__name__}: {exc}"
            self._step_done(report, StepResult(name, "failed", message=text), started)
            raise StepFailed(f"{name} failed: {text}", ExitCode.ERROR) from exc
        self._step_done(report, StepResult(name, "ok", message=message), started)

    def _step_done(self, report: RunReport, step: StepResult, started: float) -> None:
        step.seconds = round(time.monotonic() - started, 3)
        report.steps.append(step)
        line = f"{step.name} {step.result}" + (f": {step.message}" if step.message else "")
        self._event_for(
            report.job, "step", line, step=step.name, result=step.result, seconds=step.seconds
        )

    async def _hook(
        self, job: JobSettings, which: str, command: str, report: RunReport
    ) -> HookResult:
        started = time.monotonic()
        env = {"BBACKUP_JOB": job.name, "BBACKUP_HOOK": which}
        if which == "after":
            env["BBACKUP_RESULT"] = report.result
            env["BBACKUP_SNAPSHOT"] = report.snapshot_id or ""
        self._event(job, "step", f"{which} hook started", step=f"{which} hook", result="started")
        hook = await run_hook(command, env=env, timeout_seconds=job.hooks.timeout_seconds)
        step = StepResult(
            f"{which} hook",
            "ok" if hook.ok else "failed",
            message="" if hook.ok else hook.describe(),
            details={"exit_code": hook.exit_code, "output": hook.output},
        )
        self._step_done(report, step, started)
        return hook

    async def _backup(
        self, repo: Repository, job: JobSettings, state: JobState, report: RunReport
    ) -> str:
        paths = normalize_paths(job.sources)
        snapshots = await load_snapshots(repo)
        fulls = [
            s.time
            for s in snapshots
            if s.backup_type == "full" and s.host == report.hostname and sorted(s.paths) == paths
        ]
        last_full = max([*fulls, *([state.last_full] if state.last_full else [])], default=None)
        backup_type = backup_type_for(job.full_every, last_full, report.started)
        options = BackupOptions(
            paths=paths,
            host=report.hostname,
            tags=job.tags,
            excludes=job.exclude,
            backup_type=backup_type,
            # The snapshot's time is the run's: the rotation and retention count runs.
            time=report.started,
            upload_slots=repo.stack.profile.upload_slots,
        )
        self.archiver = Archiver(
            repo,
            options,
            on_error=lambda path, message: self._event(
                job, "error", f"{path}: {message}", path=path
            ),
            on_warning=lambda line: self._event(job, "warning", line),
        )
        report.backup_type = backup_type
        try:
            await self.archiver.run()
        finally:
            summary = self.archiver.summary
            self.archiver = None
        report.snapshot_id = summary.snapshot_id
        report.files, report.files_new = summary.total_files, summary.files_new
        report.files_changed, report.errors = summary.files_changed, summary.errors
        report.bytes_read, report.bytes_added = summary.bytes_read, summary.bytes_added
        report.bytes_stored = summary.bytes_stored
        if backup_type == "full":
            state.last_full = report.started
        errors = f", {summary.errors} files skipped" if summary.errors else ""
        files = f"{summary.total_files} file{'' if summary.total_files == 1 else 's'}"
        return (
            f"{backup_type} snapshot {summary.snapshot_id[:8]}: {files}, "
            f"{human_bytes(summary.bytes_added)} added{errors}"
        )

    async def _forget(self, repo: Repository, job: JobSettings, report: RunReport) -> str:
        assert job.retention is not None
        paths = tuple(normalize_paths(job.sources))
        groups = await plan_forget(
            repo,
            job.retention,
            group_by=("host", "paths"),
            filters=SnapshotFilter(hosts=(report.hostname,), paths=paths),
        )
        report.forgotten = await apply_forget(repo, groups)
        return f"{report.forgotten} snapshots removed ({job.retention})"

    async def _prune(
        self, repo: Repository, job: JobSettings, state: JobState, report: RunReport
    ) -> str:
        # Imported here: prune's code is loaded only by runs that prune.
        from bbackup.ops.prune import prune
        from bbackup.ops.prune_input import PruneOptions

        await repo.load_index()
        connections = self.config.repository_of(job).connections or 4
        options = PruneOptions(grace_seconds=job.prune_grace_seconds, connections=connections)
        result = await prune(repo, options)
        report.pruned_bytes = result.bytes_reclaimed
        state.last_prune = report.started
        return f"{human_bytes(result.bytes_reclaimed)} reclaimed"

    async def _drill(self, job: JobSettings, state: JobState, report: RunReport) -> str:
        assert self.drill_step is not None and job.drill is not None
        # The drill reads the store through a repository of its own without the local
        # cache, as `bbackup drill` does: a warm cache must not prove what the store lost.
        settings = dataclasses.replace(self.config.repository_of(job), no_cache=True)
        async with self.open_repository(settings) as uncached:
            await uncached.load_index()
            result = await self.drill_step(uncached, job, job.drill, report.snapshot_id)
        report.drill = result
        state.last_drill = self.clock()
        state.drill_coverage = result.get("coverage") or state.drill_coverage
        if not result.get("ok"):
            raise StepFailed(
                f"restore drill failed: {result.get('message', '')}", ExitCode.INTEGRITY
            )
        state.last_drill_ok = state.last_drill
        return str(result.get("message", "passed"))

    # --- after the run --------------------------------------------------------------

    def _record(self, job: JobSettings, state: JobState, report: RunReport) -> None:
        report.finished = self.clock()
        if report.result == "success":
            state.last_success = report.started
        if report.result != "interrupted":
            # An interrupted run is caught up at the next start, as if it never began.
            state.last_completed = report.started
        state.last = {k: v for k, v in report.to_dict().items() if k != "steps"}
        path = self.state.record(report, state)
        level = "error" if report.result in ("failure", "interrupted") else "info"
        self._event(
            job,
            "finish",
            f"{report.result} in {report.duration_seconds:.1f}s"
            + (f": {report.error}" if report.error else ""),
            result=report.result,
            exit_code=report.exit_code,
            report=str(path),
            level=level,
        )
        if self.config.metrics_file:
            try:
                write_metrics(
                    Path(self.config.metrics_file),
                    {name: self.state.job_state(name) for name in self.config.jobs},
                )
            except OSError as exc:
                self._event(job, "warning", f"cannot write the metrics file: {exc}")

    async def _notify(self, job: JobSettings, event: str, report: RunReport) -> None:
        await send_notification(
            job.notify,
            event,
            report.to_dict(),
            log=lambda line: self._event(job, "warning", line),
        )

    def _event(self, job: JobSettings, event: str, message: str, **fields: Any) -> None:
        self._event_for(job.name, event, message, **fields)

    def _event_for(self, job: str, event: str, message: str, **fields: Any) -> None:
        self.on_event({"event": event, "job": job, "message": message, **fields})
