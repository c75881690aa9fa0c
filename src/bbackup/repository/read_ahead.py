"""Reading a directory of documents ahead: its listing (and then every document in it),
started while the repository opens (the listing while the key is derived, the documents
beside the index) for a reader later in the same command, so that on a remote store they
no longer wait for each other in turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bbackup.storage import Storage


def start_listing(storage: Storage, prefix: str) -> asyncio.Task[list[str]]:
    """The names under `prefix`, being listed."""

    async def listing() -> list[str]:
        return [info.name async for info in storage.list(prefix)]

    task = asyncio.ensure_future(listing())
    task.add_done_callback(_retrieve)
    return task


def listed(names: list[str]) -> asyncio.Task[list[str]]:
    """A listing that another listing already answered, in the form `start_listing` gives."""

    async def given() -> list[str]:
        return names

    return asyncio.ensure_future(given())


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Fetch a finished task's error so an unused read ahead that failed stays quiet: its
    reader, if any, meets the same error when it awaits it."""
    if not task.cancelled():
        task.exception()


class DocumentReadAhead:
    """The listing of `prefix` (`listing`, else one started now) and, with `documents`, a
    read of each document it names, under way. The listing answers one `take_listing()`;
    each read answers one `take_read(name)`."""

    def __init__(
        self,
        storage: Storage,
        prefix: str,
        *,
        listing: asyncio.Task[list[str]] | None = None,
        documents: bool = True,
    ) -> None:
        self.prefix = prefix
        self._storage = storage
        self._reads: dict[str, asyncio.Task[bytes]] = {}
        names = listing if listing is not None else start_listing(storage, prefix)
        self._listing: asyncio.Task[list[str]] | None = names
        if documents:
            self._listing = asyncio.ensure_future(self._read_listed(names))
            self._listing.add_done_callback(_retrieve)

    async def _read_listed(self, listing: asyncio.Task[list[str]]) -> list[str]:
        names = await listing
        for name in names:
            read = asyncio.ensure_future(self._storage.get(name))
            read.add_done_callback(_retrieve)
            self._reads[name] = read
        return names

    def take_listing(self) -> asyncio.Task[list[str]] | None:
        """The listing, once; None after that (a second listing is a fresh one)."""
        listing, self._listing = self._listing, None
        return listing

    def take_read(self, name: str) -> asyncio.Task[bytes] | None:
        return self._reads.pop(name, None)

    async def aclose(self) -> None:
        """Stop whatever is still under way."""
        tasks: list[asyncio.Future[Any]] = list(self._reads.values())
        if self._listing is not None:
            tasks.append(self._listing)
        self._reads.clear()
        self._listing = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
