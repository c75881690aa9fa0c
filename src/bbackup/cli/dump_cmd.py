"""`bbackup dump SNAPSHOT PATH`: one file's bytes, or a directory as a tar or zip stream,
on stdout."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Collection
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import warn_event
from bbackup.cli.snapshot_selection import HostOpt, TagOpt, snapshot_filter
from bbackup.cli.thawing import DaysOpt, NoWaitOpt, TierOpt, thaw_before_reading, thaw_options
from bbackup.errors import UsageError
from bbackup.ops.dump import DumpSummary, dump
from bbackup.ops.dump_archive import ARCHIVE_FORMATS
from bbackup.ops.restore_reads import pack_read_settings
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
        restore_tier: TierOpt = "bulk",
        restore_days: DaysOpt = 3,
        no_wait: NoWaitOpt = False,
    ) -> None:
        thaw = thaw_options(restore_tier, restore_days, no_wait)
        if archive is not None and archive not in ARCHIVE_FORMATS:
            raise UsageError(f"--archive must be one of {', '.join(ARCHIVE_FORMATS)}")
        out = sys.stdout.buffer

        async def thaw_first(repo: Repository, names: Collection[str]) -> None:
            # stdout carries the dump: the estimate and the wait's lines go to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                await thaw_before_reading(repo, names, thaw, as_json=opts.json)

        async def work(repo: Repository) -> DumpSummary:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, snapshot_path)
            )
            reads = pack_read_settings(repo, opts.connections)
            return await dump(
                repo,
                snap,
                path,
                out,
                archive=archive,
                connections=reads.connections,
                read_size=reads.read_size,
                max_gap=reads.max_gap,
                workers=workers,
                archive_allowed=not out.isatty(),
                on_warning=lambda p, message: warn_event(f"warning: {p}: {message}", opts.json),
                before_reads=lambda names: thaw_first(repo, names),
            )

        with_repo(opts, work)  # a closed pipe ends it quietly (cli.output.error_exit)
