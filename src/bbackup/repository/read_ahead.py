"""Reading a directory of documents ahead: its listing and then every document in it,
started while the repository opens (beside the index) for a reader later in the same
command, so that on a remote store the two no longer wait for each other in turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bbackup.storage import Storage


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Fetch a finished task's error so an unused read ahead that failed stays quiet: its
    reader, if any, meets the same error when it awaits it."""
    if not task.cancelled():
        task.exception()


class DocumentReadAhead:
    """The listing of `prefix` and a read of each document it names, under way. The
    listing answers one `names()`; each read answers one `take_read(name)`."""

    def __init__(self, storage: Storage, prefix: str) -> None:
        self.prefix = prefix
        self._storage = storage
        self._reads: dict[str, asyncio.Task[bytes]] = {}
        self._listing: asyncio.Task[list[str]] | None = asyncio.ensure_future(self._list())
        self._listing.add_done_callback(_retrieve)

    async def _list(self) -> list[str]:
        names = [info.name async for info in self._storage.list(self.prefix)]
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
