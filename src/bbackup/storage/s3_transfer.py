"""How S3 requests move their bytes, and the bound on each request: no `Expect:
100-continue`, PUT bodies written one block at a time, and a deadline that moves forward
only while blocks move, so a stalled or trickling store fails the request as `Transient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

if sys.platform == "linux":
    import fcntl
    import termios

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from bbackup.errors import Transient

#: The unit of progress: a request must move one block (or finish) in every I/O timeout.
#: At the default 60 s timeout that asks for 4.3 KiB/s per connection, less than a
#: 1 Mbit/s uplink shared by 16 connections gives each.
BLOCK = 256 * 1024

P = ParamSpec("P")
T = TypeVar("T")

_current: ContextVar[TransferDeadline | None] = ContextVar("s3_transfer_deadline", default=None)


class TransferDeadline:
    """Fails one S3 request that moves no block of its bytes for `io_timeout` seconds.

    The deadline starts `io_timeout` after the request (connection, request headers and
    the first block or the answer's headers must fit in it) and moves to `io_timeout` from
    now whenever another block is sent or received or the answer's headers arrive. A
    store that stops reading the upload, never answers, or stops (or trickles) in the
    middle of a body therefore fails the request within `io_timeout` of its last
    progress, as `Transient`, and the retry wrapper decides what happens next.
    """

    def __init__(self, io_timeout: float, describe: str) -> None:
        self.io_timeout = io_timeout
        #: "<object>: S3 <operation> at <endpoint>", for the message when it expires.
        self.describe = describe
        self._timeout: asyncio.Timeout | None = None
        self._since_progress = 0
        self._watcher: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TransferDeadline]:
        """Run the request inside `async with deadline.running():`."""
        loop = asyncio.get_running_loop()
        token = _current.set(self)
        try:
            async with asyncio.timeout_at(loop.time() + self.io_timeout) as timeout:
                self._timeout = timeout
                yield self
        except TimeoutError as exc:
            if self._timeout is None or not self._timeout.expired():
                raise  # somebody else's timeout
            raise Transient(
                f"{self.describe} stalled: no data moved for {self.io_timeout:g} s"
            ) from exc
        finally:
            self._timeout = None
            _current.reset(token)
            if self._watcher is not None:
                self._watcher.cancel()

    def moved(self, nbytes: int) -> None:
        """Count `nbytes` sent or received; each whole block moves the deadline."""
        self._since_progress += nbytes
        if self._since_progress >= BLOCK:
            self._since_progress %= BLOCK
            self.progressed()

    def progressed(self) -> None:
        """The request reached a new phase (its answer's headers arrived, say)."""
        timeout = self._timeout
        # The upload runs in aiohttp's own task and may report after the request ended.
        if timeout is not None and not timeout.expired():
            timeout.reschedule(asyncio.get_running_loop().time() + self.io_timeout)

    def watch_unsent(self, transport: asyncio.BaseTransport | None) -> None:
        """Count the bytes the kernel still holds for the socket as they leave it, until
        none are left or the request ends.

        This runs beside aiohttp rather than in its body writer: a writer still running
        when the answer is in makes aiohttp close the connection instead of reusing it.
        """
        if self._watcher is not None:
            self._watcher.cancel()
        self._watcher = None
        if self._timeout is not None and transport is not None and _unsent(transport):
            self._watcher = asyncio.create_task(self._watch_unsent(transport))

    async def _watch_unsent(self, transport: asyncio.BaseTransport) -> None:
        unsent = _unsent(transport)
        pause = 0.01
        while unsent and not transport.is_closing():
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.5)
            now = _unsent(transport)
            if now is None:
                return
            if now < unsent:
                self.moved(unsent - now)
            unsent = now


class BufferBody:
    """A PUT body over a buffer that botocore does not take as it is (a memoryview of a
    pack's memory map): a read-only, seekable file-like object, so the pack goes out
    without being copied. botocore only measures it and, over plain HTTP, reads it in
    slices to sign it; `prepare_request` then sends the buffer itself, in blocks.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data).cast("B")
        self._position = 0

    def __len__(self) -> int:
        return len(self.view)

    def read(self, size: int = -1) -> bytes:
        start = self._position
        end = len(self.view) if size is None or size < 0 else min(len(self.view), start + size)
        self._position = max(start, end)
        return bytes(self.view[start:end])

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self.view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position


class BlockPayload(Payload):
    """A PUT body written one BLOCK at a time, each block reported to a deadline.

    aiohttp writes a bytes body with one `transport.write` and then waits for the whole
    buffer to drain, with no timeout and nothing to observe meanwhile: a store that stops
    reading would hold the request forever. Written in blocks, every block waits for the
    socket to take it, and each block taken is progress. The socket's own buffer can hold
    megabytes, so after the last block the deadline watches them leave.
    """

    _autoclose = True  # bytes in memory: nothing to close

    def __init__(self, value: bytes | memoryview, deadline: TransferDeadline) -> None:
        super().__init__(value, content_type="application/octet-stream")
        self._size = len(value)
        self._deadline = deadline

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        transport: asyncio.Transport | None = getattr(writer, "transport", None)
        try:
            for start in range(0, len(view), BLOCK):
                block = view[start : start + BLOCK]
                await writer.write(block)
                self._deadline.moved(len(block))
        except asyncio.CancelledError:
            # A half-sent body spoils the connection, and closing it would wait for the
            # stalled peer to take what is buffered: drop it at once.
            if transport is not None:
                transport.abort()
            raise
        self._deadline.watch_unsent(transport)


def _unsent(transport: asyncio.BaseTransport | None) -> int | None:
    """Bytes written to the socket that the peer has not acknowledged yet (Linux
    SIOCOUTQ), or None where that cannot be known."""
    if sys.platform != "linux" or transport is None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    except OSError:
        return None
    return int(struct.unpack("i", raw)[0])


def prepare_request(request: Any, **_: Any) -> None:
    """botocore `before-send.s3` handler: drop `Expect`, send PUT bodies in blocks.

    botocore asks for `Expect: 100-continue` on every PUT body and aiohttp then waits for the
    `100 Continue` with no timeout at all: a proxy or store that never sends it (many
    don't) hangs the backup forever. Early rejection would save sending one pack that
    the store refuses, which it rarely does (the SHA-256 checksum is checked only once
    the body is in), so the body is simply sent at once. The header is not signed, so
    removing it after signing is safe.
    """
    request.headers.pop("Expect", None)
    deadline = _current.get()
    body = request.body
    if isinstance(body, io.BytesIO):  # botocore turns a bytes Body into one
        # getvalue() shares the bytes a BytesIO was made from: no copy.
        body = body.getvalue()[body.tell() :] if body.tell() else body.getvalue()
    elif isinstance(body, BufferBody):
        body = body.view[body.tell() :]
        # aiohttp takes bytes, not this object: an empty body, or one outside a deadline
        # (every PUT runs under one, `bounded`), is handed over as bytes.
        if deadline is None or not body:
            request.body = bytes(body)
    if deadline is not None and isinstance(body, bytes | memoryview) and body:
        request.body = BlockPayload(body, deadline)
        # aiohttp's per-read timeout would start once the last block is in the socket's
        # buffer, which a slow link may take longer than the I/O timeout to drain; the
        # deadline, which watches it drain, bounds this request instead (0: no timer).
        if request.context is not None:
            request.context["read_timeout"] = 0


async def read_body(body: Any) -> bytes:
    """Read a streamed answer's body in blocks, each reported to the request's deadline."""
    deadline = _current.get()
    if deadline is not None:
        deadline.progressed()  # the answer's headers are in
    blocks = []
    while block := await body.read(BLOCK):
        blocks.append(block)
        if deadline is not None:
            deadline.moved(len(block))
    return b"".join(blocks)


class _Endpoint(Protocol):
    @property
    def io_timeout(self) -> float: ...

    @property
    def endpoint(self) -> str: ...

    async def _get_client(self) -> Any: ...


S = TypeVar("S", bound=_Endpoint)


def bounded(
    operation: str,
) -> Callable[
    [Callable[Concatenate[S, str, P], Awaitable[T]]],
    Callable[Concatenate[S, str, P], Coroutine[Any, Any, T]],
]:
    """Run a storage call on object `name` (its first argument) under a TransferDeadline."""

    def decorate(
        method: Callable[Concatenate[S, str, P], Awaitable[T]],
    ) -> Callable[Concatenate[S, str, P], Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def run(self: S, name: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
            # Opening the client (reading botocore's service model, finding credentials)
            # moves no bytes: the deadline starts after it.
            await self._get_client()
            describe = f"{name}: S3 {operation} at {self.endpoint}"
            async with TransferDeadline(self.io_timeout, describe).running():
                return await method(self, name, *args, **kwargs)

        return run

    return decorate
