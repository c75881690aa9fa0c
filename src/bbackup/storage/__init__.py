"""Object storage: the Storage protocol, backends (local, memory, s3), wrappers and the factory.

Nouns: an *object* is an immutable byte string stored under a *name* ("data/ab/abcd…");
a *backend* talks to one kind of store; a *wrapper* decorates a Storage with one concern
(retries, concurrency limits, request counting, fault injection for tests).
"""

from __future__ import annotations

from bbackup.storage.base import ARCHIVE_CLASSES, ObjectInfo, Storage, StorageWrapper
from bbackup.storage.factory import StorageOptions, StorageProfile, StorageStack, open_storage
from bbackup.storage.object_lock import (
    BucketLockState,
    ObjectLockSetting,
    ObjectVersion,
    Retention,
    VersionedStore,
    iso_time,
)
from bbackup.storage.providers import PROVIDERS, Provider, detect_provider
from bbackup.storage.url import RepositoryURL, parse_repository_url
from bbackup.storage.versioned import versions_at

__all__ = [
    "ARCHIVE_CLASSES",
    "PROVIDERS",
    "BucketLockState",
    "ObjectInfo",
    "ObjectLockSetting",
    "ObjectVersion",
    "Provider",
    "RepositoryURL",
    "Retention",
    "Storage",
    "StorageOptions",
    "StorageProfile",
    "StorageStack",
    "StorageWrapper",
    "VersionedStore",
    "detect_provider",
    "iso_time",
    "open_storage",
    "parse_repository_url",
    "versions_at",
]
