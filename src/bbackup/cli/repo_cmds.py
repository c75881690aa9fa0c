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
    NO_SOURCE_OPTIONS,
    SourceRepoOptions,
    shared_chunker_key,
    source_repo_options,
)
from bbackup.compression import MAX_LEVEL
from bbackup.crypto.keys import KdfCost
from bbackup.durations import parse_duration
from bbackup.errors import BbackupError, UsageError
from bbackup.repository import (
    RemovedLocks,
    Repository,
    RepositoryConfig,
    init_repository,
    remove_stale_locks,
)
from bbackup.repository.config import MAX_PACK_SIZE, MIN_PACK_SIZE
from bbackup.storage import StorageStack
from bbackup.storage.object_lock import LOCK_MODES, ObjectLockSetting

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
    @source_repo_options
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
        source: SourceRepoOptions = NO_SOURCE_OPTIONS,
        object_lock: Annotated[
            str | None,
            typer.Option(
                "--object-lock",
                metavar="DURATION",
                help="Retain every object this long (e.g. 30d); needs a lock-enabled bucket, "
                "created if missing (docs/immutability.md).",
            ),
        ] = None,
        lock_mode: Annotated[
            str, typer.Option(help="Retention mode: governance or compliance.")
        ] = "governance",
    ) -> None:
        lock = parse_object_lock(object_lock, lock_mode)
        if not MIN_PACK_SIZE <= pack_size * MiB <= MAX_PACK_SIZE:
            raise UsageError("--pack-size must be between 4 and 128 (MiB)")
        kdf = KdfCost(kdf_memory, kdf_time)
        master, chunker = None, ChunkerParams()
        if copy_chunker_params:
            master, chunker = shared_chunker_key(source.global_options(opts))
        password = resolve_password(
            opts.password_file,
            opts.password_command,
            confirm=True,
            prompt="New repository password",
        )
        stack = open_stack(opts)
        if lock is not None and (stack.versions is None or not stack.profile.object_lock):
            raise UsageError(
                f"--object-lock: {stack.url} is not on a store with S3 object lock "
                "(see docs/providers.md)"
            )
        if stack.url.scheme == "local":
            refuse_foreign_directory(stack.url.path)

        async def main() -> RepositoryConfig:
            try:
                if lock is not None:
                    await prepare_locked_bucket(stack)
                config = RepositoryConfig(
                    chunker=chunker,
                    compression_level=compression,
                    pack_size=pack_size * MiB,
                    object_lock=lock,
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
                    "object_lock": config.object_lock.to_dict() if config.object_lock else None,
                }
            )
        else:
            echo(f"created bbackup repository {config.repository_id[:10]} at {stack.url}")
            if config.object_lock:
                echo(
                    f"object lock: every object is retained {config.object_lock.days} days "
                    f"({config.object_lock.mode} mode); keep it locked with "
                    "`bbackup locks extend` (docs/immutability.md)"
                )
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


def parse_object_lock(duration: str | None, mode: str) -> ObjectLockSetting | None:
    """`--object-lock DURATION --lock-mode MODE` as a setting; None without a duration.
    Retention is set in whole days (S3 keeps it to the second, but every store's rules and
    bills count days)."""
    if mode.lower() not in LOCK_MODES:
        raise UsageError(f"--lock-mode {mode!r}: use governance or compliance")
    if duration is None:
        return None
    try:
        span = parse_duration(duration)
    except ValueError as exc:
        raise UsageError(f"--object-lock: {exc}") from None
    if span.hours or span.minutes or span.seconds:
        raise UsageError(f"--object-lock {duration!r}: give whole days, e.g. 30d, 6w or 1y")
    days = span.years * 365 + span.months * 30 + span.weeks * 7 + span.days
    if days < 1:
        raise UsageError(f"--object-lock {duration!r}: retain objects for at least 1d")
    return ObjectLockSetting(mode.lower(), days)


async def prepare_locked_bucket(stack: StorageStack) -> None:
    """Create the bucket with object lock (and versioning) if it is missing, or check that
    the existing one has both: object lock cannot be added to a bucket by bbackup."""
    assert stack.versions is not None
    state = await stack.versions.create_locked_bucket()
    if not state.object_lock or not state.versioned:
        raise BbackupError(
            f"bucket {stack.url.bucket!r} has no object lock"
            f"{'' if state.versioned else ' and no versioning'}: create the repository in "
            "a new bucket (init creates it with object lock), or enable both on this one "
            "first (infra/ Terraform: object_lock = true)"
        )
