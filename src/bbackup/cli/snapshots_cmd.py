"""`bbackup snapshots`: list the snapshots of a repository."""

from __future__ import annotations

from typing import Any

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.repository import Repository
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.store import load_snapshots


def snapshot_json(s: Snapshot) -> dict[str, Any]:
    """One snapshot as `snapshots --json` prints it (docs/json.md): restic's field names
    where the meaning is the same (`hostname`, `username`, `short_id`, `paths`, `tags`,
    `time`, `id`, `tree`, `parent`), beside bbackup's own."""
    return {
        "id": s.id,
        "short_id": s.short_id,
        "time": s.time.isoformat(),
        "tree": s.tree.hex(),
        "paths": s.paths,
        "hostname": s.host,
        "username": s.user,
        "tags": s.tags,
        "parent": s.parent,
        "program_version": s.program_version,
        "host": s.host,
        "user": s.user,
        "type": s.backup_type,
        "base": s.base,
        "original": s.original,
        "summary": s.summary,
    }


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "snapshots",
        help="List snapshots, oldest first. With --json: one JSON array of snapshot objects.",
    )
    def snapshots(
        opts: GlobalOptions, host: HostOpt = None, tag: TagOpt = None, path: PathOpt = None
    ) -> None:
        filters = snapshot_filter(host, tag, path)

        async def work(repo: Repository) -> list[Snapshot]:
            return [s for s in await load_snapshots(repo) if filters.matches(s)]

        found = with_repo(opts, work, load_index=False)
        if opts.json:
            # One array, as restic prints it, so that `jq '.[]'` works.
            emit_json([snapshot_json(s) for s in found])
            return
        echo(f"{'ID':<10} {'Time':<20} {'Host':<16} {'Type':<12} {'Tags':<16} Paths")
        for s in found:
            echo(
                f"{s.short_id:<10} {s.time.strftime('%Y-%m-%d %H:%M:%S'):<20} {s.host:<16} "
                f"{s.backup_type:<12} {','.join(s.tags):<16} {', '.join(s.paths)}"
            )
        echo(f"{len(found)} snapshots")
