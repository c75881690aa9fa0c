"""Opening the repository a command names: the storage stack, the password, the cache,
and the one `asyncio.run` that drives a command's work (on the calling thread, or on a
thread of its own for a command whose main thread blocks elsewhere: `mount`)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
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
C = TypeVar("C")

#: The signals that end a long-running command (Ctrl-C, `kill`, a closed terminal).
TERMINATING_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


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


class RepositoryThread:
    """The repository a command names, open on an event loop that runs in a thread of its
    own: for a command whose main thread blocks in foreign code (libfuse's loop, for
    `mount`) while other threads ask the repository for data. `call` runs a coroutine on
    that loop from any thread and waits for its result; leaving the `with` block closes
    the storage and stops the loop."""

    def __init__(self, opts: GlobalOptions, *, load_index: bool = True) -> None:
        self._opts = opts
        self._load_index = load_index
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._repo: Repository | None = None

    @property
    def repo(self) -> Repository:
        assert self._repo is not None, "use RepositoryThread in a with block"
        return self._repo

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the repository's loop and wait for it (never from that loop)."""
        assert self._loop is not None, "use RepositoryThread in a with block"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @contextmanager
    def hold(self, manager: AbstractAsyncContextManager[C]) -> Iterator[C]:
        """Enter an async context manager (a repository lock) on the loop for the length
        of the `with` block; what it starts there (the lock's refresher) runs on the loop."""
        value = self.call(manager.__aenter__())
        try:
            yield value
        finally:
            self.call(manager.__aexit__(None, None, None))

    def __enter__(self) -> RepositoryThread:
        stack = open_stack(self._opts)
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await stack.storage.aclose()

        def run() -> None:
            # Signals are the main thread's to handle; threads the loop starts inherit this.
            signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING_SIGNALS)
            try:
                run_async(main())
            finally:
                ready.set()  # a loop that failed to start must not leave __enter__ waiting

        self._thread = threading.Thread(target=run, name="bbackup-repository", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._repo = self.call(open_repo(self._opts, stack, load_index=self._load_index))
        except BaseException:
            self._shut_down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._shut_down()

    def _shut_down(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join()
