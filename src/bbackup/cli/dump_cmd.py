"""`bbackup dump SNAPSHOT PATH`: one file's bytes, or a directory as a tar or zip stream,
on stdout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import warn_event
from bbackup.cli.snapshot_selection import HostOpt, TagOpt, snapshot_filter
from bbackup.errors import UsageError
from bbackup.ops.dump import DumpSummary, dump
from bbackup.ops.dump_archive import ARCHIVE_FORMATS
from bbackup.ops.restore import remote_range_gap
from bbackup.repository import Repository
from bbackup.snapshot.store import find_snapshot, load_snapshots


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "dump",
        help="Write a file of a snapshot to stdout, or a directory as a tar (or zip) stream.",
    )
    def dump_command(
        opts: GlobalOptions,
        snapshot: Annotated[str, typer.Argument(help="latest or a snapshot ID prefix.")],
        path: Annotated[str, typer.Argument(help="A path in the snapshot (/ for all of it).")],
        archive: Annotated[
            str | None,
            typer.Option(
                "--archive",
                "-a",
                help="tar or zip. Default: a regular file's bytes, anything else as tar.",
            ),
        ] = None,
        host: HostOpt = None,
        tag: TagOpt = None,
        snapshot_path: Annotated[
            list[str] | None, typer.Option("--path", help="Only snapshots of these paths.")
        ] = None,
        workers: Annotated[int, typer.Option(min=1, max=64, help="Decrypt threads.")] = 2,
    ) -> None:
        if archive is not None and archive not in ARCHIVE_FORMATS:
            raise UsageError(f"--archive must be one of {', '.join(ARCHIVE_FORMATS)}")
        out = sys.stdout.buffer

        async def work(repo: Repository) -> DumpSummary:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, snapshot_path)
            )
            profile = repo.stack.profile
            return await dump(
                repo,
                snap,
                path,
                out,
                archive=archive,
                connections=opts.connections or profile.default_connections,
                read_size=profile.read_size,
                max_gap=(
                    remote_range_gap(repo.config)
                    if profile.range_gap is None
                    else profile.range_gap
                ),
                workers=workers,
                archive_allowed=not out.isatty(),
                on_warning=lambda p, message: warn_event(f"warning: {p}: {message}", opts.json),
            )

        with_repo(opts, work)  # a closed pipe ends it quietly (cli.output.error_exit)
