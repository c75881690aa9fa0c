"""What the S3 integration tests share besides fixtures: running one repository operation
in-process on its own event loop, reading what the server saw, checking what is left in
the bucket, and the record of a bbackup run against an unreachable endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cli_harness import CliResult

from bbackup.storage import StorageOptions, StorageStack, open_storage
from s3_server import S3Bucket

T = TypeVar("T")
MiB = 1024 * 1024

#: Directories whose objects are named by the SHA-256 of their stored bytes.
CONTENT_ADDRESSED = ("data/", "tree/", "index/", "snapshots/", "keys/")


def run_operation(
    url: str, options: StorageOptions, operation: Callable[[StorageStack], Awaitable[T]]
) -> T:
    """Open a storage stack, run `operation` on it and close it, all in one `asyncio.run`:
    an S3Storage belongs to the event loop it first ran on."""

    async def main() -> T:
        stack = open_storage(url, options)
        try:
            return await operation(stack)
        finally:
            await stack.storage.aclose()

    return asyncio.run(main())


# werkzeug's request line, possibly wrapped in ANSI colour codes for non-200 statuses.
_REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+')


class _RequestLog(logging.Handler):
    def __init__(self, keep_query: bool) -> None:
        super().__init__(logging.INFO)
        self.requests: list[tuple[str, str]] = []
        self.keep_query = keep_query

    def emit(self, record: logging.LogRecord) -> None:
        match = _REQUEST_LINE.search(record.getMessage())
        if match:
            path = match.group(2) if self.keep_query else match.group(2).split("?", 1)[0]
            self.requests.append((match.group(1), path))


@contextlib.contextmanager
def server_requests(*, keep_query: bool = False) -> Iterator[list[tuple[str, str]]]:
    """Collect (method, path) of every request the session's moto server answers meanwhile
    (`keep_query`: the path with its query, which says what a listing listed).

    moto keeps no access log, but its werkzeug request handler logs each request line at
    INFO; tests/s3_server.py sets that logger to WARNING, so it is raised here for a while.
    The handler is added before the level is lowered, so werkzeug never adds its own
    stderr handler.
    """
    logger = logging.getLogger("werkzeug")
    handler = _RequestLog(keep_query)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.requests
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)


def listed_prefixes(requests: list[tuple[str, str]], bucket: S3Bucket) -> list[str]:
    """The prefixes of the listings among `requests` (from `server_requests(keep_query=True)`),
    relative to the bucket."""
    found = []
    for method, path in requests:
        if method == "GET" and path.startswith(f"/{bucket.bucket}?") and "list-type=2" in path:
            query = dict(p.partition("=")[::2] for p in path.partition("?")[2].split("&"))
            found.append(urllib.parse.unquote(query.get("prefix", "")))
    return found


def gets_under(requests: list[tuple[str, str]], bucket: S3Bucket, prefix: str) -> list[str]:
    """Paths of GET requests for objects under `<bucket>/<prefix>` (path-style addressing)."""
    path = f"/{bucket.bucket}/{prefix}"
    return [p for method, p in requests if method == "GET" and p.startswith(path)]


def bucket_objects(bucket: S3Bucket, prefix: str = "") -> list[dict[str, Any]]:
    """Every object's listing entry under the prefix, as the server reports it."""
    paginator = bucket.client.get_paginator("list_objects_v2")
    return [
        entry
        for page in paginator.paginate(Bucket=bucket.bucket, Prefix=prefix)
        for entry in page.get("Contents", ())
    ]


def misnamed_objects(bucket: S3Bucket, prefix: str) -> list[str]:
    """Content-addressed objects whose bytes do not hash to their name (half-written,
    truncated or overwritten), with what is wrong with each."""
    wrong = []
    for entry in bucket_objects(bucket, prefix):
        key = entry["Key"]
        name = key[len(prefix) :]
        if not name.startswith(CONTENT_ADDRESSED):
            continue
        body = bucket.client.get_object(Bucket=bucket.bucket, Key=key)["Body"].read()
        digest = hashlib.sha256(body).hexdigest()
        if len(body) != entry["Size"] or digest != name.rsplit("/", 1)[-1]:
            wrong.append(f"{key}: {len(body)} of {entry['Size']} bytes, sha256 {digest}")
    return wrong


def source_files(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, by path relative to it."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def mixed_tree(root: Path, *, big_files: int, big_size: int, small_files: int) -> Path:
    """Incompressible big files, small text files in subdirectories, and one duplicate."""
    root.mkdir(parents=True)
    for i in range(big_files):
        (root / f"big-{i}.bin").write_bytes(os.urandom(big_size))
    for i in range(small_files):
        sub = root / f"dir-{i % 4}"
        sub.mkdir(exist_ok=True)
        (sub / f"note-{i}.txt").write_text(f"note {i}\n" * (50 + i))
    if big_files:
        (root / "dir-0" / "copy-of-big-0.bin").write_bytes((root / "big-0.bin").read_bytes())
    return root


#: Commands run against the unreachable endpoint, and the most a run may take.
UNREACHABLE_COMMANDS = ("snapshots", "backup")
UNREACHABLE_TIMEOUT = 150.0


@dataclass
class UnreachableRun:
    """One `python -m bbackup COMMAND` against an endpoint that refuses connections."""

    command: str
    endpoint: str
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    result: CliResult | None = field(default=None, init=False)
    elapsed: float | None = field(default=None, init=False)
    _done: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def collect(self) -> None:
        """Wait for the process in a thread, so `elapsed` is its own run time."""
        try:
            stdout, stderr = self.process.communicate(timeout=UNREACHABLE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        self.elapsed = time.monotonic() - self.started
        self.result = CliResult(self.process.returncode, stdout, stderr)
        self._done.set()

    def wait(self) -> tuple[CliResult, float]:
        assert self._done.wait(UNREACHABLE_TIMEOUT + 10), f"{self.command} never finished"
        assert self.result is not None and self.elapsed is not None
        return self.result, self.elapsed
