"""Commands that create a repository and clear its locks: init, unlock."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from bbackup.chunking import ChunkerParams, MiB
from bbackup.cli.key_cost import KdfMemoryOpt, KdfTimeOpt
from bbackup.cli.opening import key_hint, open_stack, run_async, with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.password import resolve_password
from bbackup.cli.source_repo import (
    FromPasswordCommandOpt,
    FromPasswordFileOpt,
    FromRepoOpt,
    FromS3EndpointOpt,
    FromS3PathStyleOpt,
    FromS3RegionOpt,
    shared_chunker_key,
    source_options,
)
from bbackup.compression import MAX_LEVEL
from bbackup.crypto.keys import KdfCost
from bbackup.errors import UsageError
from bbackup.repository import (
    RemovedLocks,
    Repository,
    RepositoryConfig,
    init_repository,
    remove_stale_locks,
)
from bbackup.repository.config import MAX_PACK_SIZE, MIN_PACK_SIZE

#: What a local repository's directory holds (docs/format.md): an `init` that was
#: interrupted before it wrote `config` left some of these, and may be run again.
REPOSITORY_ENTRIES = frozenset(
    {"config", "keys", "data", "tree", "index", "snapshots", "locks", "damaged"}
)


def refuse_foreign_directory(path: str) -> None:
    """A UsageError if `path` is a directory that holds anything a repository does not:
    `init` would write `config` and `keys/` among someone's files. A repository there is
    left to `init_repository`, which says it exists (exit 14)."""
    try:
        names = set(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return
    if names - REPOSITORY_ENTRIES and "config" not in names:
        raise UsageError(
            f"{path} is not empty and not a bbackup repository: init a new or empty directory"
        )


def register(app: typer.Typer) -> None:
    @repo_command(app, "init", help="Create a new repository.")
    def init(
        opts: GlobalOptions,
        pack_size: Annotated[int, typer.Option(help="Target pack size in MiB (4-128).")] = 16,
        compression: Annotated[
            int, typer.Option(min=0, max=MAX_LEVEL, help="zstd level, 0 = off.")
        ] = 3,
        kdf_memory: KdfMemoryOpt = None,
        kdf_time: KdfTimeOpt = None,
        copy_chunker_params: Annotated[
            bool, typer.Option(help="Chunk and name blobs as --from-repo does (see copy).")
        ] = False,
        from_repo: FromRepoOpt = None,
        from_password_file: FromPasswordFileOpt = None,
        from_password_command: FromPasswordCommandOpt = None,
        from_s3_endpoint: FromS3EndpointOpt = None,
        from_s3_region: FromS3RegionOpt = None,
        from_s3_path_style: FromS3PathStyleOpt = None,
    ) -> None:
        if not MIN_PACK_SIZE <= pack_size * MiB <= MAX_PACK_SIZE:
            raise UsageError("--pack-size must be between 4 and 128 (MiB)")
        kdf = KdfCost(kdf_memory, kdf_time)
        master, chunker = None, ChunkerParams()
        if copy_chunker_params:
            master, chunker = shared_chunker_key(
                source_options(
                    opts,
                    from_repo,
                    from_password_file,
                    from_password_command,
                    from_s3_endpoint,
                    from_s3_region,
                    from_s3_path_style,
                )
            )
        password = resolve_password(
            opts.password_file,
            opts.password_command,
            confirm=True,
            prompt="New repository password",
        )
        stack = open_stack(opts)
        if stack.url.scheme == "local":
            refuse_foreign_directory(stack.url.path)

        async def main() -> RepositoryConfig:
            try:
                config = RepositoryConfig(
                    chunker=chunker, compression_level=compression, pack_size=pack_size * MiB
                )
                return await init_repository(
                    stack,
                    password,
                    config,
                    kdf=kdf,
                    remember_key=key_hint(opts, stack),
                    master=master,
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

    @repo_command(
        app,
        "unlock",
        help="Remove stale locks (or all with --remove-all).",
    )
    def unlock(
        opts: GlobalOptions,
        remove_all: Annotated[
            bool,
            typer.Option(
                "--remove-all",
                help="Remove every lock, also those of live processes on other hosts: only "
                "when no other bbackup uses the repository.",
            ),
        ] = False,
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
