"""`bbackup backup PATH...`: back up paths into a new snapshot."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn, warn_event
from bbackup.cli.progress import progress_reporter, progress_shown
from bbackup.compression import MAX_LEVEL
from bbackup.errors import ExitCode, UsageError
from bbackup.ops.backup import (
    Archiver,
    BackupOptions,
    BackupSummary,
    normalize_paths,
)
from bbackup.ops.excludes import Excluder
from bbackup.ops.restore_select import check_pattern
from bbackup.ops.scan import Prescan, excludes_everything
from bbackup.ops.totals_scan import TotalsScan
from bbackup.report_format import human_bytes
from bbackup.repository import Repository

BackupType = Literal["incremental", "differential", "full"]


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--time {text!r}: use ISO 8601, e.g. 2026-01-31T02:00:00+00:00") from None
    return value if value.tzinfo else value.astimezone()


def register(app: typer.Typer) -> None:
    @repo_command(app, "backup", help="Back up files and directories.")
    def backup(
        opts: GlobalOptions,
        paths: Annotated[list[str], typer.Argument(help="Files and directories to back up.")],
        host: Annotated[str | None, typer.Option(help="Record this host name.")] = None,
        tag: Annotated[
            list[str] | None, typer.Option("--tag", help="Add a tag (repeatable).")
        ] = None,
        exclude: Annotated[
            list[str] | None,
            typer.Option(
                "--exclude",
                "-e",
                help="Leave out what matches (a name at any depth, or /an/absolute/path; "
                "* ? [ ] and ** as in restic). Repeatable.",
            ),
        ] = None,
        exclude_file: Annotated[
            list[str] | None,
            typer.Option(help="Read exclude patterns from a file, one a line."),
        ] = None,
        backup_type: Annotated[
            BackupType,
            typer.Option(
                "--type",
                help="incremental: compare with the latest snapshot; differential: with the "
                "latest full one; full: read every file.",
            ),
        ] = "incremental",
        time_: Annotated[
            str | None,
            typer.Option("--time", help="Record this time (ISO 8601)."),
        ] = None,
        storage_class: Annotated[
            str | None,
            typer.Option(
                metavar="CLASS",
                help="Storage class for data packs (S3), e.g. STANDARD_IA, GLACIER_IR, GLACIER "
                "or DEEP_ARCHIVE; everything else stays STANDARD.",
            ),
        ] = None,
        compression: Annotated[
            int | None,
            typer.Option(min=0, max=MAX_LEVEL, help="zstd level for this run (0 = off)."),
        ] = None,
        workers: Annotated[
            int,
            typer.Option(
                min=1, max=64, help="Reader/CPU threads, and seal worker processes (to the cores)."
            ),
        ] = 2,
    ) -> None:
        if storage_class is not None:
            storage_class = storage_class.strip().upper()
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", storage_class):
                raise UsageError(f"--storage-class {storage_class!r}: not a storage class name")
        patterns = [check_pattern(p, "--exclude") for p in exclude or []]
        for path in exclude_file or []:
            try:
                lines = os.fsdecode(Path(path).read_bytes()).splitlines()
            except OSError as exc:
                raise UsageError(f"cannot read exclude file {path}: {exc.strerror}") from exc
            patterns += [
                check_pattern(ln.strip(), f"--exclude-file {path}:")
                for ln in lines
                if ln.strip() and not ln.lstrip().startswith("#")
            ]
        sources = normalize_paths(paths)
        if excludes_everything(sources, Excluder(patterns)):
            warn_event(
                f"warning: the excludes leave nothing of {', '.join(sources)} to back up; "
                "no snapshot saved",
                opts.json,
            )
            raise typer.Exit(ExitCode.NO_MATCH)
        options = BackupOptions(
            paths=paths,
            tags=tag or [],
            excludes=patterns,
            backup_type=backup_type,
            time=parse_time(time_),
            storage_class=storage_class,
            compression_level=compression,
            workers=workers,
        )
        if host:
            options.host = host

        def on_error(path: str, message: str) -> None:
            if opts.json:
                emit_json({"event": "error", "path": path, "message": message})
            else:
                warn(f"warning: {path}: {message}")

        async def work(repo: Repository) -> BackupSummary:
            options.upload_slots = opts.connections or repo.stack.profile.upload_slots
            options.request_counts = repo.stack.counter.snapshot
            archiver = Archiver(
                repo,
                options,
                on_error=on_error,
                on_warning=lambda w: warn_event(f"warning: {w}", opts.json),
            )
            start = time.monotonic()

            def sample() -> dict[str, object]:
                p = archiver.progress
                return {
                    "files": p.files,
                    "files_total": totals.files if totals else None,
                    "bytes": p.bytes_seen,
                    "bytes_total": totals.bytes if totals else None,
                    "totals_final": totals.finished if totals else False,
                    "bytes_read": p.bytes_read,
                    "errors": p.errors,
                    "seconds": time.monotonic() - start,
                }

            async with progress_reporter(sample, as_json=opts.json, label="backup"):
                await archiver.run()
            archiver.summary.requests = repo.stack.counter.snapshot()
            return archiver.summary

        # Walk the sources while the repository opens (the key derivation leaves the GIL).
        options.prescan = Prescan(sources, Excluder(patterns))
        totals = TotalsScan(sources, Excluder(patterns)) if progress_shown(opts.json) else None
        try:
            # The archiver loads the index itself, under its lock.
            summary = with_repo(opts, work, load_index=False)
        finally:
            options.prescan.stop()
            if totals is not None:
                totals.stop()
        if opts.json:
            emit_json({"event": "summary", **summary.to_dict()})
        else:
            echo(
                f"Files: {summary.files_new} new, {summary.files_changed} changed, "
                f"{summary.files_unchanged} unmodified"
            )
            echo(
                f"Added to the repository: {human_bytes(summary.bytes_added)} "
                f"({human_bytes(summary.bytes_stored)} stored)"
            )
            echo(
                f"processed {summary.total_files} files, {human_bytes(summary.total_bytes)} "
                f"in {summary.duration_seconds:.1f}s"
            )
            if summary.packs_adopted:
                echo(
                    f"Resumed: adopted {summary.packs_adopted} packs "
                    f"({human_bytes(summary.bytes_adopted)}) left by an interrupted backup"
                )
            echo(f"snapshot {summary.snapshot_id[:8]} saved ({summary.type})")
        if summary.errors:
            if not opts.json:
                warn(f"{summary.errors} files could not be backed up; see the warnings above")
            raise typer.Exit(ExitCode.PARTIAL)
