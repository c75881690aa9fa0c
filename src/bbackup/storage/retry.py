"""A wrapper that retries Transient storage errors with exponential backoff and jitter.

Only `Transient` is retried (5xx, throttling, timeouts, stalls, connection resets,
truncated bodies); `NotFound`, `Permanent` and `Archived` fail at once. Every call is
bounded in total time: no attempt starts after `max_elapsed`, and the backend bounds each
attempt (S3: an I/O timeout without progress), so a store that stalls or fails every
request ends the call within `max_elapsed` plus one attempt, not hours later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from bbackup.errors import Transient, Unreachable
from bbackup.storage.base import ObjectInfo, Storage, StorageWrapper, list_inner

T = TypeVar("T")


class _StopWhileNeverReached(stop_base):
    """Stops retrying `Unreachable` after `connect_attempts` if no call ever reached the store."""

    def __init__(self, storage: RetryingStorage) -> None:
        self.storage = storage

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        unreachable = outcome is not None and isinstance(outcome.exception(), Unreachable)
        return (
            unreachable
            and not self.storage.reached
            and retry_state.attempt_number >= self.storage.connect_attempts
        )


class RetryingStorage(StorageWrapper):
    """Retries each call on Transient errors for at most `max_elapsed` seconds."""

    def __init__(
        self,
        inner: Storage,
        *,
        max_elapsed: float = 120.0,
        max_attempts: int = 10,
        initial_wait: float = 0.2,
        max_wait: float = 15.0,
        connect_attempts: int = 6,
    ) -> None:
        super().__init__(inner)
        self.max_elapsed = max_elapsed
        self.max_attempts = max_attempts
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        #: A store never reached in this process is most likely misconfigured or down:
        #: give up after this many attempts (at most ~6 s of back-off) instead of minutes.
        self.connect_attempts = connect_attempts
        #: Set once any call got an answer from the store (even an error answer).
        self.reached = False

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Transient),
            # stop_before_delay: never start a wait that would end past the budget.
            stop=stop_before_delay(self.max_elapsed)
            | stop_after_attempt(self.max_attempts)
            | _StopWhileNeverReached(self),
            wait=wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        result = await fn()
                    except Unreachable:
                        raise
                    except Exception:
                        self.reached = True  # the store answered, if only with an error
                        raise
                    self.reached = True
                    return result
        except RetryError as exc:  # pragma: no cover - reraise=True re-raises the cause
            raise Transient(str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        await self._call(
            lambda: self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)
        )

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return await self._call(lambda: self.inner.get(name, offset, length))

    async def stat(self, name: str) -> ObjectInfo:
        return await self._call(lambda: self.inner.stat(name))

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        # A listing that fails part-way is restarted from the beginning; callers only see
        # a listing once it is complete, never a truncated one.
        async def collect() -> list[ObjectInfo]:
            return [info async for info in list_inner(self.inner, prefix, after, before)]

        for info in await self._call(collect):
            yield info

    async def delete(self, name: str) -> None:
        await self._call(lambda: self.inner.delete(name))

    async def restore(self, name: str, days: int, tier: str) -> None:
        await self._call(lambda: self.inner.restore(name, days, tier))
