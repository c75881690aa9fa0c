"""A restore worker: a child process that decodes blobs and writes the small files each
makes whole, so that a restore of many small files uses more than the one core the
interpreter lock leaves its threads (`ops/restore_processes.py` starts and feeds it).

It runs as `python -m bbackup.ops.restore_worker`. It inherits the restore's descriptor of
its target; on stdin it gets the keys and that descriptor's number, then batches: the
directories the batch writes in (names below the target) and its blobs, each sealed, with
the files it fills. Per file it does what the restore's own threads do for a file of one
blob (`restore_files`): create `NAME.bbackup-partial` with O_EXCL, write, set owner, mode
and times through the descriptor, rename it to its name; and it replies with an outcome
per file, in order. Every directory is reached from the target one name at a time with
O_NOFOLLOW, as the restore reaches them, so a symlink is never followed. It ends when
stdin ends, and leaves the terminal's signals to the restore (its own session).

What goes through the pipes: `ops/worker_protocol.py`; the tags: `RestoreOutcome` below.
"""

from __future__ import annotations

import enum
import os
import sys
from collections import OrderedDict
from typing import Any

from bbackup.compression import decompress
from bbackup.crypto.aead import BlobType, Cipher, CipherKeys
from bbackup.errors import IntegrityError
from bbackup.ops.restore_files import CREATE_FLAGS, creation_mode, partial_name
from bbackup.ops.restore_metadata import OwnerMapping, set_metadata
from bbackup.ops.restore_target import DIRECTORY_FLAGS
from bbackup.ops.worker_protocol import WorkerKeys, read_message, serve, write_message
from bbackup.snapshot.model import FILE, Node

#: Directory descriptors a worker keeps open between files.
MAX_OPEN_DIRECTORIES = 64


class RestoreOutcome(enum.IntEnum):
    """The first item of a file's outcome."""

    #: Written, its metadata set, at its name.
    DONE = 0
    #: At its name, but its metadata not set: (message).
    NO_METADATA = 1
    #: Its blob did not decode: nothing was made (message).
    LOST = 2
    #: Not made, or left at its partial name: (stage: "create", "write" or "rename",
    #: errno, message). A failed write stops the restore, as in the restore's threads.
    FAILED = 3


def decode_sealed(
    cipher: Cipher, blob_type: BlobType, blob_id: bytes, raw_length: int, sealed: bytes
) -> bytes:
    """Open, decompress and verify one blob, as `RepositoryBlobs.decode_blob` does;
    IntegrityError if it is damaged."""
    payload = cipher.open_blob(blob_type, blob_id, sealed)
    try:
        plain = decompress(payload, raw_length)
    except Exception as exc:
        raise IntegrityError("cannot decompress") from exc
    if len(plain) != raw_length or cipher.blob_id(plain) != blob_id:
        raise IntegrityError("content does not match its ID")
    return plain


class _StageFailed(Exception):
    def __init__(self, stage: str, error: OSError) -> None:
        super().__init__(stage)
        self.stage = stage
        self.error = error


class FileMaker:
    """Writes the files of batches below the target `root` (a descriptor)."""

    def __init__(self, keys: CipherKeys, root: int) -> None:
        self._cipher = Cipher(keys)
        self._root = root
        self._dirs: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        self._owners = OwnerMapping(numeric=True)

    def make_batch(self, batch: dict[str, Any]) -> list[list[Any]]:
        dirs = [tuple(names) for names in batch["dirs"]]
        outcomes: list[list[Any]] = []
        for blob_type, blob_id, raw_length, sealed, files in batch["blobs"]:
            try:
                plain = decode_sealed(
                    self._cipher, BlobType(blob_type), blob_id, raw_length, sealed
                )
            except IntegrityError as exc:
                outcomes += [[RestoreOutcome.LOST, str(exc)]] * len(files)
                continue
            for d, name, mode, owner, atime_ns, mtime_ns in files:
                node = Node(name, FILE, mode=mode, atime_ns=atime_ns, mtime_ns=mtime_ns)
                if owner is not None:
                    node.uid, node.gid = owner
                try:
                    outcomes.append(self._make(dirs[d], node, plain, owner is not None))
                except _StageFailed as exc:
                    error = exc.error
                    message = error.strerror or str(error)
                    outcomes.append([RestoreOutcome.FAILED, exc.stage, error.errno or 0, message])
        return outcomes

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _make(self, names: tuple[bytes, ...], node: Node, plain: bytes, chown: bool) -> list[Any]:
        partial = partial_name(node.name)
        try:
            dir_fd = self._directory(names)
            fd = os.open(partial, CREATE_FLAGS, creation_mode(node), dir_fd=dir_fd)
        except OSError as exc:
            raise _StageFailed("create", exc) from exc
        problem = None
        try:
            try:
                view, position = memoryview(plain), 0
                while view:
                    done = os.pwrite(fd, view, position)
                    view, position = view[done:], position + done
            except OSError as exc:
                raise _StageFailed("write", exc) from exc
            try:
                set_metadata(fd, node, chown=self._owners if chown else None, bare=True)
            except OSError as exc:
                problem = exc.strerror or str(exc)
        finally:
            try:
                os.close(fd)
            except OSError as exc:
                raise _StageFailed("write", exc) from exc  # a failed write shows at close
        try:
            os.rename(partial, node.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            raise _StageFailed("rename", exc) from exc
        if problem is not None:
            return [RestoreOutcome.NO_METADATA, problem]
        return [RestoreOutcome.DONE]

    def _directory(self, names: tuple[bytes, ...]) -> int:
        """The descriptor of the directory `names` below the target, opened from the
        nearest one open, a name at a time, never through a symlink."""
        if not names:
            return self._root
        fd = self._dirs.get(names)
        if fd is not None:
            self._dirs.move_to_end(names)
            return fd
        parent = self._directory(names[:-1])
        fd = os.open(names[-1], DIRECTORY_FLAGS, dir_fd=parent)
        self._dirs[names] = fd
        while len(self._dirs) > MAX_OPEN_DIRECTORIES:
            _, oldest = self._dirs.popitem(last=False)
            os.close(oldest)
        return fd


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    setup = read_message(stdin)
    if setup is None:
        return 0
    maker = FileMaker(WorkerKeys(setup["encryption_key"], setup["id_key"]), setup["root"])
    try:
        while (batch := read_message(stdin)) is not None:
            write_message(stdout, maker.make_batch(batch))
    finally:
        maker.close()
    return 0


if __name__ == "__main__":
    serve(main)
