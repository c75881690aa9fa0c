"""Commands that create, inspect and verify a repository: init, snapshots, ls, check, unlock."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated, Any

import typer

from bbackup.chunking import MiB
from bbackup.cli.common import (
    GlobalOptions,
    echo,
    emit_json,
    human_bytes,
    key_hint,
    repo_command,
    resolve_password,
    run_async,
    warn,
    with_repo,
)
from bbackup.cli.key_cmds import KdfMemoryOpt, KdfTimeOpt
from bbackup.crypto.keys import KdfCost
from bbackup.errors import ExitCode, UsageError
from bbackup.ops.check import ReadDataSubset, check_repository
from bbackup.repository import (
    RemovedLocks,
    Repository,
    RepositoryConfig,
    init_repository,
    remove_stale_locks,
)
from bbackup.repository.config import MAX_PACK_SIZE, MIN_PACK_SIZE
from bbackup.snapshot.model import DIR, Node, Snapshot
from bbackup.snapshot.store import SnapshotFilter, find_snapshot, load_snapshots, load_tree

HostOpt = Annotated[list[str] | None, typer.Option("--host", help="Only snapshots of this host.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only snapshots with these tags.")]
PathOpt = Annotated[list[str] | None, typer.Option("--path", help="Only snapshots of these paths.")]


def snapshot_filter(
    host: list[str] | None, tag: list[str] | None, path: list[str] | None
) -> SnapshotFilter:
    return SnapshotFilter(
        tuple(host or ()), tuple(tag or ()), tuple(os.path.abspath(p) for p in path or ())
    )


def snapshot_json(s: Snapshot) -> dict[str, Any]:
    return {
        "id": s.id,
        "short_id": s.short_id,
        "time": s.time.isoformat(),
        "host": s.host,
        "user": s.user,
        "paths": s.paths,
        "tags": s.tags,
        "type": s.backup_type,
        "tree": s.tree.hex(),
        "parent": s.parent,
        "base": s.base,
        "program_version": s.program_version,
        "summary": s.summary,
    }


def register(app: typer.Typer) -> None:
    @repo_command(app, "init", help="Create a new repository.")
    def init(
        opts: GlobalOptions,
        pack_size: Annotated[int, typer.Option(help="Target pack size in MiB (4-128).")] = 16,
        compression: Annotated[int, typer.Option(help="zstd level, 0 = off.")] = 3,
        kdf_memory: KdfMemoryOpt = None,
        kdf_time: KdfTimeOpt = None,
    ) -> None:
        if not MIN_PACK_SIZE <= pack_size * MiB <= MAX_PACK_SIZE:
            raise UsageError("--pack-size must be between 4 and 128 (MiB)")
        kdf = KdfCost(kdf_memory, kdf_time)
        password = resolve_password(opts, confirm=True, prompt="New repository password")
        stack = opts.open_stack()

        async def main() -> RepositoryConfig:
            try:
                ensure = getattr(stack.backend, "ensure_bucket", None)
                if ensure is not None:
                    await ensure(create=True)
                config = RepositoryConfig(compression_level=compression, pack_size=pack_size * MiB)
                return await init_repository(
                    stack, password, config, kdf=kdf, remember_key=key_hint(opts, stack)
                )
            finally:
                await stack.storage.aclose()

        config = run_async(main())
        if opts.json:
            emit_json(
                {
                    "event": "initialized",
                    "repository_id": config.repository_id,
                    "location": str(stack.url),
                }
            )
        else:
            echo(f"created bbackup repository {config.repository_id[:10]} at {stack.url}")
            echo("Keep the password safe: without it the data cannot be recovered.")

    @repo_command(app, "snapshots", help="List snapshots.")
    def snapshots(
        opts: GlobalOptions, host: HostOpt = None, tag: TagOpt = None, path: PathOpt = None
    ) -> None:
        filters = snapshot_filter(host, tag, path)

        async def work(repo: Repository) -> list[Snapshot]:
            return [s for s in await load_snapshots(repo) if filters.matches(s)]

        found = with_repo(opts, work, load_index=False)
        if opts.json:
            emit_json({"event": "snapshots", "snapshots": [snapshot_json(s) for s in found]})
            return
        echo(f"{'ID':<10} {'Time':<20} {'Host':<16} {'Type':<12} {'Tags':<16} Paths")
        for s in found:
            echo(
                f"{s.short_id:<10} {s.time.strftime('%Y-%m-%d %H:%M:%S'):<20} {s.host:<16} "
                f"{s.backup_type:<12} {','.join(s.tags):<16} {', '.join(s.paths)}"
            )
        echo(f"{len(found)} snapshots")

    @repo_command(app, "ls", help="List files in a snapshot.")
    def ls(
        opts: GlobalOptions,
        snapshot: Annotated[str, typer.Argument(help="latest or a snapshot ID prefix.")],
        path: Annotated[str | None, typer.Argument(help="Only list below this path.")] = None,
        long: Annotated[bool, typer.Option("--long", "-l", help="Show metadata.")] = False,
        host: HostOpt = None,
        tag: TagOpt = None,
        snapshot_path: Annotated[list[str] | None, typer.Option("--path")] = None,
    ) -> None:
        prefix = "/" + path.strip("/") if path and path.strip("/") else ""

        async def work(repo: Repository) -> list[tuple[str, Node]]:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, snapshot_path)
            )
            out: list[tuple[str, Node]] = []
            stack: list[tuple[bytes, str]] = [(snap.tree, "")]
            while stack:
                tree_id, where = stack.pop()
                tree = await load_tree(repo, tree_id)
                for node in reversed(tree.nodes):
                    full = f"{where}/{node.display_name}"
                    below = prefix and (full == prefix or full.startswith(prefix + "/"))
                    above = prefix and prefix.startswith(full + "/")
                    if not prefix or below:
                        out.append((full, node))
                    if node.type == DIR and node.subtree and (not prefix or below or above):
                        stack.append((node.subtree, full))
            return sorted(out, key=lambda e: e[0])

        entries = with_repo(opts, work)
        for full, node in entries:
            if opts.json:
                emit_json(
                    {
                        "path": full,
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

    @repo_command(app, "check", help="Verify the repository's structure and, optionally, its data.")
    def check(
        opts: GlobalOptions,
        read_data: Annotated[
            bool, typer.Option("--read-data", help="Download and verify every pack.")
        ] = False,
        read_data_subset: Annotated[
            str | None, typer.Option(help="Verify a subset: 10% or n/m.")
        ] = None,
    ) -> None:
        subset = (
            ReadDataSubset.parse(read_data_subset)
            if read_data_subset
            else (ReadDataSubset() if read_data else None)
        )

        async def work(repo: Repository) -> Any:
            report = await check_repository(repo, read_data=subset, connections=opts.connections)
            report.requests = repo.stack.counter.snapshot()
            return report

        # check verifies what the repository holds, never the local cache's copies: like
        # restic's, it uses a fresh cache of its own, so each tree pack is fetched once.
        with tempfile.TemporaryDirectory(prefix="bbackup-check-") as scratch:
            opts.no_cache, opts.cache_dir = False, scratch
            report = with_repo(opts, work)
        if opts.json:
            emit_json({"event": "check", **report.to_dict()})
        else:
            for w in report.warnings:
                warn(f"warning: {w}")
            for e in report.errors:
                warn(f"error: {e}")
            echo(
                f"checked {report.snapshots} snapshots, {report.trees} trees, {report.packs} packs"
                + (
                    f", read {report.packs_read} packs ({human_bytes(report.bytes_read)})"
                    if subset
                    else ""
                )
            )
            echo("no errors were found" if report.ok else f"{len(report.errors)} errors found")
        if not report.ok:
            raise typer.Exit(ExitCode.INTEGRITY)

    @repo_command(app, "unlock", help="Remove stale locks (or all with --remove-all).")
    def unlock(
        opts: GlobalOptions, remove_all: Annotated[bool, typer.Option("--remove-all")] = False
    ) -> None:
        async def work(repo: Repository) -> RemovedLocks:
            repo.on_damage = None  # unlock names the unreadable locks it removes
            return await remove_stale_locks(repo, all_locks=remove_all)

        removed = with_repo(opts, work, load_index=False)
        if opts.json:
            emit_json(
                {"event": "unlock", "removed": removed.count, "unreadable": removed.unreadable}
            )
        else:
            for name, problem in removed.unreadable.items():
                echo(f"removed {name}: not a readable lock ({problem})")
            echo(f"removed {removed.count} locks")
