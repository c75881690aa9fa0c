"""`bbackup find PATTERN...`: which snapshots hold paths matching a pattern."""

from __future__ import annotations

import stat as st
import time
from datetime import datetime
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn_event
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.errors import NothingMatched, UsageError
from bbackup.ops.find import FindResult, MtimeWindow, PathMatcher, find_paths
from bbackup.repository import Repository
from bbackup.snapshot.store import find_snapshots, load_snapshots, load_tree


def parse_mtime(text: str | None, flag: str) -> int | None:
    """An ISO 8601 date or time (local time if it has no zone) as epoch nanoseconds."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: use ISO 8601, e.g. 2026-01-31 or 2026-01-31T14:00:00"
        ) from None
    value = value if value.tzinfo else value.astimezone()
    return int(value.timestamp() * 1_000_000_000)


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "find",
        short_help="Find which snapshots hold paths matching a pattern.",
        help="Find which snapshots hold paths matching a pattern: a pattern without '/' "
        "matches names at any depth (*.pdf), one with '/' the whole path (/home/*/.ssh), "
        "as backup --exclude patterns do.\n\n"
        "Example: bbackup find '*.xlsx' --newest 2026-06-30",
    )
    def find(
        opts: GlobalOptions,
        patterns: Annotated[list[str], typer.Argument(metavar="PATTERN...", help="Glob patterns.")],
        snapshot: Annotated[
            list[str] | None,
            typer.Option("--snapshot", "-s", metavar="SNAPSHOT", help="Only this snapshot."),
        ] = None,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
        oldest: Annotated[
            str | None,
            typer.Option(metavar="TIME", help="Only entries modified at or after TIME."),
        ] = None,
        newest: Annotated[
            str | None,
            typer.Option(metavar="TIME", help="Only entries modified at or before TIME."),
        ] = None,
        ignore_case: Annotated[
            bool, typer.Option("--ignore-case", "-i", help="Match regardless of case.")
        ] = False,
        long: Annotated[bool, typer.Option("--long", "-l", help="Show metadata.")] = False,
    ) -> None:
        matchers = [PathMatcher(p, ignore_case=ignore_case) for p in patterns]
        if any(not p.strip() for p in patterns):
            raise UsageError("find: an empty pattern matches nothing")
        oldest_ns, newest_ns = parse_mtime(oldest, "--oldest"), parse_mtime(newest, "--newest")
        if oldest_ns is not None and newest_ns is not None and oldest_ns > newest_ns:
            raise UsageError(f"find: --oldest {oldest} is after --newest {newest}")
        window = MtimeWindow(oldest_ns, newest_ns)
        filters = snapshot_filter(host, tag, path)

        async def work(repo: Repository) -> FindResult:
            chosen = find_snapshots(await load_snapshots(repo), snapshot or [], filters)
            return await find_paths(
                lambda tree_id: load_tree(repo, tree_id), chosen, matchers, window
            )

        result = with_repo(opts, work)
        for found in result.found:
            s = found.snapshot
            if opts.json:
                emit_json(
                    {
                        "event": "found",
                        "snapshot": s.id,
                        "short_id": s.short_id,
                        "time": s.time.isoformat(),
                        "host": s.host,
                        "hits": len(found.matches),
                        "matches": [
                            {
                                "path": m.path,
                                "type": m.node.type,
                                "size": m.node.size,
                                "mode": m.node.mode,
                                "mtime_ns": m.node.mtime_ns,
                            }
                            for m in found.matches
                        ],
                    }
                )
                continue
            echo(
                f"Found matching entries in snapshot {s.short_id} from "
                f"{s.time.strftime('%Y-%m-%d %H:%M:%S')}"
            )
            for m in found.matches:
                if long:
                    mtime = time.strftime(
                        "%Y-%m-%d %H:%M:%S", time.localtime(m.node.mtime_ns / 1e9)
                    )
                    echo(f"{st.filemode(m.node.mode)} {m.node.size:>12} {mtime} {m.path}")
                else:
                    echo(m.path)
            echo("")
        for pattern in result.unmatched:
            warn_event(f"warning: pattern {pattern!r} matches nothing", opts.json)
        if result.unmatched:
            raise NothingMatched(
                f"{len(result.unmatched)} of {len(patterns)} patterns matched nothing"
            )
