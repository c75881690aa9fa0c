"""The restorer's hold on its target directory: every directory below the target is reached
from the target's descriptor one name at a time with O_NOFOLLOW, and every entry is made,
replaced and given its metadata relative to its directory's descriptor. So a symlink the
restore did not make is never followed, and nothing outside the target changes. What is in
the way is replaced, never written through; a non-empty directory where the snapshot has
no directory is refused (docs/operations.md, "Restore into a non-empty target").
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass

from bbackup.ops.posix_acl import has_default_acl
from bbackup.snapshot.model import BLOCKDEV, CHARDEV, FIFO, SYMLINK, Node

#: Flags that open a directory below the target: never through a symlink.
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Directory descriptors kept open (and an eighth of the descriptor limit at most), besides
#: those in use. The blobs of one directory's files mostly arrive together, so a few
#: suffice.
MAX_OPEN_DIRECTORIES = 128


def descriptor_limit() -> int:
    """The soft limit on open descriptors (1024 if there is none)."""
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1024 if soft_limit == resource.RLIM_INFINITY else soft_limit


def join_path(parent: bytes, name: bytes) -> bytes:
    """`parent/name`, for messages: the target may be `/`."""
    return parent + name if parent.endswith(b"/") else parent + b"/" + name


@dataclass(slots=True, eq=False)
class RestoredDir:
    """A directory below the target (or the target itself, without a parent)."""

    parent: RestoredDir | None
    name: bytes
    #: Where it is, for messages: below the target, never opened by this path.
    path: bytes
    #: Its metadata to set once everything in it is done; None for a directory the
    #: restore only passes through (outside the include filter).
    node: Node | None = None
    fd: int = -1
    #: Threads using `fd` right now; it is closed only when none are.
    users: int = 0
    #: This restore made it (mkdir), so it held nothing but what the restore put there.
    created: bool = False
    #: It has a default ACL, which entries created in it inherit (True until known).
    default_acl: bool = True


class OpenDirectories:
    """Descriptors of the target's directories, opened on demand, each from its parent's
    descriptor, and kept for reuse: so a file is opened by one `openat` from its
    directory, and a path is never walked again from the top. Thread-safe."""

    def __init__(self, target: bytes) -> None:
        self.root = RestoredDir(None, b"", target)
        self._max_open = max(1, min(MAX_OPEN_DIRECTORIES, descriptor_limit() // 8))
        self._lock = threading.Lock()
        #: Every open directory but the target, least recently acquired first: past the
        #: cap, the first ones nobody uses are closed.
        self._open: OrderedDict[RestoredDir, None] = OrderedDict()

    def open_target(self) -> int:
        """Create the target if need be and open it, once, for the whole restore. The
        target's own path may hold symlinks: the user named it."""
        os.makedirs(self.root.path, exist_ok=True)
        self.root.fd = os.open(self.root.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root.default_acl = has_default_acl(self.root.fd)
        return self.root.fd

    def acquire(self, directory: RestoredDir) -> int:
        """The directory's descriptor, open until the matching `release`."""
        parent = directory.parent
        if parent is None:
            return directory.fd  # the target: open for the whole restore
        with self._lock:
            if directory.fd >= 0:
                directory.users += 1
                self._open.move_to_end(directory)
                return directory.fd
        parent_fd = self.acquire(parent)
        try:
            fd = os.open(directory.name, DIRECTORY_FLAGS, dir_fd=parent_fd)
        finally:
            self.release(parent)
        unused: list[int] = []
        with self._lock:
            if directory.fd < 0:
                directory.fd, fd = fd, -1
            else:  # another thread opened it meanwhile
                unused.append(fd)
            directory.users += 1
            self._open[directory] = None
            opened = directory.fd
            if len(self._open) > self._max_open:
                unused += self._close_unused()
        for fd in unused:
            os.close(fd)
        return opened

    def release(self, directory: RestoredDir) -> None:
        if directory.parent is not None:
            with self._lock:
                directory.users -= 1

    def close_all(self) -> None:
        """Close every descriptor; only once no thread uses any any more."""
        with self._lock:
            directories = [*self._open, self.root]
            self._open.clear()
        for directory in directories:
            fd, directory.fd, directory.users = directory.fd, -1, 0
            if fd >= 0:
                os.close(fd)

    def _close_unused(self) -> list[int]:
        """Forget the least recently acquired directories nobody uses, down to the cap
        (the lock is held); their descriptors, for the caller to close."""
        excess = len(self._open) - self._max_open
        closing: list[RestoredDir] = []
        for directory in self._open:
            if not directory.users:
                closing.append(directory)
                if len(closing) == excess:
                    break
        fds = []
        for directory in closing:
            del self._open[directory]
            fds.append(directory.fd)
            directory.fd = -1
        return fds


def clear_entry(dir_fd: int, name: bytes) -> None:
    """Make way for something that is not a directory: whatever is at `name` is removed
    without being followed; a non-empty directory is refused."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise OSError(exc.errno, "a non-empty directory is in the way") from exc
            raise


def remove_entry(dir_fd: int, name: bytes) -> None:
    """Remove `name` from `dir_fd` (--delete): a symlink is removed itself, never followed;
    a directory with everything in it, by descriptors (shutil.rmtree from a directory
    descriptor refuses to follow symlinks even when they are swapped in meanwhile)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except IsADirectoryError:
        shutil.rmtree(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def make_directory(dir_fd: int, name: bytes) -> bool:
    """Make sure `name` is a real directory: a directory already there is kept, anything
    else (a symlink above all) is replaced. True if it was made now, so nothing is in it."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        return True
    except FileExistsError:
        pass
    if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        return False
    os.unlink(name, dir_fd=dir_fd)
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    return True


#: The node types `make_special` creates.
SPECIAL_TYPES = frozenset({SYMLINK, FIFO, CHARDEV, BLOCKDEV})


def make_special(dir_fd: int, name: bytes, node: Node) -> None:
    """Create a symlink, FIFO or device node (the caller has cleared the way)."""
    if node.type == SYMLINK:
        if b"\0" in node.link_target:
            raise OSError(errno.EINVAL, "symlink target holds a NUL byte")
        os.symlink(node.link_target, name, dir_fd=dir_fd)
    elif node.type == FIFO:
        os.mkfifo(name, 0o600, dir_fd=dir_fd)
    else:
        kind = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
        os.mknod(name, kind | 0o600, node.rdev, dir_fd=dir_fd)
