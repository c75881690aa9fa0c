"""`bbackup repair index|packs|snapshots`: rebuild the index from the packs' headers, take
damaged packs out keeping their intact blobs, rewrite snapshots that lost data."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.repair_versions_cmd import register_versions
from bbackup.errors import ExitCode
from bbackup.ops.repair import RepairIndexReport, RepairPacksReport, repair_index, repair_packs
from bbackup.ops.repair_snapshots import RepairSnapshotsReport, repair_snapshots
from bbackup.repository import Repository

T = TypeVar("T")

DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Only say what would be done.")]


def with_store_view(opts: GlobalOptions, work: Callable[[Repository], Awaitable[T]]) -> T:
    """Run `work` on the repository as stored, not as the local cache remembers it."""
    # Like check, repair looks at what the repository holds, not at the local cache's
    # copies: a scratch cache of its own, so damage in the store is seen.
    with tempfile.TemporaryDirectory(prefix="bbackup-repair-") as scratch:
        opts.no_cache, opts.cache_dir = False, scratch
        return with_repo(opts, work, load_index=False)


def register(app: typer.Typer) -> None:
    repair_app = typer.Typer(help="Repair a damaged repository.", no_args_is_help=True)
    app.add_typer(repair_app, name="repair")
    register_versions(repair_app)

    @repo_command(repair_app, "index", help="Rebuild the index from the pack headers.")
    def index(opts: GlobalOptions, dry_run: DryRunOpt = False) -> None:
        async def work(repo: Repository) -> RepairIndexReport:
            repo.on_damage = None  # the report names the damaged segments it replaces
            return await repair_index(repo, dry_run=dry_run, connections=opts.connections or 4)

        report = with_store_view(opts, work)
        if opts.json:
            emit_json({"event": "repair_index", **report.to_dict()})
            return
        replaced = "would be replaced" if dry_run else "replaced"
        for name, problem in report.damaged_segments.items():
            warn(f"{name}: {problem}; {replaced}")
        for name, problem in report.damaged_packs.items():
            kept = " (its entries from the old index are kept)"
            warn(
                f"warning: {name}: {problem}, left for `bbackup repair packs`"
                + (kept if name in report.kept_from_old_index else "")
            )
        verb = "would index" if dry_run else "indexed"
        echo(
            f"read {report.packs_read} pack headers; {verb} {report.blobs_indexed} blobs "
            f"in {report.packs_read + len(report.kept_from_old_index)} packs"
        )
        if dry_run:
            echo(
                f"would replace {len(report.old_segments)} index segments "
                f"({len(report.damaged_segments)} damaged); nothing was changed"
            )
        else:
            echo(
                f"wrote {len(report.segments_written)} index segments, replacing "
                f"{len(report.old_segments)} ({len(report.damaged_segments)} damaged)"
            )
        if report.damaged_packs:
            echo(f"{len(report.damaged_packs)} damaged packs: see the warnings above")

    @repo_command(
        repair_app,
        "packs",
        help="Find damaged packs (by reading them whole), keep their intact blobs in new "
        "packs and drop the damaged blobs from the index, so the next backup uploads them "
        "again.",
    )
    def packs(
        opts: GlobalOptions,
        dry_run: DryRunOpt = False,
        pack: Annotated[
            list[str] | None,
            typer.Option(
                "--pack",
                help="Read only this pack (ID, ID prefix or name, as `check --read-data` "
                "names it; repeatable). Default: every indexed pack.",
            ),
        ] = None,
    ) -> None:
        async def work(repo: Repository) -> RepairPacksReport:
            return await repair_packs(
                repo, packs=pack or (), dry_run=dry_run, connections=opts.connections or 4
            )

        report = with_store_view(opts, work)
        if opts.json:
            emit_json({"event": "repair_packs", **report.to_dict()})
            return
        for name, problems in report.damaged_packs.items():
            for problem in problems:
                warn(f"{name}: {problem}")
        echo(f"read {report.packs_read} packs; {len(report.damaged_packs)} damaged")
        if report.records_removed:
            echo(f"removed {len(report.records_removed)} damage records it has dealt with")
        if not report.damaged_packs:
            echo("no damaged packs were found; nothing to do")
            return
        if dry_run:
            echo(
                f"would keep {report.blobs_salvaged} intact blobs in new packs, drop "
                f"{len(report.blobs_lost)} damaged blobs from the index and delete "
                f"{len(report.damaged_packs)} packs; nothing was changed"
            )
            return
        echo(
            f"kept {report.blobs_salvaged} intact blobs in {report.packs_written} new packs; "
            f"dropped {len(report.blobs_lost)} damaged blobs from the index; "
            f"deleted {len(report.packs_deleted)} packs"
        )
        if report.blobs_lost:
            echo(
                "the next backup of the files that used them uploads them again; "
                "`bbackup repair snapshots` rewrites the snapshots that lost them"
            )

    @repo_command(
        repair_app,
        "snapshots",
        help="Rewrite snapshots that reference data no longer in the index: files that "
        "lost data are left out and listed; the new snapshot is tagged `repaired`.",
    )
    def snapshots(
        opts: GlobalOptions,
        dry_run: DryRunOpt = False,
        forget: Annotated[
            bool,
            typer.Option("--forget", help="Remove each original once its rewrite is stored."),
        ] = False,
    ) -> None:
        async def work(repo: Repository) -> RepairSnapshotsReport:
            return await repair_snapshots(repo, dry_run=dry_run, forget=forget)

        report = with_store_view(opts, work)
        if opts.json:
            emit_json({"event": "repair_snapshots", **report.to_dict()})
            return
        would = "would be " if dry_run else ""
        for snap in report.rewritten:
            new = f" as {snap.new[:8]}" if snap.new else ""
            echo(f"snapshot {snap.original[:8]}: {would}rewritten{new}; lost:")
            for path in snap.lost:
                echo(f"  {path}")
        for snapshot_id in report.unrepairable:
            warn(f"snapshot {snapshot_id[:8]}: its root tree is lost; nothing to keep")
        for snapshot_id in report.forgotten:
            echo(f"snapshot {snapshot_id[:8]}: removed")
        echo(
            f"checked {report.snapshots_checked} snapshots; {len(report.rewritten)} "
            f"{would}rewritten" + ("; nothing was changed" if dry_run else "")
        )
        if report.unrepairable and not forget:
            warn("snapshots whose root tree is lost stay as they are; `--forget` removes them")
            raise typer.Exit(ExitCode.INTEGRITY)
