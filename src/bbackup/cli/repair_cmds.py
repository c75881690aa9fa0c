"""`bbackup repair index`: rebuild a damaged or lost index from the packs' headers."""

from __future__ import annotations

import tempfile
from typing import Annotated

import typer

from bbackup.cli.common import GlobalOptions, echo, emit_json, repo_command, warn, with_repo
from bbackup.ops.repair import RepairIndexReport, repair_index
from bbackup.repository import Repository


def register(app: typer.Typer) -> None:
    repair_app = typer.Typer(help="Repair a damaged repository.", no_args_is_help=True)
    app.add_typer(repair_app, name="repair")

    @repo_command(repair_app, "index", help="Rebuild the index from the pack headers.")
    def index(
        opts: GlobalOptions,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Only say what would be done.")
        ] = False,
    ) -> None:
        async def work(repo: Repository) -> RepairIndexReport:
            repo.on_damage = None  # the report names the damaged segments it replaces
            return await repair_index(repo, dry_run=dry_run, connections=opts.connections or 4)

        # Like check, repair looks at what the repository holds, not at the local cache's
        # copies: a scratch cache of its own, so a segment damaged in the store is seen.
        with tempfile.TemporaryDirectory(prefix="bbackup-repair-") as scratch:
            opts.no_cache, opts.cache_dir = False, scratch
            report = with_repo(opts, work, load_index=False)
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
