"""The options every repository command shares (flags and environment variables), and
`repo_command`, which registers a command with them and with the one error → exit code
mapping."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer

from bbackup.cli.output import error_exit, quiet_output
from bbackup.errors import UsageError
from bbackup.storage import StorageOptions


@dataclass(slots=True)
class GlobalOptions:
    """Options every repository command accepts (flags or environment variables)."""

    repo: str | None
    password_file: str | None
    password_command: str | None
    s3_endpoint: str | None
    s3_region: str | None
    s3_path_style: bool | None
    connections: int | None
    no_cache: bool
    cache_dir: str | None
    json: bool
    #: --quiet: errors and warnings only (on stderr); no progress, no report on stdout.
    quiet: bool = False
    #: Where the password comes from besides the options (`copy` opens its source so).
    password_variable: str = "BBACKUP_PASSWORD"
    password_prompt: str = "Password"
    #: --as-of TIME: read the repository as it was then, from object versions.
    as_of: str | None = None
    #: How the flags of these options begin, for messages: `--from-` for copy's source.
    flag_prefix: str = "--"

    def storage_options(self) -> StorageOptions:
        if self.s3_endpoint is not None:
            check_endpoint_url(self.s3_endpoint, f"{self.flag_prefix}s3-endpoint")
        elif (self.repo or "").startswith("s3:") and (aws := os.environ.get("AWS_ENDPOINT_URL")):
            check_endpoint_url(aws, "AWS_ENDPOINT_URL")
        return StorageOptions(
            connections=self.connections,
            s3_endpoint=self.s3_endpoint,
            s3_region=self.s3_region,
            s3_path_style=self.s3_path_style,
            as_of=parse_as_of(self.as_of),
        )


def parse_as_of(text: str | None) -> float | None:
    """`--as-of TIME` (ISO 8601; without a zone, local time) as epoch seconds."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--as-of {text!r}: use ISO 8601, e.g. 2026-12-01T00:00Z or 2026-12-01T02:00+01:00"
        ) from None
    return (value if value.tzinfo else value.astimezone()).timestamp()


def check_endpoint_url(url: str, flag: str) -> str:
    """`url` if it is an http(s) URL with a host, else a UsageError naming `flag`."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {url!r}: not an endpoint URL; use e.g. https://s3.example.com")
    return url


_COMMON_PARAMS: list[tuple[str, Any, Any]] = [
    (
        "repo",
        Annotated[
            str | None,
            typer.Option(
                "--repo", "-r", envvar="BBACKUP_REPOSITORY", help="Repository URL or path."
            ),
        ],
        None,
    ),
    (
        "password_file",
        Annotated[
            str | None,
            typer.Option(envvar="BBACKUP_PASSWORD_FILE", help="Read the password from a file."),
        ],
        None,
    ),
    (
        "password_command",
        Annotated[
            str | None,
            typer.Option(
                envvar="BBACKUP_PASSWORD_COMMAND", help="Run a command that prints the password."
            ),
        ],
        None,
    ),
    (
        "s3_endpoint",
        Annotated[
            str | None,
            typer.Option(
                envvar="BBACKUP_S3_ENDPOINT", help="S3 endpoint URL (else AWS_ENDPOINT_URL)."
            ),
        ],
        None,
    ),
    (
        "s3_region",
        Annotated[str | None, typer.Option(envvar="BBACKUP_S3_REGION", help="S3 region.")],
        None,
    ),
    (
        "s3_path_style",
        Annotated[
            bool | None,
            typer.Option(
                "--s3-path-style/--s3-virtual-host",
                help="S3 addressing style (default: path style for custom endpoints).",
            ),
        ],
        None,
    ),
    (
        "connections",
        Annotated[
            int | None,
            typer.Option(min=1, max=256, help="Concurrent storage requests (S3 16, local 4)."),
        ],
        None,
    ),
    (
        "no_cache",
        Annotated[bool, typer.Option("--no-cache", help="Do not use the local cache.")],
        False,
    ),
    (
        "cache_dir",
        Annotated[
            str | None, typer.Option(envvar="BBACKUP_CACHE_DIR", help="Local cache directory.")
        ],
        None,
    ),
    (
        "json",
        Annotated[
            bool,
            typer.Option(
                "--json", help="Machine-readable output: JSON lines (docs/json.md), progress too."
            ),
        ],
        False,
    ),
    (
        "quiet",
        Annotated[
            bool,
            typer.Option("--quiet", "-q", help="Errors and warnings only: no progress, no report."),
        ],
        False,
    ),
    (
        "as_of",
        Annotated[
            str | None,
            typer.Option(
                "--as-of",
                metavar="TIME",
                help="Read the repository as it was at TIME, from S3 object versions "
                "(read-only; docs/immutability.md).",
            ),
        ],
        None,
    ),
]


def repo_command(
    app: typer.Typer, name: str, **kwargs: Any
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `fn(opts: GlobalOptions, ...)` as a command taking the common options too,
    with bbackup errors turned into one-line messages and their exit codes."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(fn).parameters.values())[1:]
        hints = typing_hints(fn)
        common_names = [n for n, _, _ in _COMMON_PARAMS]

        @functools.wraps(fn)
        def command(**values: Any) -> None:
            opts = GlobalOptions(**{n: values.pop(n) for n in common_names})
            with error_exit(opts.json), quiet_output(opts.quiet):
                fn(opts, **values)

        params = [p.replace(annotation=hints[p.name]) for p in own] + [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for n, a, d in _COMMON_PARAMS
        ]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__
        app.command(name, **kwargs)(command)
        return fn

    return register


def typing_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(fn, include_extras=True)
