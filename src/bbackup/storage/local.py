"""The local backend: objects are files under a directory, written atomically.

A write goes to a temporary file beside its final name, is fsynced, then renamed into
place, so a crash never leaves a partial object under a final name. Packs are written,
and a restore's ranged reads of uncached packs read, around the page cache where
`direct_io` allows it. Blocking file I/O runs in the default thread pool so the event
loop keeps serving other transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

from bbackup.errors import AccessDenied, NoSpace, NotFound, Permanent
from bbackup.storage import direct_io
from bbackup.storage.base import ObjectInfo, in_span

T = TypeVar("T")
_TMP_PREFIX = ".tmp-"


class LocalStorage:
    """A repository in a local directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise Permanent(f"invalid object name: {name}")
        return self.root / name

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        await self._run(partial(self._put_sync, name, data, if_absent))

    def _put_sync(self, name: str, data: bytes | bytearray | memoryview, if_absent: bool) -> None:
        path = self._path(name)
        with _translate_os_errors(name):
            if if_absent and path.exists():
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f"{_TMP_PREFIX}{path.name}-{secrets.token_hex(4)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    view = direct_io.write_blocks(fd, memoryview(data))
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if if_absent:
                    # link() fails if the name exists: a concurrent writer of the same
                    # content-addressed object wins and ours is dropped.
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        pass
                    finally:
                        tmp.unlink()
                else:
                    os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fsync_dir(path.parent)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return await self._run(partial(self._get_sync, name, offset, length))

    def _get_sync(self, name: str, offset: int, length: int | None) -> bytes:
        with _translate_os_errors(name), open(self._path(name), "rb") as f:
            if length is not None:
                data = direct_io.read_uncached(f.fileno(), offset, length)
                if data is not None:
                    return data
            if offset:
                f.seek(offset)
            return f.read() if length is None else f.read(length)

    async def stat(self, name: str) -> ObjectInfo:
        def stat() -> ObjectInfo:
            with _translate_os_errors(name):
                st = self._path(name).stat()
            return ObjectInfo(name, st.st_size, st.st_mtime)

        return await self._run(stat)

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        infos = await self._run(lambda: list(self._walk(prefix)))
        for info in infos:
            if in_span(info.name, after, before):
                yield info

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        directory = prefix.rpartition("/")[0]
        base = self.root / directory if directory else self.root

        def onerror(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):
                with _translate_os_errors(directory or "."):
                    raise exc

        for dirpath, dirnames, filenames in os.walk(base, onerror=onerror):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for filename in sorted(filenames):
                name = filename if rel == "." else f"{rel}/{filename}"
                if filename.startswith(_TMP_PREFIX) or not name.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, filename))
                except FileNotFoundError:
                    continue
                yield ObjectInfo(name, st.st_size, st.st_mtime)

    async def delete(self, name: str) -> None:
        def delete() -> None:
            with _translate_os_errors(name), contextlib.suppress(FileNotFoundError):
                self._path(name).unlink()

        await self._run(delete)

    async def restore(self, name: str, days: int, tier: str) -> None:
        await self.stat(name)

    async def aclose(self) -> None:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _translate_os_errors(name: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFound(f"{name}: not found") from exc
    except PermissionError as exc:
        raise AccessDenied(f"{name}: permission denied") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"{name}: no space left on device") from exc
        raise Permanent(f"{name}: {exc.strerror or exc}") from exc
