"""The local caches on this machine (`bbackup cache`): one directory per repository
(named by its repository ID) under the cache root, its size, and when a command last
opened that repository (the directory's mtime, which opening touches). Removing a cache
never loses data: the next command fetches what it needs again."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

#: A repository's cache directory is named by its repository ID: 64 hex digits.
_ID_LENGTH = 64
DEFAULT_MAX_AGE_DAYS = 30


@dataclass(frozen=True, slots=True)
class CacheDirectory:
    repository_id: str
    path: Path
    size: int
    #: Epoch seconds of the last use.
    last_used: float

    def age_days(self, now: float) -> float:
        return max(0.0, now - self.last_used) / 86400


def _is_repository_id(name: str) -> bool:
    return len(name) == _ID_LENGTH and not name.strip("0123456789abcdef")


def _size(path: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue  # removed meanwhile by another bbackup
    return total


def list_caches(root: Path) -> list[CacheDirectory]:
    """Every repository cache under `root`, most recently used first; none if `root`
    does not exist."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    caches = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and _is_repository_id(entry.name):
            path = Path(entry.path)
            caches.append(
                CacheDirectory(
                    entry.name, path, _size(path), entry.stat(follow_symlinks=False).st_mtime
                )
            )
    return sorted(caches, key=lambda c: (-c.last_used, c.repository_id))


def remove_old_caches(
    root: Path, max_age_days: float, *, now: float | None = None
) -> list[CacheDirectory]:
    """Remove the caches not used for more than `max_age_days`; return them."""
    now = time.time() if now is None else now
    old = [c for c in list_caches(root) if c.age_days(now) > max_age_days]
    for cache in old:
        shutil.rmtree(cache.path, ignore_errors=True)
    return old
