"""The local cache: immutable, content-addressed objects kept under $XDG_CACHE_HOME.

Index segments, snapshot documents and tree packs are cached whole, keyed by their
object name, and verified against their SHA-256 name when read; a damaged entry is
dropped and fetched again, and a damaged object from the store is never cached, so the
cache cannot make damage stick. Deleting the cache never loses data.

A tree pack is verified whole once per process; later reads of one of its trees read
that tree's range of the file, as long as the file is the one verified (same inode, size
and mtime). Reading and hashing the whole 16 MiB pack for each tree, once the packs no
longer fit in MEMORY_BUDGET, was most of an unchanged backup of 1,000,000 files
(docs/bench/session9.md, "Tree packs read by range from the cache").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import stat
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from bbackup.storage import Storage, StorageWrapper

CACHED_PREFIXES = ("index/", "snapshots/", "tree/")
#: Verified objects also kept in memory (most recently used first out), so reading many
#: trees from one pack reads and verifies that pack once.
MEMORY_BUDGET = 64 * 1024 * 1024
#: What identifies a cache file's content once verified: device, inode, size, mtime.
FileIdentity = tuple[int, int, int, int]


def _identity(st: os.stat_result) -> FileIdentity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def write_cache_file(
    path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o666
) -> None:
    """Write a cache file whole (beside it, then renamed), creating its directory; a
    failure is ignored: a cache that cannot be written is only slower."""
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def keep_key_copy(path: Path, key_file: bytes) -> None:
    """Keep a copy of the key file that opened a remote repository at `path`, readable by
    the owner only, unless it is there already (see `cache_paths.unlock_hint`)."""
    try:
        if path.read_bytes() == key_file:
            return
    except OSError:
        pass
    write_cache_file(path, key_file, mode=0o600)


class CachingStorage(StorageWrapper):
    """Serves cacheable objects from disk; writes through on put; forgets on delete."""

    def __init__(self, inner: Storage, directory: Path) -> None:
        super().__init__(inner)
        self.directory = directory
        #: Hears (name, problem) of each object the store returned that fails its name.
        self.on_mismatch: Callable[[str, str], None] | None = None
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_bytes = 0
        #: Cache files verified whole by this process: name → the file's identity then.
        self._verified: dict[str, FileIdentity] = {}

    def _remember(self, name: str, data: bytes) -> None:
        if name.startswith("tree/") and len(data) <= MEMORY_BUDGET // 4:
            self._memory[name] = data
            self._memory_bytes += len(data)
            while self._memory_bytes > MEMORY_BUDGET:
                _, dropped = self._memory.popitem(last=False)
                self._memory_bytes -= len(dropped)

    @staticmethod
    def cacheable(name: str) -> bool:
        return name.startswith(CACHED_PREFIXES)

    def _path(self, name: str) -> Path:
        return self.directory / name

    def _read_verified(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                identity = _identity(os.fstat(f.fileno()))
                data = f.read()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != name.rsplit("/", 1)[-1]:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._verified[name] = identity
        return data

    def _read_range(self, name: str, offset: int, length: int) -> bytes | None:
        """`length` bytes at `offset` of a cache file this process verified whole, if it is
        still that file and holds them; else None (it is then read and verified again)."""
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or _identity(st) != self._verified.get(name):
                return None
            data = os.pread(fd, length, offset)
        except OSError:
            return None
        finally:
            os.close(fd)
        return data if len(data) == length else None

    def _write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        write_cache_file(self._path(name), data)

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        await self.inner.put(name, data, storage_class=storage_class, if_absent=if_absent)
        if self.cacheable(name):
            await asyncio.to_thread(self._write, name, data)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if not self.cacheable(name):
            return await self.inner.get(name, offset, length)
        data = self._memory.get(name)
        if data is not None:
            self._memory.move_to_end(name)
        elif length is not None and name in self._verified:
            piece = await asyncio.to_thread(self._read_range, name, offset, length)
            if piece is not None:
                return piece
            self._verified.pop(name, None)
        if data is None:
            data = await asyncio.to_thread(self._read_verified, name)
            if data is not None:
                self._remember(name, data)
        if data is None:
            data = await self.inner.get(name)
            if hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[-1]:
                await asyncio.to_thread(self._write, name, data)
                self._remember(name, data)
            elif self.on_mismatch is not None:
                # Served all the same: a tree pack's blobs are each verified on their own,
                # and a document's reader says what is wrong with it.
                self.on_mismatch(name, "damaged (content does not match its name)")
        end = len(data) if length is None else offset + length
        return data[offset:end] if (offset or length is not None) else data

    async def delete(self, name: str) -> None:
        await self.inner.delete(name)
        if name in self._memory:
            self._memory_bytes -= len(self._memory.pop(name))
        self._verified.pop(name, None)
        if self.cacheable(name):
            with contextlib.suppress(OSError):
                self._path(name).unlink()

    def prune_missing(self, prefix: str, live: set[str]) -> None:
        """Drop cached objects under `prefix` that the repository no longer lists."""
        root = self.directory / prefix
        if not root.is_dir():
            return
        for dirpath, _dirs, files in os.walk(root):
            for filename in files:
                path = Path(dirpath) / filename
                name = path.relative_to(self.directory).as_posix()
                if name not in live:
                    with contextlib.suppress(OSError):
                        path.unlink()
