"""Opening files to read them for a backup: a path of any length, never following a
symlink or waiting on a FIFO put in a file's place, without updating its access time
where allowed, and a few files ahead with their reads requested from the kernel. Shared
by the reader threads (`ops/chunk_pipeline.py`) and the seal workers, which import this
and little else, to start fast.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import resource
import stat
from collections import deque
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Paths at least this long are reached a piece at a time, from directory descriptors:
#: the kernel refuses a path of PATH_MAX (4096) bytes or more.
LONG_PATH = 3072
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

#: A reader keeps this many files of its batch open ahead of the one it reads, their
#: reads requested from the kernel; files of PREFETCH_LIMIT or more are left to the
#: kernel's own read-ahead of sequential reads.
PREFETCH_FILES = 16
PREFETCH_LIMIT = 1024 * 1024
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
#: A file opened for reading: its descriptor and its status when opened.
Opened = tuple[int, os.stat_result]


def open_path(path: bytes, flags: int, mode: int = 0o777) -> int:
    """`os.open(path, flags)` for a path of any length: a long one is opened through
    directories along it, each piece shorter than LONG_PATH relative to the one before."""
    dir_fd: int | None = None
    try:
        while len(path) >= LONG_PATH:
            cut = path.rfind(b"/", 1, LONG_PATH)
            if cut < 0:
                raise OSError(errno.ENAMETOOLONG, "a path component is too long", path)
            fd = os.open(path[:cut], DIRECTORY_FLAGS, dir_fd=dir_fd)
            if dir_fd is not None:
                os.close(dir_fd)
            dir_fd, path = fd, path[cut + 1 :]
        return os.open(path, flags, mode, dir_fd=dir_fd)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def prefetch_window(workers: int) -> int:
    """Files each of `workers` readers keeps open ahead: PREFETCH_FILES, fewer where the
    descriptor limit is low, so that all of them together take at most a quarter of it."""
    try:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 0
    if limit == resource.RLIM_INFINITY:
        return PREFETCH_FILES
    return max(0, min(PREFETCH_FILES, limit // 4 // max(1, workers) - 1))


def open_regular(path: bytes) -> Opened:
    """Open a regular file for reading, with its status. Anything else put in its place
    since the walk (a FIFO, whose reads would wait for a writer forever; a device) is an
    error of that file."""
    fd = _open_for_reading(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_ahead(path: bytes) -> Opened | OSError | None:
    """Open a file to be read soon and have the kernel start reading it, if it is small.
    None if the descriptors ran out: the file is opened when its turn comes."""
    try:
        opened = open_regular(path)
    except OSError as exc:
        return None if exc.errno in (errno.EMFILE, errno.ENFILE) else exc
    size = opened[1].st_size
    if _WILLNEED is not None and 0 < size < PREFETCH_LIMIT:
        with contextlib.suppress(OSError):  # only advice
            os.posix_fadvise(opened[0], 0, size, _WILLNEED)
    return opened


def _open_for_reading(path: bytes) -> int:
    # Non-blocking: opening a FIFO swapped in since the walk must not wait for a writer
    # (reads of regular files ignore the flag).
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        with contextlib.suppress(PermissionError):
            return open_path(path, flags | noatime)
    return open_path(path, flags)


def read_each(
    paths: list[bytes],
    ahead: int,
    read: Callable[[bytes, Opened], T],
    failed: Callable[[OSError], T],
) -> list[T]:
    """`read(path, opened)` for each file in order, `ahead` files opened (and their reads
    requested) before the one read; a file that cannot be opened or read gives
    `failed(error)` instead. `read` closes what it is given."""
    outcomes: list[T] = []
    opened_ahead: deque[Opened | OSError | None] = deque()
    upcoming = iter(paths)
    try:
        for path in paths:
            for following in itertools.islice(upcoming, ahead + 1 - len(opened_ahead)):
                opened_ahead.append(open_ahead(following))
            opened = opened_ahead.popleft()
            try:
                if opened is None:  # not opened ahead: now
                    opened = open_regular(path)
                if isinstance(opened, OSError):
                    raise opened
                outcomes.append(read(path, opened))
            except OSError as exc:
                outcomes.append(failed(exc))
    finally:
        for left in opened_ahead:
            if isinstance(left, tuple):
                os.close(left[0])
    return outcomes
