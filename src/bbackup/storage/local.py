"""The local backend: objects are files under a directory, written atomically.

A write goes to a temporary file beside its final name, is fsynced, then renamed into
place, so a crash never leaves a partial object under a final name. Large payloads in
page-aligned memory (packs) are written with O_DIRECT, around the page cache, and so are
a restore's ranged reads of packs that are not cached. Blocking file I/O runs in the
default thread pool so the event loop keeps serving other transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import mmap
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

from bbackup.errors import AccessDenied, NoSpace, NotFound, Permanent
from bbackup.storage.base import ObjectInfo

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
                    view = memoryview(data)
                    if _O_DIRECT and len(view) >= DIRECT_MIN and _page_aligned(view):
                        view = _write_direct(fd, view)
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
            if (
                _O_DIRECT
                and length is not None
                and DIRECT_READ_MIN <= length <= DIRECT_READ_MAX
                and not _cached(f.fileno(), offset)
            ):
                data = _read_direct(f.fileno(), offset, length)
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

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        infos = await self._run(lambda: list(self._walk(prefix)))
        for info in infos:
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


#: Payloads at least this large are written with O_DIRECT where the buffer allows it.
DIRECT_MIN = 1 << 20
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)  # Linux, FreeBSD; not macOS
_BLOCK = 4096  # O_DIRECT alignment that suits every common device (logical blocks ≤ 4 KiB)


def _page_aligned(view: memoryview) -> bool:
    """True if `view` starts on a block boundary (a writable buffer: a pack's memory map)."""
    import ctypes

    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):  # read-only (bytes) or empty
        return False
    return address % _BLOCK == 0


def _write_direct(fd: int, view: memoryview) -> memoryview:
    """Write the whole blocks of `view` to `fd` with O_DIRECT; return what is left.

    Packs go around the page cache: the kernel does not copy them into it nor write them
    back later (a tenth of a first backup's CPU time), and a large backup does not evict
    the machine's working set. What is left (the tail, or everything if the file system
    refuses O_DIRECT) is written the ordinary way by the caller.
    """
    whole = len(view) - len(view) % _BLOCK
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
    except OSError:
        return view
    done = 0
    try:
        while done < whole:
            done += os.write(fd, view[done:whole])
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: this file system or offset does not allow it
            raise
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return view[done:]


#: Ranged reads of this many bytes or more (a restore's) go around the page cache when
#: the range is not in it; the most one thread's reused buffer holds.
DIRECT_READ_MIN = 256 * 1024
DIRECT_READ_MAX = 4 * 1024 * 1024
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)  # Linux ≥ 4.14
_buffers = threading.local()


def _cached(fd: int, offset: int) -> bool:
    """True if the page at `offset` is in the page cache, or if that cannot be told.

    A read with RWF_NOWAIT returns what is cached and fails with EAGAIN where it would
    have to wait for the disk. Only the first page is asked: a pack is cached whole
    (just written or read) or not at all, far more often than in part.
    """
    if not _RWF_NOWAIT:
        return True
    try:
        os.preadv(fd, [bytearray(1)], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return False
    except OSError:  # EOPNOTSUPP and the like: no way to tell; read the ordinary way
        return True
    return True


def _read_direct(fd: int, offset: int, length: int) -> bytes | None:
    """`length` bytes at `offset` read with O_DIRECT into this thread's reused buffer.

    A restore reads each pack once: through the page cache, every read would take fresh
    pages for bytes that are copied out at once and never read again (and on a VM whose
    host reclaims free memory, fresh pages cost a host fault each). The disk writes
    straight into memory this thread already holds, and one copy makes the result.
    None: the file system refuses O_DIRECT; the caller reads the ordinary way.
    """
    start = offset - offset % _BLOCK
    end = -(-(offset + length) // _BLOCK) * _BLOCK
    buffer: mmap.mmap | None = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < end - start:
        if buffer is not None:
            buffer.close()
        # Sized for the largest read, so a thread's buffer is made once (mmap: aligned).
        buffer = _buffers.buffer = mmap.mmap(-1, max(end - start, DIRECT_READ_MAX + 2 * _BLOCK))
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
    except OSError:
        return None
    with memoryview(buffer) as view:
        got = 0
        try:
            while got < end - start:
                n = os.preadv(fd, [view[got : end - start]], start + got)
                got += n
                if n == 0 or n % _BLOCK:  # the end of the file
                    break
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: this file system does not allow it
                raise
            return None
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        first = offset - start
        return bytes(view[first : max(first, min(got, first + length))])


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
