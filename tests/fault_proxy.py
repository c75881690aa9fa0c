"""A fault-injecting HTTP proxy for tests: relays requests from 127.0.0.1 (a random port)
to an S3 endpoint such as moto and, for chosen requests or at seeded random rates, answers
503 SlowDown or 500, resets the connection in the middle of a request or an answer,
truncates an answer's body, stalls, ignores `Expect: 100-continue`, adds latency, or takes
an upload slowly.

Requests and answers are stored and forwarded whole (HTTP/1.1, bodies framed by
Content-Length; answers may also be chunked), one upstream connection per client
connection, so each fault lands at a precise point of one exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


class Fault(enum.Enum):
    """What the proxy does to one request instead of relaying it faithfully."""

    #: Answer 503 SlowDown (S3's throttling) without asking the store.
    SLOWDOWN = "503 SlowDown"
    #: Answer 500 InternalError without asking the store.
    INTERNAL_ERROR = "500 InternalError"
    #: Take half the request body (none for a request without one), then reset.
    RESET_REQUEST = "reset mid-request"
    #: Relay the request, send half the store's answer, then reset.
    RESET_RESPONSE = "reset mid-response"
    #: Relay the request, send the answer's headers and half its body, then close cleanly.
    TRUNCATE = "truncated body"
    #: Take the request's headers, then read nothing more and never answer.
    STALL = "stall"
    #: Relay the request, send the answer's headers and half its body, then nothing more.
    STALL_BODY = "stall mid-body"
    #: Never answer `Expect: 100-continue`: wait for the body, as proxies that ignore the
    #: header do (a client that waits for the 100 first waits forever).
    IGNORE_EXPECT = "ignore Expect"
    #: Hold the request, and then its answer, `latency` seconds each.
    LATENCY = "latency"
    #: Take the request body at `throttle` bytes a second (a slow uplink), then relay.
    THROTTLE = "throttle"


#: The faults that need an answer with a body to happen at all.
_BODY_FAULTS = (Fault.TRUNCATE, Fault.STALL_BODY)

_ERRORS = {
    Fault.SLOWDOWN: (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    Fault.INTERNAL_ERROR: (500, "Internal Server Error", "InternalError", "We hit a snag."),
}


@dataclass
class _Rule:
    fault: Fault
    method: str | None
    path: str | None
    #: How many more matching requests get the fault; None: all of them.
    remaining: int | None

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.remaining is None or self.remaining > 0)
            and (self.method is None or self.method == method)
            and (self.path is None or self.path in path)
        )


@dataclass
class _Request:
    method: str
    target: str
    head: bytes
    length: int
    expects_continue: bool


@dataclass
class _Answer:
    status: int
    head: bytes
    body: bytes
    #: The store closes its connection after this answer (moto closes after each one).
    upstream_closes: bool
    #: The client's connection must close too (an answer framed by the end of the stream).
    closes: bool


class FaultProxy:
    """The proxy, on its own event loop in a daemon thread while inside `with`.

    `inject` picks requests for a fault by method and path; `rates` (each up to 0.1 in
    the standing suite) picks the others at random from `random.Random(seed)`.
    `injected` counts the faults that happened, `requests` the requests by method,
    `connections` the client connections, `expect_continue` the requests that asked for
    `100 Continue`.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rates: Mapping[Fault, float] | None = None,
        seed: int = 0,
        latency: float = 0.05,
        throttle: int = 1 << 20,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rates = dict(rates or {})
        self.latency = latency
        self.throttle = throttle
        self.injected: Counter[Fault] = Counter()
        self.requests: Counter[str] = Counter()
        self.expect_continue = 0
        self.connections = 0
        self.port = 0
        self._random = random.Random(seed)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Give `fault` to the next `times` requests (None: every one) whose method is
        `method` and whose path contains `path`; earlier rules win."""
        with self._lock:
            self._rules.append(_Rule(fault, method, path, times))

    # -- lifetime --------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or not self.port:
            raise RuntimeError("the fault proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            # Stalled exchanges end on their own once stopping is set; a connection still
            # waiting for its client's next request is cut.
            _done, pending = (
                await asyncio.wait(self._handlers, timeout=2) if self._handlers else ((), ())
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await server.wait_closed()

    # -- one client connection -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        with self._lock:
            self.connections += 1
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                fault = self._choose(request)
                if request.expects_continue:
                    with self._lock:
                        self.expect_continue += 1
                    if fault is not Fault.IGNORE_EXPECT:
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if fault is Fault.STALL:
                    self._count(fault)
                    await self._forever()
                if fault is Fault.RESET_REQUEST:
                    self._count(fault)
                    await reader.readexactly(request.length // 2)
                    _reset(writer)
                    return
                if fault is Fault.THROTTLE:
                    self._count(fault)
                    _shrink_receive_buffer(writer)
                    body = await self._read_slowly(reader, request.length)
                else:
                    body = await reader.readexactly(request.length)
                if fault is Fault.IGNORE_EXPECT and request.expects_continue:
                    self._count(fault)  # the body came without a 100: the client did not wait
                if fault in _ERRORS:
                    self._count(fault)
                    writer.write(_error_answer(fault, request.method))
                    await writer.drain()
                    return
                if fault is Fault.LATENCY:
                    self._count(fault)
                    await asyncio.sleep(self.latency)
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                upstream[1].write(request.head + body)
                await upstream[1].drain()
                answer = await _read_answer(upstream[0], request.method)
                if fault is Fault.LATENCY:
                    await asyncio.sleep(self.latency)
                if fault in _BODY_FAULTS and answer.body:
                    self._count(fault)
                    writer.write(answer.head + answer.body[: len(answer.body) // 2])
                    await writer.drain()
                    if fault is Fault.STALL_BODY:
                        await self._forever()
                    return
                whole = answer.head + answer.body
                if fault is Fault.RESET_RESPONSE:
                    self._count(fault)
                    writer.write(whole[: len(whole) // 2])
                    await writer.drain()
                    _reset(writer)
                    return
                writer.write(whole)
                await writer.drain()
                if answer.upstream_closes:
                    upstream[1].close()
                    upstream = None
                if answer.closes:
                    return
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            asyncio.CancelledError,  # the proxy stopped; this task is the top of its stack
        ):
            return
        finally:
            self._handlers.discard(task)
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    def _choose(self, request: _Request) -> Fault | None:
        path = urlsplit(request.target).path
        with self._lock:
            self.requests[request.method] += 1
            for rule in self._rules:
                if rule.matches(request.method, path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
            draw = self._random.random()
            for fault, rate in self.rates.items():
                if draw < rate:
                    return fault
                draw -= rate
        return None

    def _count(self, fault: Fault) -> None:
        with self._lock:
            self.injected[fault] += 1

    async def _read_slowly(self, reader: asyncio.StreamReader, length: int) -> bytes:
        piece = max(1, self.throttle // 20)
        body = bytearray()
        while len(body) < length:
            body += await reader.readexactly(min(piece, length - len(body)))
            await asyncio.sleep(0.05)
        return bytes(body)

    async def _forever(self) -> None:
        """Hold the connection, reading and sending nothing, until the proxy stops."""
        assert self._stopping is not None
        await self._stopping.wait()
        raise ConnectionResetError("the proxy stopped")


def _shrink_receive_buffer(writer: asyncio.StreamWriter) -> None:
    """Keep the kernel from taking megabytes of a throttled body ahead of the throttle.

    A slow link holds nothing at the far end: what the sender sees acknowledged has
    arrived. Loopback grows the receive buffer to megabytes instead, which the sender
    sees acknowledged at once and the throttle then takes seconds to read, seconds in
    which the upload looks stalled to the sender.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed between requests
    method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    headers = dict(_headers(head))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ConnectionResetError("chunked request bodies are not supported")
    expects_continue = headers.get("expect", "").lower() == "100-continue"
    # The store is sent the body at once, so it must not be asked for a 100 too.
    kept = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:")]
    return _Request(
        method,
        target,
        b"\r\n".join(kept),
        int(headers.get("content-length", "0") or 0),
        expects_continue,
    )


async def _read_answer(reader: asyncio.StreamReader, method: str) -> _Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(_headers(head))
    framed = True
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        framed = False
    upstream_closes = not framed or headers.get("connection", "").lower() == "close"
    closes = not framed or head.startswith(b"HTTP/1.0")
    if not closes:
        # The client keeps its connection, as it would with a real store; the proxy
        # opens a new one upstream when the store closed its own.
        lines = head.split(b"\r\n")
        head = b"\r\n".join(ln for ln in lines if not ln.lower().startswith(b"connection:"))
    return _Answer(status, head, body, upstream_closes, closes)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body as it came, framing included."""
    raw = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                raw += trailer
            raw += b"\r\n"
            return bytes(raw)
        raw += await reader.readexactly(size + 2)


def _headers(head: bytes) -> Iterator[tuple[str, str]]:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            yield name.strip().lower(), value.strip()


def _error_answer(fault: Fault, method: str) -> bytes:
    status, reason, code, message = _ERRORS[fault]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>fault-proxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset rather than a clean close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
