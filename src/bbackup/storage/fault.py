"""A fault-injecting wrapper for tests: failures, truncated reads, lost responses, delays.

It lives beside the real backends (as kopia's blobtesting/faulty.go does) so that failure
paths are tested as easily as success; a seeded random generator makes every run repeat.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable

from bbackup.errors import StorageError, Transient
from bbackup.storage.base import ObjectInfo, Storage, StorageWrapper, list_inner


class FaultyStorage(StorageWrapper):
    """Injects faults into calls on the wrapped storage, deterministically from `seed`.

    - `fail_rate`: the call raises `error` (default `Transient`) before reaching the store.
    - `truncate_rate`: a `get` raises `Transient("truncated body")` after reading, as a real
      backend does when the body is shorter than its Content-Length; it never returns
      short data.
    - `fail_after_put_rate`: the object is stored, then `Transient` is raised, as when the
      response is lost; a retry stores the same content again.
    - `delay`: each call first sleeps a random time up to this many seconds.
    - `only`: when given, only names (or listing prefixes) it accepts are affected.

    A listing fault is raised part-way through, after some objects were yielded, so
    callers that treat a broken listing as complete are caught. `injected` counts the
    faults by kind; the rates are plain attributes and may be changed between calls.
    """

    def __init__(
        self,
        inner: Storage,
        *,
        seed: int = 0,
        fail_rate: float = 0.0,
        truncate_rate: float = 0.0,
        fail_after_put_rate: float = 0.0,
        delay: float = 0.0,
        only: Callable[[str], bool] | None = None,
        error: Callable[[str], StorageError] = Transient,
    ) -> None:
        super().__init__(inner)
        self.random = random.Random(seed)
        self.fail_rate = fail_rate
        self.truncate_rate = truncate_rate
        self.fail_after_put_rate = fail_after_put_rate
        self.delay = delay
        self.only = only
        self.error = error
        self.injected: Counter[str] = Counter()

    def _affects(self, name: str) -> bool:
        return self.only is None or self.only(name)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self.random.random() < rate

    async def _before(self, operation: str, name: str) -> None:
        if not self._affects(name):
            return
        if self.delay > 0:
            await asyncio.sleep(self.random.uniform(0, self.delay))
        if self._roll(self.fail_rate):
            self.injected["fail"] += 1
            raise self.error(f"injected fault: {operation} {name} failed")

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        await self._before("put", name)
        await self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)
        if self._affects(name) and self._roll(self.fail_after_put_rate):
            self.injected["fail_after_put"] += 1
            raise Transient(f"injected fault: put {name} stored, response lost")

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        await self._before("get", name)
        data = await self.inner.get(name, offset, length)
        if self._affects(name) and self._roll(self.truncate_rate):
            self.injected["truncate"] += 1
            raise Transient(f"injected fault: get {name}: truncated body")
        return data

    async def stat(self, name: str) -> ObjectInfo:
        await self._before("stat", name)
        return await self.inner.stat(name)

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        fail_at: int | None = None
        if self._affects(prefix):
            if self.delay > 0:
                await asyncio.sleep(self.random.uniform(0, self.delay))
            if self._roll(self.fail_rate):
                fail_at = self.random.randrange(8)
        seen = 0
        async for info in list_inner(self.inner, prefix, after, before):
            if seen == fail_at:
                break
            seen += 1
            yield info
        if fail_at is not None:
            self.injected["fail"] += 1
            raise self.error(f"injected fault: listing {prefix} broke after {seen} objects")

    async def delete(self, name: str) -> None:
        await self._before("delete", name)
        await self.inner.delete(name)

    async def restore(self, name: str, days: int, tier: str) -> None:
        await self._before("restore", name)
        await self.inner.restore(name, days, tier)
