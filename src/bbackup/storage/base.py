"""The Storage protocol every backend and wrapper implements, and the ObjectInfo it reports.

Contracts (checked by tests/unit/storage/test_conformance.py for every backend):
- `put` is atomic: a reader sees the whole object or nothing, never a partial one.
  With `if_absent=True` an existing object is left untouched and `put` returns quietly
  (callers only use it for content-addressed names, so the existing object is the same).
- `get` with `offset`/`length` returns exactly that byte range (a range that runs past the
  end returns the bytes up to the end); a missing object raises `NotFound`.
- `list` yields every object under the prefix exactly once, or raises; it never ends early
  and silently.
- `delete` of a missing object is not an error (deletes are idempotent).
- Errors are `bbackup.errors` storage errors: `NotFound`, `Transient`, `Permanent`, `Archived`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a backend knows about one stored object."""

    name: str
    size: int
    mtime: float = 0.0
    storage_class: str = "STANDARD"
    #: None: not archived (or no archive tiers); "ongoing": a restore request is running;
    #: "restored": a temporary readable copy exists.
    restore_state: str | None = None

    @property
    def archived(self) -> bool:
        """True when the object cannot be read until it is restored."""
        return self.storage_class in ARCHIVE_CLASSES and self.restore_state != "restored"


#: Storage classes whose objects cannot be read without a restore request.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def in_span(name: str, after: str, before: str | None) -> bool:
    """Whether `name` sorts after `after` and before `before` (None: no upper bound)."""
    return name > after and (before is None or name < before)


def list_inner(
    inner: Storage, prefix: str, after: str = "", before: str | None = None
) -> AsyncIterator[ObjectInfo]:
    """`inner.list`, called as a wrapper does: a plain listing passes `prefix` alone, so a
    store that lists only by prefix (a test double) still answers it."""
    if after or before is not None:
        return inner.list(prefix, after=after, before=before)
    return inner.list(prefix)


class Storage(Protocol):
    """An object store: flat names with '/' separators, immutable objects."""

    @property
    def location(self) -> str:
        """A human-readable location for messages (URL without credentials)."""
        ...

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None: ...

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...

    async def stat(self, name: str) -> ObjectInfo: ...

    def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        """The objects whose names start with `prefix`, in name order; with `after` and
        `before`, only those whose names sort after `after` and before `before`. On S3 a
        span of neighbouring directories (keys/ and locks/) is one request: the listing
        of their common prefix from `after`, stopped at `before`."""
        ...

    async def delete(self, name: str) -> None: ...

    async def restore(self, name: str, days: int, tier: str) -> None: ...

    async def aclose(self) -> None: ...


class StorageWrapper:
    """Base for decorators: forwards every call to the wrapped storage.

    Subclasses override only what they change, the way restic's backend wrappers embed
    the backend they decorate.
    """

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @property
    def location(self) -> str:
        return self.inner.location

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        await self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return await self.inner.get(name, offset, length)

    async def stat(self, name: str) -> ObjectInfo:
        return await self.inner.stat(name)

    def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        return list_inner(self.inner, prefix, after, before)

    async def delete(self, name: str) -> None:
        await self.inner.delete(name)

    async def restore(self, name: str, days: int, tier: str) -> None:
        await self.inner.restore(name, days, tier)

    async def aclose(self) -> None:
        await self.inner.aclose()
