"""What the runs of jobs leave on this machine, under `$XDG_STATE_HOME/bbackup/`: one JSON
report per run (`reports/JOB/STAMP.json`, the newest 100 kept), each job's state (`jobs/
JOB.json`: the last run, and when it last succeeded, pruned and drilled), and the lock
file that keeps a job from running twice at once (`locks/JOB.lock`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bbackup.errors import RepositoryLocked

#: Reports kept per job; the job state keeps what status and scheduling need for longer.
REPORTS_KEPT: Final = 100


def state_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_STATE_HOME/bbackup, else ~/.local/state/bbackup."""
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "bbackup"


class JobLocked(RepositoryLocked):
    """The job is already running."""


@dataclass(slots=True)
class StepResult:
    """One step of a run: hook, backup, forget, prune, drill."""

    name: str
    result: str  # ok, failed, skipped
    seconds: float = 0.0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunReport:
    """What one run of a job did; saved as JSON and sent to the webhook."""

    job: str
    started: datetime
    finished: datetime | None = None
    #: success, partial (some files skipped), failure, interrupted
    result: str = "running"
    exit_code: int = 0
    error: str | None = None
    backup_type: str | None = None
    snapshot_id: str | None = None
    files: int = 0
    files_new: int = 0
    files_changed: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    errors: int = 0
    forgotten: int = 0
    pruned_bytes: int | None = None
    drill: dict[str, Any] | None = None
    steps: list[StepResult] = field(default_factory=list)
    hostname: str = ""

    @property
    def duration_seconds(self) -> float:
        if self.finished is None:
            return 0.0
        return round((self.finished - self.started).total_seconds(), 3)

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started"] = self.started.isoformat()
        data["finished"] = self.finished.isoformat() if self.finished else None
        data["duration_seconds"] = self.duration_seconds
        return data


#: The JobState fields that hold a time (stored as ISO 8601 text).
_JOB_STATE_TIMES = (
    "last_started",
    "last_completed",
    "last_success",
    "last_full",
    "last_prune",
    "last_drill",
    "last_drill_ok",
)


@dataclass(slots=True)
class JobState:
    """What is remembered about a job between runs."""

    last: dict[str, Any] | None = None
    last_started: datetime | None = None
    #: When the last run that was not interrupted started: the catch-up rule counts it.
    last_completed: datetime | None = None
    last_success: datetime | None = None
    last_full: datetime | None = None
    last_prune: datetime | None = None
    last_drill: datetime | None = None
    last_drill_ok: datetime | None = None
    #: The last drill's measure of the repository proven restorable (`drill_record.Coverage`).
    drill_coverage: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"last": self.last, "drill_coverage": self.drill_coverage}
        for name in _JOB_STATE_TIMES:
            value = getattr(self, name)
            data[name] = value.isoformat() if value else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobState:
        coverage = data.get("drill_coverage")
        state = cls(
            last=data.get("last"), drill_coverage=coverage if isinstance(coverage, dict) else None
        )
        for name in _JOB_STATE_TIMES:
            if value := data.get(name):
                setattr(state, name, datetime.fromisoformat(value))
        return state


class StateDirectory:
    """Reports, job states and job locks under one directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_directory()

    def _make_root(self) -> None:
        """Create the directory private to its user: reports name paths and errors."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def job_state(self, job: str) -> JobState:
        """The job's state; an empty one if it never ran or its file is unreadable."""
        try:
            return JobState.from_dict(json.loads((self.root / "jobs" / f"{job}.json").read_text()))
        except (OSError, ValueError, TypeError, AttributeError):
            return JobState()

    def record(self, report: RunReport, state: JobState) -> Path:
        """Save the run's report and the job's new state; return the report's path."""
        self._make_root()
        reports = self.root / "reports" / report.job
        # UTC with microseconds: names sort by time and two runs never share one.
        stamp = report.started.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = reports / f"{stamp}.json"
        write_atomically(path, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        write_atomically(
            self.root / "jobs" / f"{report.job}.json",
            json.dumps(state.to_dict(), indent=2, default=str) + "\n",
        )
        for old in sorted(reports.glob("*.json"))[:-REPORTS_KEPT]:
            old.unlink(missing_ok=True)
        return path

    def reports(self, job: str) -> list[Path]:
        """The job's saved reports, oldest first."""
        return sorted((self.root / "reports" / job).glob("*.json"))

    @contextlib.asynccontextmanager
    async def job_lock(self, job: str, *, wait: bool) -> AsyncIterator[None]:
        """Hold the job's lock file for the block: JobLocked if another process (or task)
        holds it and `wait` is false. An advisory flock, so a killed run never leaves a
        stale lock behind."""
        self._make_root()
        path = self.root / "locks" / f"{job}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                if not wait:
                    raise JobLocked(
                        f"job {job} is already running ({holder or 'another process'})"
                    ) from None
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(
                fd, f"pid {os.getpid()} since {datetime.now().astimezone():%H:%M:%S}".encode(), 0
            )
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def write_atomically(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a part. The
    temporary name is predictable and the directory may be shared (a metrics file): it is
    created anew, never opened through a link or over a file someone else put there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileExistsError:
        tmp.unlink()  # left by a killed run of this process ID; someone else's: PermissionError
        fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
