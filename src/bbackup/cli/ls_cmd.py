"""`bbackup ls SNAPSHOT [PATH]`: list the files of a snapshot."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.snapshot_selection import HostOpt, TagOpt, snapshot_filter
from bbackup.errors import NothingMatched
from bbackup.ops.listing import list_files
from bbackup.repository import Repository
from bbackup.snapshot.model import Node, Snapshot
from bbackup.snapshot.store import find_snapshot, load_snapshots, load_tree


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "ls",
        help="List files in a snapshot. A PATH the snapshot does not hold is an error (exit 21).",
    )
    def ls(
        opts: GlobalOptions,
        snapshot: Annotated[str, typer.Argument(help="latest or a snapshot ID prefix.")],
        path: Annotated[
            str | None,
            typer.Argument(help="Only list this path and what is below it (absolute)."),
        ] = None,
        long: Annotated[
            bool, typer.Option("--long", "-l", help="Show mode, owner, size and time.")
        ] = False,
        host: HostOpt = None,
        tag: TagOpt = None,
        snapshot_path: Annotated[
            list[str] | None,
            typer.Option("--path", help="With latest: only snapshots of these source paths."),
        ] = None,
    ) -> None:
        async def work(repo: Repository) -> tuple[Snapshot, list[tuple[str, Node]]]:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, snapshot_path)
            )
            found = await list_files(lambda tree_id: load_tree(repo, tree_id), snap.tree, path)
            return snap, found

        snap, entries = with_repo(opts, work)
        if path is not None and not entries:
            hint = "" if path.startswith("/") else " (paths in a snapshot are absolute)"
            raise NothingMatched(f"{path}: no such path in snapshot {snap.short_id}{hint}")
        for full, node in entries:
            if opts.json:
                emit_json(
                    {
                        "struct_type": "node",  # restic's marker for a file line
                        "path": full,
                        "name": node.display_name,
                        "type": node.type,
                        "mode": node.mode,
                        "uid": node.uid,
                        "gid": node.gid,
                        "user": node.user,
                        "group": node.group,
                        "size": node.size,
                        "mtime_ns": node.mtime_ns,
                        "link_target": os.fsdecode(node.link_target) if node.link_target else None,
                    }
                )
            elif long:
                import stat as st
                import time

                mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(node.mtime_ns / 1e9))
                echo(
                    f"{st.filemode(node.mode)} {node.user or node.uid:>8} "
                    f"{node.group or node.gid:>8} {node.size:>12} {mtime} {full}"
                )
            else:
                echo(full)
