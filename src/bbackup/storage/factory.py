"""The one place that builds a storage stack: URL → backend → wrappers, and the one place
that says what kind of store it is (`StorageProfile`): nothing else looks at the URL.

RetryingStorage            retries Transient errors with backoff (tenacity)
  └ LimitedStorage         at most --connections calls in flight
      └ CountingStorage    counts requests for --json summaries
          └ backend        local, memory or s3 (imported only when used)
              (or, with --as-of, VersionedView: the s3 backend's objects as they were)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bbackup.errors import UsageError
from bbackup.storage.base import Storage
from bbackup.storage.counting import CountingStorage
from bbackup.storage.limit import LimitedStorage
from bbackup.storage.object_lock import ObjectLockSetting, VersionedStore
from bbackup.storage.providers import Provider, detect_provider
from bbackup.storage.url import RepositoryURL, parse_repository_url


@dataclass(frozen=True, slots=True)
class StorageProfile:
    """What kind of store a repository is in, and what follows from it for the callers:
    how many requests to keep in flight, how to read and write, what it supports."""

    #: Every request crosses a network and costs a round trip (and money).
    remote: bool
    #: Calls in flight when --connections is not given.
    default_connections: int
    #: Pack uploads a backup keeps in flight when --connections is not given.
    upload_slots: int
    #: Restore: the most of a pack one read spans; None: whole runs of needed blobs.
    read_size: int | None
    #: Restore: unneeded bytes between needed blobs that one read skips over rather than
    #: split in two; None: one largest chunk of the repository (`ops.restore_reads`).
    range_gap: int | None
    #: Per-object storage classes (tiers) on put and in stat.
    storage_classes: bool
    #: Archived objects must be restored (a request, then a wait) before they are read.
    restore_requests: bool
    #: `put(..., if_absent=True)` is enforced by the store itself.
    conditional_writes: bool
    #: Objects may carry a retention date that forbids deleting them (object lock).
    object_lock: bool
    #: The S3-compatible provider and what it can do (`storage.providers`); None: not S3.
    provider: Provider | None = None


_LOCAL = StorageProfile(
    remote=False,
    default_connections=4,
    # Two pack writes in flight overlap one pack's fsync with the next pack's write
    # (15-25% faster than one); more only costs memory.
    upload_slots=2,
    # Just below the 2 MiB mmap threshold set in cli/allocator.py: read buffers come from
    # the heap and are reused instead of being mapped, faulted in page by page and
    # unmapped again. A remote read spans whole runs of needed blobs: there every
    # request costs.
    read_size=2 * 1024 * 1024 - 64 * 1024,
    range_gap=1024 * 1024,
    storage_classes=False,
    restore_requests=False,
    conditional_writes=True,
    object_lock=False,
)

#: The profile of each kind of backend, by `RepositoryURL.scheme`.
PROFILES = {
    "local": _LOCAL,
    "memory": StorageProfile(
        remote=False,
        default_connections=4,
        upload_slots=4,
        read_size=_LOCAL.read_size,
        range_gap=_LOCAL.range_gap,
        storage_classes=False,
        restore_requests=False,
        conditional_writes=True,
        object_lock=False,
    ),
    "s3": StorageProfile(
        remote=True,
        default_connections=16,
        # Packs being uploaded (and the one being filled) are most of what a backup
        # holds, 16 MiB each. Four PUTs of 16 MiB in flight backed up as fast as sixteen
        # at 30 ms a request (the store, not the round trip, sets the pace of a large
        # PUT), with at most 12 packs fewer held (docs/bench/session9.md, "S3 backup
        # memory"); restic 0.18 keeps 5. Other requests still get 16 connections.
        upload_slots=4,
        read_size=None,
        range_gap=None,
        storage_classes=True,
        restore_requests=True,
        conditional_writes=True,  # If-None-Match: *
        object_lock=True,
    ),
}


async def _nothing_to_create() -> None:
    return None


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
    #: The S3 provider by name (`storage.providers.PROVIDERS`), when the endpoint's host
    #: does not say (default: BBACKUP_S3_PROVIDER, else detected from the endpoint).
    s3_provider: str | None = None
    #: Upper bound on the time spent retrying one call before giving up
    #: (default: BBACKUP_RETRY_SECONDS, else 120).
    retry_seconds: float | None = None
    #: Seconds an S3 request may go without moving a block of its bytes
    #: (default: BBACKUP_IO_TIMEOUT_SECONDS, else 60).
    io_timeout: float | None = None
    #: Read the repository as it was at this moment (epoch seconds), from object
    #: versions (`storage.versioned`): S3 only, read-only.
    as_of: float | None = None
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
    #: The bare backend, below every wrapper.
    backend: Storage
    #: What kind of store this is (see `StorageProfile`).
    profile: StorageProfile
    #: Creates what holds the repository (an S3 bucket) if it is missing.
    _create_container: Callable[[], Awaitable[None]] = _nothing_to_create
    #: Object versions and retention (S3 only; `storage.object_lock`).
    versions: VersionedStore | None = None

    def apply_object_lock(self, setting: ObjectLockSetting | None) -> None:
        """Give every object written from now on the repository's retention (read from
        its config); nothing for a store without object lock."""
        if self.versions is not None:
            self.versions.set_object_lock(setting)

    async def create_container(self) -> None:
        """Create what holds the repository if it is missing and the store has one to
        create (an S3 bucket); nothing for a directory, which `put` creates. Called by
        `init` only: every other command fails on a missing bucket instead."""
        await self._create_container()


def open_storage(url: str | RepositoryURL, options: StorageOptions | None = None) -> StorageStack:
    """Build the storage stack for a repository URL."""
    from bbackup.storage.retry import RetryingStorage

    options = options or StorageOptions()
    parsed = parse_repository_url(url) if isinstance(url, str) else url
    retry_seconds = options.retry_seconds or _seconds_from_env("BBACKUP_RETRY_SECONDS")
    io_timeout = options.io_timeout or _seconds_from_env("BBACKUP_IO_TIMEOUT_SECONDS")
    backend: Storage
    create_container = _nothing_to_create
    versions: VersionedStore | None = None
    profile = PROFILES[parsed.scheme]
    if options.as_of is not None and parsed.scheme != "s3":
        raise UsageError("--as-of reads object versions, which only S3 repositories have")
    if parsed.scheme == "local":
        from bbackup.storage.local import LocalStorage

        backend = LocalStorage(parsed.path)
    elif parsed.scheme == "memory":
        from bbackup.storage.memory import MemoryStorage

        backend = options.memory_backend or MemoryStorage()
    else:
        from bbackup.storage.s3 import S3Storage
        from bbackup.storage.s3_connection import IO_TIMEOUT

        endpoint_url = (
            options.s3_endpoint
            or os.environ.get("BBACKUP_S3_ENDPOINT")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        profile = provider_profile(
            detect_provider(
                endpoint_url, options.s3_provider or os.environ.get("BBACKUP_S3_PROVIDER")
            )
        )
        backend = S3Storage(
            parsed.bucket,
            parsed.prefix,
            endpoint_url=endpoint_url,
            region=options.s3_region,
            path_style=options.s3_path_style,
            profile=options.s3_profile,
            io_timeout=io_timeout or IO_TIMEOUT,
        )
        create_container = functools.partial(backend.ensure_bucket, create=True)
        from bbackup.storage.s3_versions import S3Versions

        s3_versions = versions = S3Versions(backend)
        if options.as_of is not None:
            from bbackup.storage.versioned import VersionedView

            backend = VersionedView(backend, versions, options.as_of)
    bare = s3_versions.s3 if versions is not None else backend
    if options.wrap_backend is not None:
        backend = options.wrap_backend(backend)
    counter = CountingStorage(backend)
    limited = LimitedStorage(counter, options.connections or profile.default_connections)
    storage = RetryingStorage(limited, max_elapsed=retry_seconds or RETRY_SECONDS)
    if versions is not None:
        from bbackup.storage.versions_retry import RetryingVersions

        versions = RetryingVersions(versions, storage)
    return StorageStack(storage, counter, parsed, bare, profile, create_container, versions)


def provider_profile(provider: Provider) -> StorageProfile:
    """The S3 profile with what `provider` supports: storage classes, restore requests,
    object lock."""
    return dataclasses.replace(
        PROFILES["s3"],
        storage_classes=bool(provider.storage_classes),
        restore_requests=provider.restore_requests,
        object_lock=provider.object_lock,
        provider=provider,
    )


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
