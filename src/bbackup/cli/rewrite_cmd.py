"""`bbackup rewrite SNAP... --exclude PATTERN`: remove files from existing snapshots."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

import typer

from bbackup.cli.exclude_patterns import read_exclude_patterns
from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn_event
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.errors import NothingMatched, UsageError
from bbackup.ops.rewrite import RewriteReport, rewrite_snapshots
from bbackup.repository import Repository


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "rewrite",
        short_help="Remove files from existing snapshots.",
        help="Remove files from existing snapshots (a secret backed up by mistake): each "
        "snapshot with a matching entry is stored anew without it, tagged 'rewrite'. "
        "Patterns are backup's --exclude patterns. With --forget the originals are removed; "
        "run prune afterwards to delete the content from the repository.\n\n"
        "Example: bbackup rewrite --exclude /srv/app/.env --forget && bbackup prune",
    )
    def rewrite(
        opts: GlobalOptions,
        snapshots: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="[SNAPSHOT]...",
                help="latest or ID prefixes (default: every snapshot the filters select).",
            ),
        ] = None,
        exclude: Annotated[
            list[str] | None,
            typer.Option("--exclude", "-e", metavar="PATTERN", help="Remove matching entries."),
        ] = None,
        exclude_file: Annotated[
            list[str] | None,
            typer.Option(metavar="FILE", help="Read exclude patterns from a file."),
        ] = None,
        forget: Annotated[
            bool, typer.Option("--forget", help="Remove each original once rewritten.")
        ] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Only show what would be removed.")
        ] = False,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
    ) -> None:
        patterns = read_exclude_patterns(exclude, exclude_file)
        if not patterns:
            raise UsageError("rewrite: give --exclude or --exclude-file")
        filters = snapshot_filter(host, tag, path)

        def work(repo: Repository) -> Awaitable[RewriteReport]:
            return rewrite_snapshots(
                repo, snapshots or [], filters, patterns, forget=forget, dry_run=dry_run
            )

        report = with_repo(opts, work, load_index=False)
        if opts.json:
            emit_json(
                {
                    "event": "rewrite",
                    "dry_run": report.dry_run,
                    "rewritten": [
                        {"original": r.original, "new": r.new, "removed": r.removed}
                        for r in report.rewritten
                    ],
                    "unchanged": report.unchanged,
                    "emptied": report.emptied,
                    "forgotten": report.forgotten,
                }
            )
        else:
            for r in report.rewritten:
                target = "would be rewritten" if dry_run else f"rewritten as {r.new[:8]}"
                echo(f"snapshot {r.original[:8]} {target}, removing:")
                for removed in r.removed:
                    echo(f"  {removed}")
            for emptied in report.emptied:
                fate = "removed" if emptied in report.forgotten else "kept (--forget removes it)"
                echo(f"snapshot {emptied[:8]} would hold nothing: no new snapshot; {fate}")
            verb = "would rewrite" if dry_run else "rewrote"
            echo(
                f"{verb} {len(report.rewritten)} snapshots, {len(report.unchanged)} unchanged"
                + (f", forgot {len(report.forgotten)}" if report.forgotten else "")
            )
            if report.forgotten:
                echo("run `bbackup prune` to delete the removed content from the repository")
        if not (report.rewritten or report.emptied):
            warn_event("warning: no pattern matched anything; nothing was rewritten", opts.json)
            raise NothingMatched("rewrite: no entry matched the patterns")
