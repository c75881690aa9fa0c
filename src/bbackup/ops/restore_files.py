"""The restorer's file side: writes blobs into restored files from worker threads, keeps
each file open while it has blobs still to come, and sets its metadata as the last lands.

A file is opened once (not once per blob) and closed right after its metadata is set
through the same descriptor, so no path is looked up twice and file metadata costs
nothing at the end of a restore. Descriptors are capped: past the cap a file with blobs
still to come is closed between writes and opened again by its next one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bbackup.errors import NoSpace
from bbackup.snapshot.model import SYMLINK, Node

#: Files kept open between writes at most (and a quarter of the descriptor limit at most).
MAX_OPEN_FILES = 256
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


@dataclass(slots=True, eq=False)
class RestoredFile:
    """A regular file being restored: where it goes, what it was, what is still to come."""

    path: bytes
    node: Node
    #: Writes still to come; the one that takes this to 0 sets the metadata.
    pending: int = 0
    fd: int = -1
    #: Threads writing through `fd` right now; it is closed only when none are.
    users: int = 0


def creation_mode(node: Node) -> int:
    """The mode to create a file with: its own permission bits, so that usually no chmod
    is needed afterwards, and always read-write for us, so it can be opened again."""
    return (stat.S_IMODE(node.mode) & 0o777) | 0o600


def set_metadata(target: bytes | int, node: Node, *, chown: bool) -> None:
    """Ownership, mode, xattrs and times, in the order that keeps each one: chown clears
    set-id bits, so the mode comes after it, and the times come last. `target` is a path
    (not followed if it is a symlink) or a descriptor open on the file.

    Ownership and mode are only changed where they differ: each change is a journalled
    inode update, and with many small files those dominate a restore."""
    is_link = node.type == SYMLINK
    by_path = isinstance(target, bytes)
    st = os.stat(target, follow_symlinks=not by_path)
    chowned = chown and (st.st_uid, st.st_gid) != (node.uid, node.gid)
    if chowned:
        os.chown(target, node.uid, node.gid, follow_symlinks=not by_path)
    if not is_link and (chowned or stat.S_IMODE(st.st_mode) != stat.S_IMODE(node.mode)):
        os.chmod(target, stat.S_IMODE(node.mode))
    for name, value in node.xattrs:
        with contextlib.suppress(OSError):
            os.setxattr(target, name, value, follow_symlinks=not by_path)
    atime = node.atime_ns or node.mtime_ns  # directories carry no atime
    os.utime(target, ns=(atime, node.mtime_ns), follow_symlinks=not by_path)


class FileWriter:
    """Writes plaintext into restored files; thread-safe."""

    def __init__(self, *, chown: bool, on_error: Callable[[bytes, str], None]) -> None:
        self.chown = chown
        self.on_error = on_error
        #: Files whose metadata has been set (or failed to be).
        self.finished = 0
        self._lock = threading.Lock()
        self._open: set[RestoredFile] = set()
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit == resource.RLIM_INFINITY:
            soft_limit = MAX_OPEN_FILES * 4
        self._max_open = max(1, min(MAX_OPEN_FILES, soft_limit // 4))

    def write(self, file: RestoredFile, data: bytes | memoryview, offset: int) -> None:
        """Write `data` at `offset`; the file's last write also sets its metadata."""
        try:
            fd = self._acquire(file)
            try:
                view = memoryview(data)
                while view:
                    done = os.pwrite(fd, view, offset)
                    view, offset = view[done:], offset + done
            except BaseException:
                self._release(file, written=False)
                raise
            self._release(file, written=True)  # closing may report a failed write too
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NoSpace(f"{os.fsdecode(file.path)}: no space left on device") from exc
            raise

    def finish_unwritten(self, file: RestoredFile) -> None:
        """Set the metadata of a file that gets no writes (it was created while planning)."""
        self._set_metadata(file, file.path)
        with self._lock:
            self.finished += 1

    def close_all(self) -> None:
        """Close what a failed restore left open; only once no thread writes any more."""
        with self._lock:
            files, self._open = self._open, set()
        for file in files:
            fd, file.fd = file.fd, -1
            os.close(fd)

    def _acquire(self, file: RestoredFile) -> int:
        with self._lock:
            file.users += 1
            if file.fd >= 0:
                return file.fd
        try:
            fd = os.open(file.path, _OPEN_FLAGS, creation_mode(file.node))
        except BaseException:
            with self._lock:
                file.users -= 1
            raise
        with self._lock:
            if file.fd < 0:
                file.fd = fd
                self._open.add(file)
                return fd
            spare, fd = fd, file.fd  # another thread opened it meanwhile
        os.close(spare)
        return fd

    def _release(self, file: RestoredFile, *, written: bool) -> None:
        with self._lock:
            file.users -= 1
            if written:
                file.pending -= 1
            last = file.pending == 0
            crowded = len(self._open) > self._max_open
            if file.users or not (last or crowded or not written):
                return
            fd, file.fd = file.fd, -1
            self._open.discard(file)
        try:
            if last and written:
                self._set_metadata(file, fd)
        finally:
            os.close(fd)
        if last and written:
            with self._lock:
                self.finished += 1

    def _set_metadata(self, file: RestoredFile, target: bytes | int) -> None:
        try:
            set_metadata(target, file.node, chown=self.chown)
        except OSError as exc:
            self.on_error(file.path, f"cannot set metadata: {exc.strerror or exc}")
