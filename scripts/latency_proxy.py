"""A small asyncio TCP proxy for benchmarks: adds latency and counts S3 requests.

    python scripts/latency_proxy.py --upstream 127.0.0.1:5000 [--latency-ms 20] [--port 0]
        prints "listening on 127.0.0.1:PORT", relays until SIGINT/SIGTERM, then prints the
        request counts

Every byte a client sends is relayed to the upstream (an S3 endpoint such as moto) and
every byte of the answer back, each direction delayed by `latency_ms` (a new connection
also waits one round trip, like a TCP handshake). The delay is applied per chunk with a
timestamp, so it adds latency without capping throughput.

The client → server stream is parsed as HTTP/1.1 (request line, headers, a body framed by
Content-Length or chunked encoding; keep-alive connections carry many requests), and each
request is counted by S3 operation: PUT, GET, HEAD, LIST (GET on a bucket), DELETE (also
POST ?delete) and POST (other posts, e.g. multipart upload). Path-style addressing is
assumed (http://host/bucket/key), which is what bbackup and restic use for an IP address.
Used by scripts/bench.py so that bbackup and restic are counted the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

READ_SIZE = 256 * 1024
#: Give up parsing (and stop counting) a connection whose headers exceed this.
MAX_HEAD = 256 * 1024


def classify(method: str, target: str) -> str:
    """The S3 operation class of one request (path-style addressing)."""
    parts = urlsplit(target)
    path = parts.path.lstrip("/")
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = "/" in path and path.split("/", 1)[1] != ""
    method = method.upper()
    if method == "GET":
        if has_key:
            return "GET"
        if "location" in query or "versioning" in query or "policy" in query:
            return "GET"  # bucket metadata (restic asks for the bucket's location)
        return "LIST"
    if method == "POST":
        return "DELETE" if "delete" in query else "POST"
    if method in ("PUT", "HEAD", "DELETE"):
        return method
    return method


class RequestStats:
    """Thread-safe request counters, shared by all connections of one proxy."""

    KEYS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: Counter[str] = Counter()
        self.detail: Counter[str] = Counter()
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        #: (time.monotonic(), method, target) of every request since the last reset: the
        #: serial chain of round trips a command waits for (scripts/s3_timeline.py).
        self.trace: list[tuple[float, str, str]] = []

    def count(self, method: str, target: str) -> None:
        op = classify(method, target)
        with self._lock:
            self.ops[op] += 1
            self.detail[f"{method.upper()} {op}"] += 1
            self.trace.append((time.monotonic(), method.upper(), target))

    def add_bytes(self, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.bytes_up += up
            self.bytes_down += down

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            out = {key: self.ops.get(key, 0) for key in self.KEYS}
            for key, value in self.ops.items():
                out.setdefault(key, value)
            out["total"] = sum(self.ops.values())
            out["bytes_up"] = self.bytes_up
            out["bytes_down"] = self.bytes_down
            out["connections"] = self.connections
            return out

    def reset(self) -> None:
        with self._lock:
            self.ops.clear()
            self.detail.clear()
            self.bytes_up = self.bytes_down = self.connections = 0
            self.trace = []


class HttpRequestParser:
    """Incremental HTTP/1.1 request framing: calls `on_request(method, target)` per request."""

    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0  # body bytes (state "body") or chunk bytes + CRLF ("chunk")
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buf += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume what the buffer allows; False when more input is needed."""
        if self.state in ("body", "chunk"):
            if not self.remaining:
                self.state = "head" if self.state == "body" else "chunk-size"
                return True
            take = min(self.remaining, len(self.buf))
            if not take:
                return False
            del self.buf[:take]
            self.remaining -= take
            return True
        if self.state == "chunk-size":
            end = self.buf.find(b"\r\n")
            if end < 0:
                return False
            size_text = bytes(self.buf[:end]).split(b";", 1)[0].strip()
            del self.buf[: end + 2]
            try:
                size = int(size_text, 16)
            except ValueError:
                self.broken = True
                return False
            if size == 0:
                self.state = "trailer"
            else:
                self.state, self.remaining = "chunk", size + 2  # data and its CRLF
            return True
        if self.state == "trailer":
            end = self.buf.find(b"\r\n")
            if end < 0:
                return False
            del self.buf[: end + 2]
            if end == 0:
                self.state = "head"
            return True
        # state "head"
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.broken = True
            return False
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        request = lines[0].split(" ")
        if len(request) < 2:
            self.broken = True
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.stats.count(request[0], request[1])
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = "chunk-size"
        else:
            self.remaining = int(headers.get("content-length", "0") or 0)
            self.state = "body"
        return True


class LatencyProxy:
    """Relays 127.0.0.1:port ↔ upstream with added latency, counting S3 requests.

    `start()` runs the proxy on its own event loop in a daemon thread and returns the
    port; `stop()` closes it. `stats` holds the counters (reset between phases).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency_ms: float = 0.0,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = max(0.0, latency_ms) / 1000.0
        self.listen = (listen_host, listen_port)
        self.stats = RequestStats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.port}"

    # ---- in a thread ---------------------------------------------------------------------

    def start(self) -> int:
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self.port:
            raise RuntimeError("latency proxy did not start")
        return self.port

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2)
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        self._thread.join(10)
        self._loop = None

    # ---- in the loop ---------------------------------------------------------------------

    async def open(self) -> None:
        """Listen in the current event loop (for the command-line use); sets `port`."""
        await self._open()

    async def serve_forever(self) -> None:
        """Serve in the current event loop after `open`."""
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self.stats._lock:
            self.stats.connections += 1
        if self.delay:
            await asyncio.sleep(2 * self.delay)  # the handshake's round trip
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        parser = HttpRequestParser(self.stats)
        tasks = [
            asyncio.create_task(self._pump(client_r, up_w, parser)),
            asyncio.create_task(self._pump(up_r, client_w, None)),
        ]
        try:
            # When one side closes, let the other finish sending what it has, then close.
            _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending, timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            for w in (client_w, up_w):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: HttpRequestParser | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] | None = None
        sender: asyncio.Task[None] | None = None
        if self.delay:
            queue = asyncio.Queue()
            sender = asyncio.create_task(self._send_delayed(queue, writer))
        try:
            while True:
                try:
                    data = await reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    data = b""
                if parser is not None:
                    if data:
                        parser.feed(data)
                    self.stats.add_bytes(up=len(data))
                else:
                    self.stats.add_bytes(down=len(data))
                if queue is not None:
                    await queue.put((loop.time() + self.delay, data))
                    if not data:
                        break
                    continue
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            if sender is not None:
                await sender
            elif writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            if sender is not None and not sender.done():
                sender.cancel()

    @staticmethod
    async def _send_delayed(
        queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added per direction")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    proxy = LatencyProxy(host or "127.0.0.1", int(port), latency_ms=args.latency_ms)
    proxy.listen = ("127.0.0.1", args.port)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await proxy.open()
        print(f"listening on 127.0.0.1:{proxy.port}", flush=True)
        task = asyncio.create_task(proxy.serve_forever())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    print(proxy.stats.snapshot(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
