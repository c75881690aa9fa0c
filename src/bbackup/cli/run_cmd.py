"""`bbackup run JOB`: run one job of the config file now (hooks, backup, forget, prune,
drill when due, report), and what `run` and `service` share: the config option, opening a
job's repository, and printing a run's events."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from bbackup.cli.opening import open_repo, open_stack, run_async
from bbackup.cli.options import GlobalOptions
from bbackup.cli.output import emit_json, error_exit
from bbackup.cli.progress import progress_reporter
from bbackup.repository import Repository
from bbackup.service.config import RepositorySettings, load_config
from bbackup.service.run import JobRunner, RepositoryOpener, available_drill_step

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
            no_cache=False,
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


def register(app: typer.Typer) -> None:
    @app.command("run", help="Run a job of the config file now.")
    def run(
        job: Annotated[str, typer.Argument(help="The job's name in the config file.")],
        config: ConfigOpt = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="If the job is running, wait for it to end.")
        ] = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        with error_exit(as_json):
            settings = load_config(config)
            runner = JobRunner(
                settings,
                repository_opener(as_json),
                on_event=lambda e: print_event(e, as_json=as_json, quiet=quiet),
                drill_step=available_drill_step(),
            )
            start = time.monotonic()

            def sample() -> dict[str, object]:
                archiver = runner.archiver
                if archiver is None:
                    return {"job": job, "files": 0, "bytes": 0, "seconds": 0.0}
                p = archiver.progress
                return {
                    "job": job,
                    "files": p.files,
                    "bytes": p.bytes_seen,
                    "bytes_read": p.bytes_read,
                    "errors": p.errors,
                    "seconds": time.monotonic() - start,
                }

            async def main() -> int:
                if quiet:
                    return (await runner.run(job, wait=wait)).exit_code
                async with progress_reporter(sample, as_json=as_json, label=job):
                    return (await runner.run(job, wait=wait)).exit_code

            code = run_async(main())
        if code:
            raise typer.Exit(code)
