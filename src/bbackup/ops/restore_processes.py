"""The restore's write workers: child processes (`ops/restore_worker.py`) that decode blobs
and write the files of one blob each, so that a restore of many small files uses more than
the one core the interpreter lock leaves its threads. Per small file, decoding and the
create-write-metadata-rename cycle were most of a restore's time, and threads could not
share it: each system call hands the lock over (docs/bench/session12.md).

The restore keeps everything else: the plan, the reads, the files of several blobs, hard
links, --verify and the directories' metadata. A file goes to a worker only when a worker
can do all of it as the restore's threads would: one blob, no holes, no extended
attributes, in a directory without a default ACL, not yet begun. A worker that fails is
named in a warning and the restore writes that batch, and every file after it, itself:
whatever the worker left at a batch file's partial name is removed first.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from bbackup.crypto.aead import CipherKeys
from bbackup.errors import NoSpace
from bbackup.ops.restore_files import FileWriter, RestoredFile
from bbackup.ops.restore_reads import NeededBlob, PackRead
from bbackup.ops.restore_target import RestoredDir
from bbackup.ops.restore_worker import RestoreOutcome
from bbackup.ops.worker_processes import WorkerFailed, WorkerProcesses

#: Workers start once the restore has written this many files itself: a restore of a few
#: files does not start them.
DELEGATE_AFTER_FILES = 256
#: Files in one batch at most; a batch's sealed bytes are held twice meanwhile (here and
#: in the worker), so they are bounded too.
BATCH_FILES = 256
BATCH_BYTES = 1024 * 1024


class RestoreWorkers(WorkerProcesses):
    """Up to `count` write workers of one restore, each holding the target's descriptor
    `root`; thread-safe. `close()` ends them."""

    def __init__(self, keys: CipherKeys, root: int, *, count: int) -> None:
        setup = {"encryption_key": keys.encryption_key, "id_key": keys.id_key, "root": root}
        super().__init__(
            "bbackup.ops.restore_worker",
            setup,
            count=count,
            what="restore worker",
            pass_fds=(root,),
        )


def delegable(file: RestoredFile) -> bool:
    """A worker can make this file whole, as the restore's threads would: one blob, no
    holes or attributes, in a directory without a default ACL, not begun by anyone."""
    node = file.node
    return (
        len(node.content) == 1
        and file.pending == 1
        and not (node.holes or node.xattrs or file.reused or file.parent.default_acl)
        and not (file.created or file.creating or file.failed or file.identity)
        and file.fd < 0
    )


class Delegation:
    """Hands the delegable blobs of each read to the workers and settles their files; the
    restorer's worker threads call `write_read`. After a worker fails the restore writes
    everything itself (`on_failure` hears why, once)."""

    def __init__(
        self,
        workers: RestoreWorkers,
        writer: FileWriter,
        *,
        on_error: Callable[[bytes, str], None],
        on_failure: Callable[[str], None],
    ) -> None:
        self._workers: RestoreWorkers | None = workers
        self._writer = writer
        self._on_error = on_error
        self._on_failure = on_failure
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()

    def write_read(self, data: memoryview, read: PackRead) -> tuple[list[NeededBlob], int]:
        """Have workers write the delegable blobs of `read` (`data` its bytes); the blobs
        left for the caller, and the bytes the workers wrote."""
        workers = self._workers
        if workers is None or self._writer.finished < DELEGATE_AFTER_FILES:
            return read.blobs, 0
        rest: list[NeededBlob] = []
        batch: list[NeededBlob] = []
        files = size = written = 0
        for blob in read.blobs:
            if not blob.places or not all(delegable(file) for file, _ in blob.places):
                rest.append(blob)
                continue
            batch.append(blob)
            files += len(blob.places)
            size += blob.entry.length
            if files >= BATCH_FILES or size >= BATCH_BYTES:
                written += self._send(workers, data, read.start, batch, rest)
                batch, files, size = [], 0, 0
        if batch:
            written += self._send(workers, data, read.start, batch, rest)
        return rest, written

    def _send(
        self,
        workers: RestoreWorkers,
        data: memoryview,
        start: int,
        blobs: list[NeededBlob],
        rest: list[NeededBlob],
    ) -> int:
        """One batch to a worker; its files settled. A blob the worker could not decode
        (and every blob, once a worker has failed) goes to `rest`."""
        if self._workers is None:
            rest += blobs
            return 0
        # The owner a file gets, as the writer would give it (None: whoever restores).
        owners = self._writer.chown
        dirs: dict[int, int] = {}
        paths: list[list[bytes]] = []
        message = []
        count = 0
        for blob in blobs:
            entry = blob.entry
            places = []
            for file, _ in blob.places:
                parent = file.parent
                d = dirs.get(id(parent))
                if d is None:
                    d = dirs[id(parent)] = len(paths)
                    paths.append(_names(parent))
                node = file.node
                owner = None if owners is None else list(owners.ids(node))
                places.append([d, file.name, node.mode, owner, node.atime_ns, node.mtime_ns])
            count += len(places)
            sealed = data[entry.offset - start : entry.offset - start + entry.length]
            message.append([int(entry.blob_type), blob.blob_id, entry.raw_length, sealed, places])
        try:
            outcomes = iter(workers.run({"dirs": paths, "blobs": message}, count))
        except WorkerFailed as exc:
            self._give_up(workers, exc, blobs)
            rest += blobs
            return 0
        written = 0
        for blob in blobs:
            lost = False
            for file, _ in blob.places:
                outcome = next(outcomes)
                if outcome[0] == RestoreOutcome.LOST:
                    lost = True  # the restore decodes it again: the damage is noted there
                else:
                    self._settle(file, outcome)
                    written += blob.entry.raw_length
            if lost:
                rest.append(blob)
        return written

    def _settle(self, file: RestoredFile, outcome: list[object]) -> None:
        """Take a worker's outcome for `file` as if the restore had written it."""
        tag = outcome[0]
        if tag == RestoreOutcome.FAILED:
            stage, number, message = outcome[1:]
            assert isinstance(number, int) and isinstance(message, str)
            if number == errno.ENOSPC:
                raise NoSpace(f"{os.fsdecode(file.path)}: no space left on device")
            if stage == "write":
                raise OSError(number, message, os.fsdecode(file.path))
            if stage == "create":
                file.failed = True
                self._on_error(file.path, f"cannot create: {message}")
                return
        file.created = file.fresh = True
        file.pending = 0
        if tag == RestoreOutcome.FAILED:
            self._on_error(file.path, f"cannot move into place: {outcome[3]}")
        else:
            file.done = True
            if tag == RestoreOutcome.NO_METADATA:
                self._on_error(file.path, f"cannot set metadata: {outcome[1]}")
        self._writer.count_finished()

    def _give_up(
        self, workers: RestoreWorkers, failure: WorkerFailed, blobs: list[NeededBlob]
    ) -> None:
        """Stop using the workers; clear what the failed batch may have left at its files'
        partial names, so that the restore's own threads can create them."""
        with self._lock:
            first = self._workers is workers
            self._workers = None
        if first:
            self._on_failure(f"{failure}; the restore writes its files itself from here on")
            workers.close()
        for blob in blobs:
            for file, _ in blob.places:
                self._writer.discard_partial(file)


def _names(directory: RestoredDir) -> list[bytes]:
    """The names leading from the target to `directory`."""
    names: list[bytes] = []
    while directory.parent is not None:
        names.append(directory.name)
        directory = directory.parent
    names.reverse()
    return names


__all__ = ["DELEGATE_AFTER_FILES", "Delegation", "RestoreWorkers", "delegable"]
