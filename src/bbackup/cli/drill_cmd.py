"""`bbackup drill [SNAPSHOT]`: prove that a sample of a snapshot restores, byte for byte,
preferring the packs no drill has proven for longest; exit 13 naming every file that
failed."""

from __future__ import annotations

import tempfile
from typing import Annotated

import typer

from bbackup.cache_paths import cache_directory
from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn, warn_event
from bbackup.cli.progress import progress_reporter
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.cli.thawing import DaysOpt, NoWaitOpt, TierOpt, thaw_before_reading, thaw_options
from bbackup.errors import ExitCode, UsageError
from bbackup.ops.damage_record import recording_damage
from bbackup.ops.drill import Drill, DrillOptions
from bbackup.ops.drill_report import DrillReport
from bbackup.ops.drill_sample import sample_fraction
from bbackup.ops.restore_reads import pack_read_settings
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.snapshot.store import find_snapshot, load_snapshots


def register(app: typer.Typer) -> None:
    @repo_command(app, "drill", help="Prove that a sample of a snapshot restores, and record it.")
    def drill(
        opts: GlobalOptions,
        snapshot: Annotated[
            str, typer.Argument(help="latest (the default) or a snapshot ID prefix.")
        ] = "latest",
        sample: Annotated[
            str | None,
            typer.Option(
                "--sample",
                metavar="PERCENT",
                help="Restore files covering this share of the snapshot's data packs (default 5%).",
            ),
        ] = None,
        files: Annotated[
            int | None,
            typer.Option("--files", min=1, metavar="N", help="Restore at least N files."),
        ] = None,
        compare_source: Annotated[
            bool,
            typer.Option(
                "--compare-source",
                help="Also compare with the live files whose size and mtime are unchanged.",
            ),
        ] = False,
        scratch: Annotated[
            str | None,
            typer.Option(
                "--scratch",
                metavar="DIR",
                help="Where to restore the sample (removed afterwards; default: the cache "
                "directory, or $TMPDIR with --no-cache).",
            ),
        ] = None,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
        workers: Annotated[int, typer.Option(min=1, max=64, help="Decrypt/write threads.")] = 2,
        restore_tier: TierOpt = "bulk",
        restore_days: DaysOpt = 3,
        no_wait: NoWaitOpt = False,
    ) -> None:
        thaw = thaw_options(restore_tier, restore_days, no_wait)
        fraction = sample_fraction(sample) if sample is not None else None
        if scratch is None and not opts.no_cache:
            scratch = cache_directory(opts.cache_dir)

        async def work(repo: Repository) -> DrillReport:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, path)
            )
            reads = pack_read_settings(repo, opts.connections)
            options = DrillOptions(
                fraction=fraction,
                files=files,
                compare_source=compare_source,
                scratch_root=scratch,
                workers=workers,
                connections=reads.connections,
                read_size=reads.read_size,
                max_gap=reads.max_gap,
            )
            drill = Drill(repo, snap, options, on_warning=lambda line: warn_event(line, opts.json))
            await drill.plan()
            # The sample's archived packs are thawed before anything is restored.
            await thaw_before_reading(repo, drill.packs_needed, thaw, as_json=opts.json)
            # A blob that fails verification is recorded, so backups upload it again.
            async with (
                recording_damage(repo, "drill", lambda line: warn_event(line, opts.json)),
                progress_reporter(drill.sample_progress, as_json=opts.json, label="drill"),
            ):
                return await drill.run()

        if scratch is not None and not scratch.strip():
            raise UsageError("--scratch: give a directory")
        # A drill proves what the repository holds, as check does, never the local cache's
        # copies of its trees and indexes: on the day of a disaster there is no cache.
        with tempfile.TemporaryDirectory(prefix="bbackup-drill-cache-") as fresh_cache:
            if not opts.no_cache:
                opts.cache_dir = fresh_cache
            report = with_repo(opts, work)
        if opts.json:
            emit_json({"event": "summary", **report.to_dict()})
        else:
            print_report(report)
        if not report.ok:
            raise typer.Exit(ExitCode.INTEGRITY)


def print_report(report: DrillReport) -> None:
    """Every failed file on stderr, then the result and the coverage."""
    for failure in report.failures:
        warn(f"failed: {failure['path']}: {failure['problem']}")
    echo(f"restore drill {'passed' if report.ok else 'failed'}: {report.message}")
    coverage = report.coverage
    if coverage.get("packs_total"):
        oldest = coverage["oldest_proof"]
        echo(
            f"proven restorable: {coverage['packs_proven']} of {coverage['packs_total']} data "
            f"packs, {human_bytes(coverage['bytes_proven'])} of "
            f"{human_bytes(coverage['bytes_total'])}"
            + (f", oldest proof {oldest.replace('T', ' ')[:16]} UTC" if oldest else "")
        )
    if report.source_skipped:
        echo(
            f"{report.source_skipped} live files were not compared: changed since the "
            "snapshot, or missing"
        )
