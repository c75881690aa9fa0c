"""`bbackup restore SNAPSHOT --target DIR`: restore a snapshot."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.progress import progress_reporter
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.errors import ExitCode
from bbackup.ops.restore import Restorer, RestoreSummary, remote_range_gap
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.snapshot.store import find_snapshot, load_snapshots


def register(app: typer.Typer) -> None:
    @repo_command(app, "restore", help="Restore a snapshot into a target directory.")
    def restore(
        opts: GlobalOptions,
        snapshot: Annotated[str, typer.Argument(help="latest or a snapshot ID prefix.")],
        target: Annotated[str, typer.Option("--target", "-t", help="Directory to restore into.")],
        include: Annotated[
            list[str] | None,
            typer.Option("--include", "-i", help="Only restore this path (repeatable)."),
        ] = None,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
        workers: Annotated[int, typer.Option(min=1, max=64, help="Decrypt/write threads.")] = 2,
        numeric_owner: Annotated[
            bool,
            typer.Option(
                "--numeric-owner",
                help="Give files their recorded uid/gid, not the ones their user and group "
                "names have on this machine (as root).",
            ),
        ] = False,
    ) -> None:
        def on_error(p: str, message: str) -> None:
            if opts.json:
                emit_json({"event": "error", "path": p, "message": message})
            else:
                warn(f"warning: {p}: {message}")

        async def work(repo: Repository) -> RestoreSummary:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, path)
            )
            profile = repo.stack.profile
            restorer = Restorer(
                repo,
                snap,
                target,
                include=include,
                workers=workers,
                connections=opts.connections or profile.default_connections,
                read_size=profile.read_size,
                max_gap=(
                    remote_range_gap(repo.config)
                    if profile.range_gap is None
                    else profile.range_gap
                ),
                on_error=on_error,
                on_warning=lambda p, message: warn(f"warning: {p}: {message}"),
                numeric_owner=numeric_owner,
            )
            start = time.monotonic()

            def sample() -> dict[str, object]:
                p = restorer.progress
                return {
                    "files": restorer.summary.files,
                    "bytes": p.bytes_written,
                    "bytes_total": p.bytes_total,
                    "seconds": time.monotonic() - start,
                }

            async with progress_reporter(sample, as_json=opts.json, label="restore"):
                summary = await restorer.run()
            summary.requests = repo.stack.counter.snapshot()
            return summary

        summary = with_repo(opts, work)
        if opts.json:
            emit_json({"event": "summary", **summary.to_dict()})
        else:
            echo(
                f"restored snapshot {summary.snapshot_id[:8]}: {summary.files} files, "
                f"{summary.dirs} directories, {human_bytes(summary.bytes)} "
                f"in {summary.duration_seconds:.1f}s"
            )
        if summary.errors:
            raise typer.Exit(ExitCode.ERROR)
