"""Reading the parsed config document into settings, key by key: every problem is one
line `FILE:LINE: KEY: what is wrong`, unknown keys (typos) included. tomllib gives lines
only for syntax errors, so a key's line is found by a plain scan of the file's text."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bbackup.durations import parse_duration
from bbackup.service.schedule import ALWAYS, NEVER, PERIODS, parse_schedule
from bbackup.service.settings import (
    NOTIFY_EVENTS,
    NOTIFY_STYLES,
    DrillSettings,
    HookSettings,
    JobSettings,
    NotifySettings,
    RepositorySettings,
    ServiceConfig,
)
from bbackup.snapshot.retention import PERIODS as RETENTION_PERIODS
from bbackup.snapshot.retention import RetentionPolicy, parse_count

T = TypeVar("T")


_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
#: `name =`, `a.b.c =`, `"quoted name" =` at the start of a line.
_ASSIGNMENT = re.compile(rf"({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def key_line(text: str, key: tuple[str, ...]) -> int | None:
    """The line (1-based) where `key` is written, by a plain scan of the file: the line of
    its innermost `[table]` header or `name =` assignment found; None if not found."""
    header: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (how much of the key matched, line)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if m := re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", stripped):
            header = _split_key(m.group(1))
            if key[: len(header)] == header and (best is None or len(header) > best[0]):
                best = (len(header), number)
            continue
        if m := _ASSIGNMENT.match(stripped):
            full = header + _split_key(m.group(1))
            depth = 0
            while depth < min(len(full), len(key)) and full[depth] == key[depth]:
                depth += 1
            if depth == len(full) and depth > len(header) and (best is None or depth > best[0]):
                best = (depth, number)
            # An inline table on this line: its keys are on the same line.
            if (
                depth == len(full)
                and depth < len(key)
                and re.search(rf"(^|[{{,\s]){re.escape(key[depth])}\s*=", stripped[m.end() :])
            ):
                best = (len(key), number)
    return best[1] if best else None


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(
        part.strip().strip("\"'") for part in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", text)
    )


class ConfigReader:
    """Checks the parsed document; collects one problem per bad key."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.problems: list[str] = []

    def problem(self, key: tuple[str, ...], message: str) -> None:
        line = key_line(self.text, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append(f"{where}: {'.'.join(key)}: {message}")

    def table(self, data: Any, key: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.problem(key, f"must be a table, not {_kind(data)}")
            return {}
        for name in data:
            if name not in allowed:
                self.problem((*key, name), f"unknown key (known: {', '.join(allowed)})")
        return data

    def get(
        self,
        data: dict[str, Any],
        key: tuple[str, ...],
        kind: type[T] | tuple[type, ...],
        default: T,
        *,
        required: bool = False,
        check: Callable[[Any], Any] | None = None,
    ) -> Any:
        name = key[-1]
        if name not in data:
            if required:
                self.problem(key, "is required")
            return default
        value = data[name]
        # bool is an int in Python; a count written `true` is still wrong.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
            self.problem(key, f"must be {_kind_name(kind)}, not {_kind(value)} {value!r}")
            return default
        if check is not None:
            try:
                return check(value)
            except ValueError as exc:
                self.problem(key, str(exc))
                return default
        return value

    def strings(
        self, data: dict[str, Any], key: tuple[str, ...], *, required: bool = False
    ) -> tuple[str, ...]:
        value = self.get(data, key, list, [], required=required)
        if not all(isinstance(v, str) for v in value):
            self.problem(key, "must be a list of strings")
            return ()
        if required and not value and key[-1] in data:
            self.problem(key, "must not be empty")
        return tuple(value)

    def config(self, data: dict[str, Any]) -> ServiceConfig:
        self.table(data, (), ("repositories", "jobs", "metrics_file"))
        repositories: dict[str, RepositorySettings] = {}
        repos = self.get(data, ("repositories",), dict, {})
        for name, body in repos.items():
            repositories[name] = self.repository(name, body)
        jobs: dict[str, JobSettings] = {}
        job_tables = self.get(data, ("jobs",), dict, {})
        if "jobs" in data and not job_tables:
            self.problem(("jobs",), "no jobs defined")
        for name, body in job_tables.items():
            job = self.job(name, body, repositories)
            if job is not None:
                jobs[name] = job
        metrics_file = self.get(data, ("metrics_file",), str, None)
        return ServiceConfig(self.path, repositories, jobs, metrics_file)

    def repository(self, name: str, body: Any) -> RepositorySettings:
        key = ("repositories", name)
        body = self.table(
            body,
            key,
            (
                "url",
                "password_file",
                "password_command",
                "s3_endpoint",
                "s3_region",
                "s3_path_style",
                "connections",
            ),
        )
        if "password_file" in body and "password_command" in body:
            self.problem(
                (*key, "password_command"), "give password_file or password_command, not both"
            )

        def connections(value: int) -> int:
            if not 1 <= value <= 256:
                raise ValueError(f"must be from 1 to 256, not {value}")
            return value

        return RepositorySettings(
            name=name,
            url=self.get(body, (*key, "url"), str, "", required=True),
            password_file=self.get(body, (*key, "password_file"), str, None),
            password_command=self.get(body, (*key, "password_command"), str, None),
            s3_endpoint=self.get(body, (*key, "s3_endpoint"), str, None),
            s3_region=self.get(body, (*key, "s3_region"), str, None),
            s3_path_style=self.get(body, (*key, "s3_path_style"), bool, None),
            connections=self.get(body, (*key, "connections"), int, None, check=connections),
        )

    def job(
        self, name: str, body: Any, repositories: dict[str, RepositorySettings]
    ) -> JobSettings | None:
        key = ("jobs", name)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            # The name becomes a file name, a unit name and a metric label.
            self.problem(key, "a job name is letters, digits, '.', '_' and '-' only")
            return None
        body = self.table(
            body,
            key,
            (
                "repository",
                "sources",
                "exclude",
                "schedule",
                "full_every",
                "retention",
                "prune",
                "prune_grace",
                "drill",
                "hooks",
                "notify",
                "host",
                "tags",
            ),
        )
        repository = self.get(body, (*key, "repository"), str, "", required=True)
        if repository and repository not in repositories:
            known = ", ".join(sorted(repositories)) or "none defined"
            self.problem(
                (*key, "repository"),
                f"no repository {repository!r} in [repositories] (known: {known})",
            )
        periods = (NEVER, *PERIODS)

        def grace(value: str) -> int:
            return parse_duration(value).total_seconds()

        return JobSettings(
            name=name,
            repository=repository,
            sources=self.strings(body, (*key, "sources"), required=True),
            exclude=self.strings(body, (*key, "exclude")),
            schedule=self.get(body, (*key, "schedule"), str, None, check=parse_schedule),
            full_every=self.get(body, (*key, "full_every"), str, NEVER, check=_choice(periods)),
            retention=self.retention(body, (*key, "retention")),
            prune=self.get(body, (*key, "prune"), str, "weekly", check=_choice((ALWAYS, *periods))),
            prune_grace_seconds=self.get(body, (*key, "prune_grace"), str, 86400, check=grace),
            drill=self.drill(body, (*key, "drill")),
            hooks=self.hooks(body, (*key, "hooks")),
            notify=self.notify(body, (*key, "notify")),
            host=self.get(body, (*key, "host"), str, None),
            tags=self.strings(body, (*key, "tags")),
        )

    def retention(self, body: dict[str, Any], key: tuple[str, ...]) -> RetentionPolicy | None:
        if key[-1] not in body:
            return None
        counts = [f"keep_{p}" for p in ("last", *RETENTION_PERIODS)]
        windows = ["keep_within", *(f"keep_within_{p}" for p in RETENTION_PERIODS)]
        table = self.table(body[key[-1]], key, (*counts, *windows, "keep_tag"))

        def count(value: int | str) -> int:
            if isinstance(value, int) and value < 0:
                raise ValueError(f'must be 0 or more, or "unlimited", not {value}')
            return parse_count(str(value))

        values: dict[str, Any] = {}
        for name in counts:
            values[name.removeprefix("keep_")] = self.get(
                table, (*key, name), (int, str), 0, check=count
            )
        for name in windows:
            values[name.removeprefix("keep_")] = self.get(
                table, (*key, name), str, None, check=parse_duration
            )
        tags = self.strings(table, (*key, "keep_tag"))
        policy = RetentionPolicy(**values, keep_tags=tuple(tuple(t.split(",")) for t in tags))
        if policy.is_empty():
            self.problem(
                key, "keeps nothing: give keep_daily, keep_last, ... (or leave retention out)"
            )
            return None
        return policy

    def drill(self, body: dict[str, Any], key: tuple[str, ...]) -> DrillSettings | None:
        if key[-1] not in body:
            return None
        table = self.table(body[key[-1]], key, ("schedule", "sample", "files", "compare_source"))

        def sample(value: str) -> str:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)%", value.strip())
            if not m or not 0 < float(m.group(1)) <= 100:
                raise ValueError(f'{value!r} is not a percentage such as "5%"')
            return value.strip()

        return DrillSettings(
            every=self.get(
                table, (*key, "schedule"), str, "weekly", check=_choice((ALWAYS, NEVER, *PERIODS))
            ),
            sample=self.get(table, (*key, "sample"), str, None, check=sample),
            files=self.get(table, (*key, "files"), int, None, check=_positive),
            compare_source=self.get(table, (*key, "compare_source"), bool, False),
        )

    def hooks(self, body: dict[str, Any], key: tuple[str, ...]) -> HookSettings:
        if key[-1] not in body:
            return HookSettings()
        table = self.table(body[key[-1]], key, ("before", "after", "timeout"))

        def timeout(value: str) -> int:
            seconds = parse_duration(value).total_seconds()
            if seconds < 1:
                # A zero timeout would kill every hook at once and fail every run.
                raise ValueError(f"must be at least 1s, not {value!r}")
            return seconds

        return HookSettings(
            before=self.get(table, (*key, "before"), str, "") or None,
            after=self.get(table, (*key, "after"), str, "") or None,
            timeout_seconds=self.get(table, (*key, "timeout"), str, 3600, check=timeout),
        )

    def notify(self, body: dict[str, Any], key: tuple[str, ...]) -> NotifySettings:
        if key[-1] not in body:
            return NotifySettings()
        table = self.table(body[key[-1]], key, ("webhook", "on", "style", "timeout"))

        def url(value: str) -> str:
            if not re.match(r"https?://[^/\s]+", value):
                raise ValueError(f"{value!r} is not an http:// or https:// URL")
            return value.rstrip("/")

        style = self.get(table, (*key, "style"), str, "json", check=_choice(NOTIFY_STYLES))
        on = self.strings(table, (*key, "on"))
        for event in on:
            if event not in NOTIFY_EVENTS:
                self.problem((*key, "on"), f"{event!r} is not one of {', '.join(NOTIFY_EVENTS)}")
        if "on" not in table:
            # healthchecks.io wants every ping: start, then success or fail.
            on = NOTIFY_EVENTS if style == "healthchecks" else ("failure", "partial")

        def timeout(value: int | float) -> float:
            if not 0 < value <= 300:
                raise ValueError(f"must be from 0 to 300 seconds, not {value}")
            return float(value)

        return NotifySettings(
            webhook=self.get(table, (*key, "webhook"), str, None, required=True, check=url),
            on=tuple(on),
            style=style,
            timeout_seconds=self.get(table, (*key, "timeout"), (int, float), 10.0, check=timeout),
        )


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more, not {value}")
    return value


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(_kind(k()) for k in kinds))
