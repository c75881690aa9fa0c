"""The restorer's file side: writes blobs into restored files from worker threads, keeps
each file open while it has blobs still to come, and sets its metadata as the last lands.

A file is opened once (not once per blob), from its directory's descriptor and never
through a symlink, and closed right after its metadata is set through the same
descriptor, so no path is looked up twice and file metadata costs nothing at the end of a
restore. Descriptors are capped: past the cap a file with blobs still to come is closed
between writes and opened again by its next one.

A file is written under `NAME.bbackup-partial` and renamed to its name once complete, so an
interrupted restore never leaves an incomplete file under its final name. A file with a
blob that could not be read stays at the partial name, with holes where those blobs go.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bbackup.errors import NoSpace
from bbackup.ops.restore_metadata import OwnerMapping, set_metadata
from bbackup.ops.restore_target import OpenDirectories, RestoredDir, descriptor_limit, join_path
from bbackup.ops.sparse_files import parts_to_write
from bbackup.snapshot.model import Node

#: Files kept open between writes at most (and a quarter of the descriptor limit at most).
MAX_OPEN_FILES = 256
#: A file's first open creates it: its name was cleared while planning, so whatever is
#: there now was put there since (a symlink, a hard link to a file elsewhere) and is
#: refused rather than written through. Later opens find the file this one made.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
#: What a file is called until its last blob lands, and for good if a blob was damaged.
PARTIAL_SUFFIX = b".bbackup-partial"
_NAME_MAX = 255


def partial_name(name: bytes) -> bytes:
    """`NAME.bbackup-partial`; for a name too long to take the suffix, a name made from
    its hash (`.bbackup-partial-<hex>`), still recognisable and unique in its directory."""
    if len(name) + len(PARTIAL_SUFFIX) <= _NAME_MAX:
        return name + PARTIAL_SUFFIX
    return PARTIAL_SUFFIX + b"-" + hashlib.sha256(name).hexdigest()[:32].encode()


@dataclass(slots=True, eq=False)
class RestoredFile:
    """A regular file being restored: where it goes, what it was, what is still to come."""

    parent: RestoredDir
    name: bytes
    node: Node
    #: Writes still to come; the one that takes this to 0 sets the metadata.
    pending: int = 0
    fd: int = -1
    #: Threads writing through `fd` right now; it is closed only when none are.
    users: int = 0
    #: It exists at its name, made by this restore (its first open, or while planning).
    created: bool = False
    #: A thread is creating it now: others wait for that rather than race it.
    creating: bool = False
    #: It could not be created: its other writes are dropped (the error is reported once).
    failed: bool = False
    #: Blobs that could not be read: the file stays at its partial name.
    missing: tuple[bytes, ...] = ()
    #: Indices (in its content list) of blobs its partial file already held in place.
    reused: frozenset[int] = frozenset()
    #: (device, inode) of its partial file, taken when it is closed before its last blob
    #: (or when an earlier restore's is checked): every reopen must find it.
    identity: tuple[int, int] | None = None
    #: It is complete, at its final name, with its metadata.
    done: bool = False
    #: This restore created its partial file (empty): zeros in its holes need no write.
    #: A partial file left by an earlier restore may hold other bytes there.
    fresh: bool = False

    @property
    def partial(self) -> bytes:
        return partial_name(self.name)

    @property
    def path(self) -> bytes:
        return join_path(self.parent.path, self.name)


def creation_mode(node: Node) -> int:
    """The mode to create a file with: its own permission bits, so that usually no chmod
    is needed afterwards, and always read-write for us, so it can be opened again."""
    return (stat.S_IMODE(node.mode) & 0o777) | 0o600


class FileWriter:
    """Writes plaintext into restored files; thread-safe."""

    def __init__(
        self,
        directories: OpenDirectories,
        *,
        chown: OwnerMapping | None,
        on_error: Callable[[bytes, str], None],
    ) -> None:
        self.directories = directories
        self.chown = chown
        self.on_error = on_error
        #: Files whose metadata has been set (or failed to be).
        self.finished = 0
        self._lock = threading.Lock()
        self._created = threading.Condition(self._lock)
        self._open: set[RestoredFile] = set()
        self._max_open = max(1, min(MAX_OPEN_FILES, descriptor_limit() // 4))

    def write(self, file: RestoredFile, data: bytes | memoryview, offset: int) -> None:
        """Write `data` at `offset`; the file's last write also sets its metadata. A file
        that cannot be opened is reported once and gets no more writes; a failed write
        stops the restore."""
        if file.failed:
            return
        try:
            try:
                fd = self._acquire(file)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                with self._lock:
                    first, file.failed = not file.failed, True
                if first:
                    self.on_error(file.path, f"cannot create: {exc.strerror or exc}")
                return
            try:
                holes = file.node.holes if file.fresh else ()
                for position, view in parts_to_write(holes, offset, data):
                    while view:
                        done = os.pwrite(fd, view, position)
                        view, position = view[done:], position + done
            except BaseException:
                self._release(file, written=False)
                raise
            self._release(file, written=True)  # closing may report a failed write too
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NoSpace(f"{os.fsdecode(file.path)}: no space left on device") from exc
            raise

    def skip(self, file: RestoredFile, blob_id: bytes) -> None:
        """Count a blob that could not be read as landed, leaving a hole at its place: the
        file is still created (its other blobs are worth keeping) but never renamed."""
        with self._lock:
            file.missing += (blob_id,)
        self.write(file, b"", 0)

    def finish_reused(self, file: RestoredFile) -> None:
        """Finish a file whose partial file already holds every blob (a restore stopped
        before renaming it): its metadata, then its name."""
        parent_fd = self.directories.acquire(file.parent)
        try:
            fd = os.open(file.partial, _OPEN_FLAGS, dir_fd=parent_fd)
        finally:
            self.directories.release(file.parent)
        self._check_identity(file, fd)
        try:
            self._set_metadata(file, fd)
        finally:
            os.close(fd)
        self._rename_complete(file)
        with self._lock:
            self.finished += 1

    def finish_unwritten(self, file: RestoredFile, fd: int) -> None:
        """Set the metadata of a file that gets no writes, through the descriptor that
        created it while planning."""
        self._set_metadata(file, fd)
        file.done = True
        with self._lock:
            self.finished += 1

    def count_finished(self) -> None:
        """Count a file finished elsewhere (a write worker, `restore_processes`)."""
        with self._lock:
            self.finished += 1

    def discard_partial(self, file: RestoredFile) -> None:
        """Remove what a failed write worker may have left at a file's partial name
        (nothing else makes that name in this restore), so that it can be created here."""
        parent_fd = self.directories.acquire(file.parent)
        try:
            os.unlink(file.partial, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        finally:
            self.directories.release(file.parent)

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
            while file.creating:
                self._created.wait()
            if file.fd >= 0:
                return file.fd
            create = file.creating = not file.created
        try:
            parent_fd = self.directories.acquire(file.parent)
            try:
                flags = CREATE_FLAGS if create else _OPEN_FLAGS
                fd = os.open(file.partial, flags, creation_mode(file.node), dir_fd=parent_fd)
            finally:
                self.directories.release(file.parent)
            if not create:
                self._check_identity(file, fd)
        except BaseException:
            with self._lock:
                file.users -= 1
                if create:
                    file.creating = False
                    self._created.notify_all()
            raise
        with self._lock:
            if create:
                file.creating, file.created, file.fresh = False, True, True
                self._created.notify_all()
            if file.fd < 0:
                file.fd = fd
                self._open.add(file)
                return fd
            spare, fd = fd, file.fd  # another thread opened it meanwhile
        os.close(spare)
        return fd

    def _check_identity(self, file: RestoredFile, fd: int) -> None:
        """Make sure a reopened file is the one this restore made or checked: the inode
        it had then, with no other link. Someone who can write into the target could
        otherwise swap in a hard link to a file outside it between two opens."""
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino)
        if file.identity is None:
            file.identity = identity
        elif identity != file.identity or st.st_nlink != 1:
            os.close(fd)
            raise OSError(errno.EEXIST, "replaced by something else while being restored")

    def _release(self, file: RestoredFile, *, written: bool) -> None:
        with self._lock:
            file.users -= 1
            if written:
                file.pending -= 1
            last = file.pending == 0
            crowded = len(self._open) > self._max_open
            if file.users or not (last or crowded or not written):
                return
            if not (last and written) and file.identity is None:
                # Closed before its last blob: the next open must find this inode (taken
                # before another thread can reopen it). A file written through one
                # descriptor, as most are, never needs this fstat.
                st = os.fstat(file.fd)
                file.identity = (st.st_dev, st.st_ino)
            fd, file.fd = file.fd, -1
            self._open.discard(file)
        try:
            if last and written:
                if file.missing:
                    os.ftruncate(fd, file.node.size)  # holes up to its size, for what is lost
                else:
                    self._set_metadata(file, fd)
        finally:
            os.close(fd)
        if last and written:
            if not file.missing:
                self._rename_complete(file)
            with self._lock:
                self.finished += 1

    def _rename_complete(self, file: RestoredFile) -> None:
        """Move a complete file from its partial name to its own, replacing what is there
        (never following it: rename replaces a symlink itself)."""
        try:
            parent_fd = self.directories.acquire(file.parent)
            try:
                os.rename(file.partial, file.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            finally:
                self.directories.release(file.parent)
        except OSError as exc:
            self.on_error(file.path, f"cannot move into place: {exc.strerror or exc}")
            return
        file.done = True

    def _set_metadata(self, file: RestoredFile, fd: int) -> None:
        try:
            bare = file.fresh and not file.parent.default_acl
            set_metadata(fd, file.node, chown=self.chown, bare=bare)
        except OSError as exc:
            self.on_error(file.path, f"cannot set metadata: {exc.strerror or exc}")
