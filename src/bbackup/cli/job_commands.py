"""What the job commands (`run`, `service`, `status`, `schedule`, `config`) share: the
--config, --json and --quiet options, opening a job's repository as the repository flags
would, and printing a run's events one line each."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bbackup.cli.opening import open_repo, open_stack
from bbackup.cli.options import GlobalOptions
from bbackup.cli.output import emit_json
from bbackup.repository import Repository
from bbackup.service.config import RepositorySettings

if TYPE_CHECKING:
    from bbackup.service.run import RepositoryOpener

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="BBACKUP_CONFIG",
        help="Config file (default: $XDG_CONFIG_HOME/bbackup/config.toml).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]


def repository_opener(as_json: bool) -> RepositoryOpener:
    """Opens a job's repository as `--repo` and the password options would: the config's
    settings take the place of the flags, the environment fills the gaps."""

    @contextlib.asynccontextmanager
    async def open_repository(settings: RepositorySettings) -> AsyncIterator[Repository]:
        opts = GlobalOptions(
            repo=settings.url,
            password_file=settings.password_file,
            password_command=settings.password_command,
            s3_endpoint=settings.s3_endpoint or os.environ.get("BBACKUP_S3_ENDPOINT"),
            s3_region=settings.s3_region or os.environ.get("BBACKUP_S3_REGION"),
            s3_path_style=settings.s3_path_style,
            connections=settings.connections,
            no_cache=settings.no_cache,
            cache_dir=os.environ.get("BBACKUP_CACHE_DIR"),
            json=as_json,
        )
        stack = open_stack(opts)
        try:
            # The archiver loads the index itself, under its lock.
            yield await open_repo(opts, stack, load_index=False)
        finally:
            await stack.storage.aclose()

    return open_repository


def print_event(event: dict[str, Any], *, as_json: bool, quiet: bool) -> None:
    """One line per event: JSON on stdout with --json; else errors and warnings on stderr,
    the rest on stdout (nothing but errors with --quiet)."""
    if as_json:
        emit_json(event)
        return
    failed = event.get("level") == "error" or event.get("result") == "failed"
    problem = failed or event["event"] in ("error", "warning")
    if quiet and not failed and event["event"] != "error":
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    line = f"{stamp} {event['job']}: {event['message']}"
    print(line, file=sys.stderr if problem else sys.stdout, flush=True)
