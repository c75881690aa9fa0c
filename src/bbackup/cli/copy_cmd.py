"""`bbackup copy --from-repo SOURCE [SNAPSHOT...]`: copy snapshots from another repository
into this one (`--repo`), for 3-2-1 copies. The source is named and opened like `--repo`,
with `--from-*` options and BBACKUP_FROM_* variables of its own."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from bbackup.cli.opening import open_repo, open_stack, run_async
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn, warn_event
from bbackup.cli.progress import progress_reporter
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.cli.source_repo import (
    NO_SOURCE_OPTIONS,
    SourceRepoOptions,
    open_source,
    source_repo_options,
)
from bbackup.cli.thawing import DaysOpt, NoWaitOpt, TierOpt, thaw_before_reading, thaw_options
from bbackup.errors import ExitCode
from bbackup.ops.copy import Copier, CopyOptions, CopySummary, describe
from bbackup.ops.restore_reads import pack_read_settings
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.snapshot.model import Snapshot


def register(app: typer.Typer) -> None:
    @repo_command(
        app, "copy", help="Copy snapshots from another repository (--from-repo) into this one."
    )
    @source_repo_options
    def copy(
        opts: GlobalOptions,
        snapshots: Annotated[
            list[str] | None,
            typer.Argument(help="Snapshots to copy (ID prefixes or latest); default: all."),
        ] = None,
        source: SourceRepoOptions = NO_SOURCE_OPTIONS,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
        workers: Annotated[int, typer.Option(min=1, max=64, help="Decrypt and store threads.")] = 2,
        restore_tier: TierOpt = "bulk",
        restore_days: DaysOpt = 3,
        no_wait: NoWaitOpt = False,
    ) -> None:
        thaw = thaw_options(restore_tier, restore_days, no_wait)
        source_opts = source.global_options(opts)
        opts.as_of = None  # --as-of reads the source as it was; the target is written
        options = CopyOptions(
            references=snapshots or (), filters=snapshot_filter(host, tag, path), workers=workers
        )

        def copied(source: Snapshot, copy: Snapshot) -> None:
            if opts.json:
                emit_json({"event": "copied", "source": source.id, "target": copy.id})
            else:
                echo(f"copied snapshot {describe(source)} as {copy.short_id}")

        def skipped(source: Snapshot, copy: Snapshot) -> None:
            if opts.json:
                emit_json({"event": "skipped", "source": source.id, "target": copy.id})
            else:
                echo(f"skipped snapshot {describe(source)}: already copied as {copy.short_id}")

        def failed(source: Snapshot, message: str) -> None:
            if opts.json:
                emit_json({"event": "error", "source": source.id, "message": message})
            else:
                warn(f"error: snapshot {source.short_id} not copied: {message}")

        async def work(source: Repository, target: Repository) -> CopySummary:
            reads = pack_read_settings(source, opts.connections)
            options.connections = reads.connections
            options.upload_slots = opts.connections or target.stack.profile.upload_slots
            options.read_size = reads.read_size
            options.max_gap = reads.max_gap
            copier = Copier(
                source,
                target,
                options,
                on_copied=copied,
                on_skipped=skipped,
                on_failed=failed,
                on_warning=lambda w: warn_event(f"warning: {w}", opts.json),
                # The source's archived packs are thawed before the copy reads any.
                before_reads=lambda names: thaw_before_reading(
                    source, names, thaw, as_json=opts.json
                ),
            )
            start = time.monotonic()

            def sample() -> dict[str, object]:
                files, copied_bytes = copier.progress()
                done = copier.summary
                return {
                    "snapshots": len(done.copied) + len(done.skipped) + len(done.failed),
                    "snapshots_total": copier.snapshots_total,
                    "files": files,
                    "bytes": copied_bytes,
                    "seconds": time.monotonic() - start,
                }

            async with progress_reporter(sample, as_json=opts.json, label="copy"):
                summary = await copier.run()
            summary.requests = {
                "source": source.stack.counter.snapshot(),
                "target": target.stack.counter.snapshot(),
            }
            return summary

        source_stack, target_stack = open_stack(source_opts), open_stack(opts)

        async def main() -> CopySummary:
            try:
                source = await open_source(source_opts, source_stack)
                target = await open_repo(opts, target_stack, load_index=False)
                return await work(source, target)
            finally:
                await source_stack.storage.aclose()
                await target_stack.storage.aclose()

        summary = run_async(main())
        if opts.json:
            emit_json({"event": "summary", **summary.to_dict()})
        else:
            report(summary)
        if summary.failed:
            raise typer.Exit(ExitCode.INTEGRITY)


def report(summary: CopySummary) -> None:
    copied, skipped = len(summary.copied), len(summary.skipped)
    if not copied and not summary.failed:
        if skipped:
            echo(f"nothing to copy: all {skipped} selected snapshots are in the target already")
        else:
            echo("nothing to copy: no snapshot selected")
        return
    echo(
        f"copied {copied} snapshots ({skipped} already there): "
        f"{human_bytes(summary.bytes_added)} added to the target "
        f"({human_bytes(summary.bytes_stored)} stored), "
        f"{human_bytes(summary.bytes_read)} read from the source "
        f"in {summary.duration_seconds:.1f}s"
    )
    if summary.packs_adopted:
        echo(
            f"Resumed: adopted {summary.packs_adopted} packs "
            f"({human_bytes(summary.bytes_adopted)}) left by an interrupted run"
        )
    if summary.failed:
        warn(f"{len(summary.failed)} snapshots could not be copied; see the errors above")
