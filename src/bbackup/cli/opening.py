"""Opening the repository a command names: the storage stack, the password, the cache,
and the one `asyncio.run` that drives a command's work."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bbackup.cache_paths import cache_directory, unlock_hint
from bbackup.cli.options import GlobalOptions
from bbackup.cli.output import warn, warn_event
from bbackup.cli.password import resolve_password
from bbackup.errors import RepositoryNotFound, UsageError
from bbackup.repository import Repository, open_repository
from bbackup.storage import StorageStack, open_storage

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """The only asyncio.run in bbackup."""
    return asyncio.run(coro)


async def open_repo(
    opts: GlobalOptions, stack: StorageStack, *, load_index: bool = True
) -> Repository:
    password = resolve_password(
        opts.password_file,
        opts.password_command,
        variable=opts.password_variable,
        prompt=opts.password_prompt,
    )
    return await open_repository(
        stack,
        password,
        use_cache=not opts.no_cache,
        cache_root=Path(opts.cache_dir) if opts.cache_dir else None,
        load_index=load_index,
        remember_key=key_hint(opts, stack),
        on_damage=lambda line: warn_event(f"warning: {line}", opts.json),
        on_damaged_key=lambda message: warn(f"warning: {message}"),
    )


def key_hint(opts: GlobalOptions, stack: StorageStack) -> Path | None:
    """Where the cache keeps a copy of the key file that opens a remote repository, from
    which the next command starts deriving the key while it loads (cli/early.py); None
    for a local repository (its key files are read directly) or without the cache."""
    if opts.no_cache or not opts.repo or not stack.profile.remote:
        return None
    return Path(unlock_hint(cache_directory(opts.cache_dir), opts.repo))


def open_stack(opts: GlobalOptions) -> StorageStack:
    """The storage stack of the repository the options name."""
    if not opts.repo:
        raise UsageError("no repository given: pass --repo or set BBACKUP_REPOSITORY")
    stack = open_storage(opts.repo, opts.storage_options())
    if stack.url.scheme == "local" and os.path.isfile(stack.url.path):
        raise RepositoryNotFound(f"not a repository: {stack.url.path} is a file")
    return stack


def with_repo(
    opts: GlobalOptions, work: Callable[[Repository], Awaitable[T]], *, load_index: bool = True
) -> T:
    """Open the repository, run `work`, and close the storage whatever happens."""
    stack = open_stack(opts)

    async def main() -> T:
        try:
            repo = await open_repo(opts, stack, load_index=load_index)
            return await work(repo)
        finally:
            await stack.storage.aclose()

    return run_async(main())
