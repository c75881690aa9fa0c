"""`bbackup restore SNAPSHOT --target DIR`: restore a snapshot."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from bbackup.cli.common import (
    M_TRIM_THRESHOLD,
    GlobalOptions,
    echo,
    emit_json,
    human_bytes,
    repo_command,
    set_malloc_option,
    warn,
    with_repo,
)
from bbackup.cli.progress import progress_reporter
from bbackup.cli.repo_cmds import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.errors import ExitCode
from bbackup.ops.restore import MAX_RANGE_GAP, Restorer, RestoreSummary, remote_range_gap
from bbackup.repository import Repository
from bbackup.snapshot.store import find_snapshot, load_snapshots
from bbackup.storage import DEFAULT_CONNECTIONS

#: Reads of a local repository span at most this much of a pack: below glibc's mmap
#: threshold (2 MiB, `app._tune_allocator`), so read buffers come from the heap and are
#: reused instead of being mapped, faulted in page by page and unmapped again. Remote
#: repositories read whole runs of needed blobs: there every request costs.
LOCAL_READ_SIZE = 2 * 1024 * 1024 - 64 * 1024
#: Freed heap memory glibc keeps instead of giving it back (its default is 128 KiB): the
#: restore frees and allocates a few MiB per blob read, decrypted and decompressed, and a
#: page given back is zero-filled and faulted in again on its next use.
KEEP_FREED_BYTES = 64 * 1024 * 1024


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
            scheme = repo.stack.url.scheme
            restorer = Restorer(
                repo,
                snap,
                target,
                include=include,
                workers=workers,
                connections=opts.connections or DEFAULT_CONNECTIONS.get(scheme, 4),
                read_size=LOCAL_READ_SIZE if scheme == "local" else None,
                max_gap=MAX_RANGE_GAP if scheme == "local" else remote_range_gap(repo.config),
                on_error=on_error,
                on_warning=lambda p, message: warn(f"warning: {p}: {message}"),
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

        # Freed heap is kept for reuse, never added to: peak memory is unchanged.
        set_malloc_option(M_TRIM_THRESHOLD, KEEP_FREED_BYTES, "MALLOC_TRIM_THRESHOLD_")
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
