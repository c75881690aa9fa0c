"""The one place that builds a storage stack: URL → backend → wrappers.

RetryingStorage            retries Transient errors with backoff (tenacity)
  └ LimitedStorage         at most --connections calls in flight
      └ CountingStorage    counts requests for --json summaries
          └ backend        local, memory or s3 (imported only when used)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from bbackup.errors import UsageError
from bbackup.storage.base import Storage
from bbackup.storage.counting import CountingStorage
from bbackup.storage.limit import LimitedStorage
from bbackup.storage.url import RepositoryURL, parse_repository_url

DEFAULT_CONNECTIONS = {"s3": 16, "local": 4, "memory": 4}
#: How long one storage call is retried, by default.
RETRY_SECONDS = 120.0


@dataclass(slots=True)
class StorageOptions:
    """Backend settings from flags and environment; None means "use the default"."""

    connections: int | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool | None = None
    s3_profile: str | None = None
    #: Upper bound on the time spent retrying one call before giving up
    #: (default: BBACKUP_RETRY_SECONDS, else 120).
    retry_seconds: float | None = None
    #: Seconds an S3 request may go without moving a block of its bytes
    #: (default: BBACKUP_IO_TIMEOUT_SECONDS, else 60).
    io_timeout: float | None = None
    #: Tests insert a fault-injecting wrapper directly above the backend here.
    wrap_backend: Callable[[Storage], Storage] | None = None
    #: The in-memory backend's object dict, shared between opens in one process.
    memory_backend: Storage | None = field(default=None, repr=False)


@dataclass(slots=True)
class StorageStack:
    """The assembled storage plus handles on the wrappers callers report from."""

    storage: Storage
    counter: CountingStorage
    url: RepositoryURL
    #: The bare backend (for backend-specific calls such as S3's ensure_bucket).
    backend: Storage


def open_storage(url: str | RepositoryURL, options: StorageOptions | None = None) -> StorageStack:
    """Build the storage stack for a repository URL."""
    from bbackup.storage.retry import RetryingStorage

    options = options or StorageOptions()
    parsed = parse_repository_url(url) if isinstance(url, str) else url
    retry_seconds = options.retry_seconds or _seconds_from_env("BBACKUP_RETRY_SECONDS")
    io_timeout = options.io_timeout or _seconds_from_env("BBACKUP_IO_TIMEOUT_SECONDS")
    backend: Storage
    if parsed.scheme == "local":
        from bbackup.storage.local import LocalStorage

        backend = LocalStorage(parsed.path)
    elif parsed.scheme == "memory":
        from bbackup.storage.memory import MemoryStorage

        backend = options.memory_backend or MemoryStorage()
    else:
        from bbackup.storage.s3 import IO_TIMEOUT, S3Storage

        backend = S3Storage(
            parsed.bucket,
            parsed.prefix,
            endpoint_url=options.s3_endpoint
            or os.environ.get("BBACKUP_S3_ENDPOINT")
            or os.environ.get("AWS_ENDPOINT_URL"),
            region=options.s3_region,
            path_style=options.s3_path_style,
            profile=options.s3_profile,
            io_timeout=io_timeout or IO_TIMEOUT,
        )
    bare = backend
    if options.wrap_backend is not None:
        backend = options.wrap_backend(backend)
    counter = CountingStorage(backend)
    connections = options.connections or DEFAULT_CONNECTIONS[parsed.scheme]
    limited = LimitedStorage(counter, connections)
    storage = RetryingStorage(limited, max_elapsed=retry_seconds or RETRY_SECONDS)
    return StorageStack(storage, counter, parsed, bare)


def _seconds_from_env(variable: str) -> float | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{variable}={value!r} is not a number of seconds above 0")
    return seconds
