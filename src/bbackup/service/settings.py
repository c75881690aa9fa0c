"""What the config file sets: repositories and jobs as plain frozen data, read by
`config_reader` and used by the runner, the service and the system scheduler units."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bbackup.errors import UsageError
from bbackup.service.schedule import NEVER, Schedule
from bbackup.snapshot.retention import RetentionPolicy

#: Events a notification can be sent on.
NOTIFY_EVENTS: Final = ("start", "success", "partial", "failure")
NOTIFY_STYLES: Final = ("json", "healthchecks")


@dataclass(frozen=True, slots=True)
class RepositorySettings:
    name: str
    url: str
    password_file: str | None = None
    password_command: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool | None = None
    connections: int | None = None
    #: Open it without the local cache (not a config key: a drill proves what the store
    #: holds, never the cache's copies of its trees and index).
    no_cache: bool = False


@dataclass(frozen=True, slots=True)
class HookSettings:
    before: str | None = None
    after: str | None = None
    timeout_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class NotifySettings:
    webhook: str | None = None
    on: tuple[str, ...] = ("failure", "partial")
    style: str = "json"
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class DrillSettings:
    every: str = "weekly"
    sample: str | None = None
    files: int | None = None
    compare_source: bool = False


@dataclass(frozen=True, slots=True)
class JobSettings:
    name: str
    repository: str
    sources: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    schedule: Schedule | None = None
    full_every: str = NEVER
    retention: RetentionPolicy | None = None
    prune: str = "weekly"
    prune_grace_seconds: int = 24 * 3600
    drill: DrillSettings | None = None
    hooks: HookSettings = field(default_factory=HookSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    host: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    path: Path
    repositories: dict[str, RepositorySettings]
    jobs: dict[str, JobSettings]
    metrics_file: str | None = None

    def job(self, name: str) -> JobSettings:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise UsageError(f"no job {name!r} in {self.path} (jobs: {known})")
        return self.jobs[name]

    def repository_of(self, job: JobSettings) -> RepositorySettings:
        return self.repositories[job.repository]
