"""Pack reads and writes around the page cache (O_DIRECT) for the local backend: the one
switch (`ENABLED`), the rules O_DIRECT imposes, and why it is worth it.

Why. A first backup spent ~10 % of its CPU time in the kernel copying packs into the page
cache and writing them back for the per-pack fsync: buffered writes plus fsync reached
~350 MB/s on the benchmark VM's disk, direct writes 1.4 GB/s (800 MiB first backup: 3.12–
3.26 s → 2.35–2.52 s, CPU 5.3–5.5 s → 4.0–4.3 s; docs/bench/history.md, session 3). A restore
reads each pack once, so through the cache every ranged read took fresh pages for bytes
copied out at once and never read again (restore run second: 2.21 s → 1.29 s, CPU 3.77 →
1.90 s; session 4). Either way a large backup or restore no longer evicts the machine's
working set. The cost: a restore right after a backup reads the packs from the disk.

The rules. O_DIRECT needs the buffer, the file offset and the length in whole blocks
(`BLOCK`). The blob writer's packs are anonymous memory maps (`repository.pack.
PackBuilder`, for reasons of their own), so they start on a page: `write_blocks` writes the
whole blocks of such a buffer directly and leaves the tail to an ordinary write. Reads go
into a page-aligned buffer each thread keeps. A file system that refuses O_DIRECT (EINVAL:
some FUSE mounts) gets ordinary I/O with the same results.

The switch. `ENABLED` is False where the platform has no O_DIRECT (macOS) and when the
environment sets BBACKUP_NO_DIRECT_IO=1 (docs/operations.md); then every read and write is
an ordinary one and nothing else changes.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)  # Linux, FreeBSD; not macOS
#: The one switch: False makes every local read and write an ordinary, buffered one.
ENABLED: bool = bool(_O_DIRECT) and os.environ.get("BBACKUP_NO_DIRECT_IO", "") != "1"

#: O_DIRECT alignment that suits every common device (logical blocks ≤ 4 KiB).
BLOCK = 4096
#: Payloads at least this large (packs) are written around the page cache.
WRITE_MIN = 1 << 20
#: Ranged reads of this many bytes or more (a restore's) go around the page cache when the
#: range is not in it; the most one thread's reused buffer holds.
READ_MIN = 256 * 1024
READ_MAX = 4 * 1024 * 1024
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)  # Linux ≥ 4.14
_buffers = threading.local()


def write_blocks(fd: int, view: memoryview) -> memoryview:
    """Write what of `view` may go around the page cache to `fd`; return the rest, which
    the caller writes the ordinary way (all of it when the switch is off, the payload is
    small or not page-aligned, or the file system refuses)."""
    if not ENABLED or len(view) < WRITE_MIN or not _page_aligned(view):
        return view
    return _write_direct(fd, view)


def read_uncached(fd: int, offset: int, length: int) -> bytes | None:
    """`length` bytes at `offset` of `fd`, read around the page cache if the range is
    large and not cached; None: read it the ordinary way."""
    if not ENABLED or not READ_MIN <= length <= READ_MAX or _cached(fd, offset):
        return None
    return _read_direct(fd, offset, length)


def _page_aligned(view: memoryview) -> bool:
    """True if `view` starts on a block boundary (a writable buffer: a pack's memory map)."""
    import ctypes  # here: ~5 ms that commands which never write a pack do not pay

    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):  # read-only (bytes) or empty
        return False
    return address % BLOCK == 0


def _write_direct(fd: int, view: memoryview) -> memoryview:
    """Write the whole blocks of `view` to `fd` with O_DIRECT; return what is left (the
    tail, or everything if the file system or offset refuses O_DIRECT)."""
    whole = len(view) - len(view) % BLOCK
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

    The disk writes straight into memory this thread already holds (on a VM whose host
    reclaims free memory, fresh pages cost a host fault each), and one copy makes the
    result. None: the file system refuses O_DIRECT; the caller reads the ordinary way.
    """
    start = offset - offset % BLOCK
    end = -(-(offset + length) // BLOCK) * BLOCK
    buffer: mmap.mmap | None = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < end - start:
        if buffer is not None:
            buffer.close()
        # Sized for the largest read, so a thread's buffer is made once (mmap: aligned).
        buffer = _buffers.buffer = mmap.mmap(-1, max(end - start, READ_MAX + 2 * BLOCK))
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
                if n == 0 or n % BLOCK:  # the end of the file
                    break
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: this file system does not allow it
                raise
            return None
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        first = offset - start
        return bytes(view[first : max(first, min(got, first + length))])
