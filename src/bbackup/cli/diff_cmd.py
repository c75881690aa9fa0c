"""`bbackup diff SNAP1 SNAP2`: what changed between two snapshots, as `restic diff`."""

from __future__ import annotations

from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.ops.diff import SnapshotDiff, diff_trees
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.snapshot.model import DIR, Snapshot
from bbackup.snapshot.store import find_snapshot, load_snapshots, load_tree


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "diff",
        short_help="Show what changed between two snapshots.",
        help="Show what changed between two snapshots: + added, - removed, M content "
        "changed, T type changed, U metadata changed (with --metadata).\n\n"
        "Example: bbackup diff 3f2a9c1b latest",
    )
    def diff(
        opts: GlobalOptions,
        first: Annotated[str, typer.Argument(metavar="SNAP1", help="latest or an ID prefix.")],
        second: Annotated[str, typer.Argument(metavar="SNAP2", help="latest or an ID prefix.")],
        metadata: Annotated[
            bool, typer.Option("--metadata", help="Also list entries whose metadata changed.")
        ] = False,
    ) -> None:
        async def work(repo: Repository) -> tuple[Snapshot, Snapshot, SnapshotDiff]:
            snapshots = await load_snapshots(repo)
            before = find_snapshot(snapshots, first)
            after = find_snapshot(snapshots, second)
            result = await diff_trees(
                lambda tree_id: load_tree(repo, tree_id),
                repo.index,
                before.tree,
                after.tree,
                metadata=metadata,
            )
            return before, after, result

        before, after, result = with_repo(opts, work)
        if opts.json:
            for c in result.changes:
                emit_json(
                    {
                        "event": "change",
                        "path": c.path,
                        "modifier": c.modifier,
                        "type": c.type,
                        "size_before": c.size_before,
                        "size_after": c.size_after,
                    }
                )
            emit_json(
                {
                    "event": "diff",
                    "source_snapshot": before.id,
                    "target_snapshot": after.id,
                    **result.totals(),
                }
            )
            return
        echo(f"comparing snapshot {before.short_id} to {after.short_id}:\n")
        for c in result.changes:
            echo(f"{c.modifier:<5}{c.path}{'/' if c.type == DIR else ''}")
        echo("")
        added, removed = result.added, result.removed
        echo(
            f"Files:      {added.files:>5} new, {removed.files:>5} removed, "
            f"{result.changed_files:>5} changed"
        )
        echo(f"Dirs:       {added.dirs:>5} new, {removed.dirs:>5} removed")
        echo(f"Others:     {added.others:>5} new, {removed.others:>5} removed")
        echo(f"Data Blobs: {added.data_blobs:>5} new, {removed.data_blobs:>5} removed")
        echo(f"Tree Blobs: {added.tree_blobs:>5} new, {removed.tree_blobs:>5} removed")
        echo(f"  Added:   {human_bytes(added.bytes)}")
        echo(f"  Removed: {human_bytes(removed.bytes)}")
