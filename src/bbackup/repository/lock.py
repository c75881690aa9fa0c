"""Repository locks: small documents under locks/ that say who is working on the repository.

Shared locks (backup, restore, check) coexist; an exclusive lock excludes everything.
A lock not refreshed for STALE_AFTER seconds belongs to a dead process and is ignored
(and removed by `unlock`). Lock documents are encrypted like every other document; an
object under locks/ that does not open or parse as one is named once, ignored, and removed
by `unlock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import socket
import time
from dataclasses import dataclass, field

import msgpack

from bbackup.errors import IntegrityError, NotFound, RepositoryLocked
from bbackup.repository.documents import DamagedDocument
from bbackup.repository.repository import current_user
from bbackup.repository.roles import DocumentStore

LOCK_KIND = "lock"
REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    """What one lock document says."""

    name: str
    host: str
    pid: int
    user: str
    time: float
    exclusive: bool
    purpose: str
    #: When the holder started (epoch seconds); `time` is when it last refreshed.
    started: float = 0.0

    @property
    def stale(self) -> bool:
        if time.time() - self.time > STALE_AFTER:
            return True
        # A lock of a process on this host that no longer exists is stale at once.
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = int(time.time() - self.time)
        return f"{kind} lock by {self.user}@{self.host} pid {self.pid} ({self.purpose}, {age}s ago)"


async def list_locks(documents: DocumentStore, *, skip: str | None = None) -> list[LockInfo]:
    """Every readable lock; `skip` (our own lock's name) is not even downloaded. An object
    that is not a readable lock never blocks anyone: it is named once, as damage, and left
    out."""
    locks, _ = await read_locks(documents, skip=skip)
    return locks


async def read_locks(
    documents: DocumentStore, *, skip: str | None = None
) -> tuple[list[LockInfo], dict[str, str]]:
    """(every readable lock, {name: what is wrong} for every object that is not one)."""
    locks = []
    unreadable: dict[str, str] = {}
    for name in await documents.list_names("locks/"):
        if name == skip:
            continue
        try:
            payload = await documents.load_document(name, LOCK_KIND)
        except NotFound:
            continue  # removed meanwhile
        except DamagedDocument as exc:
            unreadable[name] = exc.problem  # load_document has named it
            continue
        except IntegrityError as exc:
            unreadable[name] = str(exc)
            documents.note_damage(name, unreadable[name])
            continue
        try:
            locks.append(parse_lock(name, payload))
        except IntegrityError as exc:
            problem = f"not a lock document ({exc.__cause__ or exc})"
            unreadable[name] = problem
            documents.note_damage(name, problem)
    return locks, unreadable


def parse_lock(name: str, payload: bytes) -> LockInfo:
    """The lock document stored as `name`, from its payload; IntegrityError if malformed."""
    try:
        raw = msgpack.unpackb(payload)
        if type(raw) is not dict:
            raise TypeError("a lock is a map")
        lock = LockInfo(
            name,
            raw["host"],
            raw["pid"],
            raw["user"],
            raw["time"],
            raw["exclusive"],
            raw.get("purpose", ""),
            raw["started"] if "started" in raw else raw["time"],
        )
        texts, times = (lock.host, lock.user, lock.purpose), (lock.time, lock.started)
        if not all(type(t) is str for t in texts) or type(lock.exclusive) is not bool:
            raise TypeError("a lock's host, user and purpose are text")
        if type(lock.pid) is not int or not 0 < lock.pid < 2**31:  # os.kill takes a C int
            raise ValueError("a lock's pid is a positive 32-bit integer")
        if not all(type(t) in (int, float) and math.isfinite(t) for t in times):
            raise ValueError("a lock's times are finite numbers")
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise IntegrityError(f"lock {name}: malformed") from exc
    return dataclasses.replace(lock, time=float(lock.time), started=float(lock.started))


class RepositoryLock:
    """An async context manager holding a lock and refreshing it in the background."""

    def __init__(self, documents: DocumentStore, *, exclusive: bool, purpose: str) -> None:
        self.documents = documents
        self.exclusive = exclusive
        self.purpose = purpose
        self.name: str | None = None
        self.started = time.time()
        self._refresher: asyncio.Task[None] | None = None
        #: The other readable locks, as last listed (on entry: after ours was stored).
        self.seen_locks: list[LockInfo] = []

    async def other_locks(self) -> list[LockInfo]:
        """Every readable lock but ours."""
        return await list_locks(self.documents, skip=self.name)

    def _document(self) -> bytes:
        user = current_user() or str(os.getuid())
        packed: bytes = msgpack.packb(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "user": user,
                "time": time.time(),
                "exclusive": self.exclusive,
                "purpose": self.purpose,
                "started": self.started,
            }
        )
        return packed

    async def _write(self) -> None:
        old = self.name
        self.name = await self.documents.save_document("locks", LOCK_KIND, self._document())
        if old:
            await self.documents.delete_document(old)

    async def __aenter__(self) -> RepositoryLock:
        await self._check_conflicts()
        await self._write()
        # Two processes may have checked at the same moment; look again after writing.
        try:
            await self._check_conflicts()
        except RepositoryLocked:
            await self._release()
            raise
        self._refresher = asyncio.create_task(self._refresh_loop())
        return self

    async def _check_conflicts(self) -> None:
        self.seen_locks = await self.other_locks()
        for lock in self.seen_locks:
            if lock.stale:
                continue
            if self.exclusive or lock.exclusive:
                raise RepositoryLocked(f"repository is locked: {lock.describe()}")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            with contextlib.suppress(Exception):
                await self._write()

    async def _release(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self.name:
            with contextlib.suppress(Exception):
                await self.documents.delete_document(self.name)
            self.name = None

    async def __aexit__(self, *exc: object) -> None:
        await self._release()


@dataclass(slots=True)
class RemovedLocks:
    """What `remove_stale_locks` deleted."""

    locks: list[str] = field(default_factory=list)
    #: Objects under locks/ that were not readable locks: name → what was wrong.
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.locks) + len(self.unreadable)


async def remove_stale_locks(documents: DocumentStore, *, all_locks: bool = False) -> RemovedLocks:
    """Delete stale locks (or every lock with `all_locks`) and every object under locks/
    that is not a readable lock (it can hold nobody's place)."""
    locks, unreadable = await read_locks(documents)
    removed = RemovedLocks(unreadable=unreadable)
    for lock in locks:
        if all_locks or lock.stale:
            await documents.delete_document(lock.name)
            removed.locks.append(lock.name)
    for name in unreadable:
        await documents.delete_document(name)
    return removed
