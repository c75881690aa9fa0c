"""A seal worker: a child process that reads small files and hashes, compresses and seals
each as one blob, so that this per-file work runs on another core than the backup's tree
walk (`ops/seal_processes.py` starts and feeds it).

It runs as `python -m bbackup.ops.seal_worker`. On stdin it gets the master key and the
compression settings, then batches of paths; for each batch it writes one reply, an
outcome per path in order. It never writes anywhere else and keeps nothing: the backup
decides what is new and places it in packs. It ends when stdin ends, and leaves the
terminal's signals to the backup (its own session).

What goes through the pipes: `ops/seal_protocol.py`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bbackup.compression import compress
from bbackup.crypto.aead import BlobType, Cipher, CipherKeys
from bbackup.ops.file_open import Opened, open_regular, prefetch_window, read_each
from bbackup.ops.seal_protocol import EMPTY, FAILED, LARGE, SEALED
from bbackup.ops.worker_protocol import WorkerKeys, read_message, serve, write_message


class FileSealer:
    """Reads and seals the files of batches, as the reader threads do for a small file:
    read whole (up to `limit`, one chunk), read again once if it changed meanwhile."""

    def __init__(self, keys: CipherKeys, compression_level: int, limit: int) -> None:
        self._cipher = Cipher(keys)
        self._level = compression_level
        self._limit = limit
        self._ahead = prefetch_window(1)

    def seal_batch(self, paths: list[bytes]) -> list[list[Any]]:
        return read_each(paths, self._ahead, self._seal_file, _failed)

    def _seal_file(self, path: bytes, opened: Opened) -> list[Any]:
        data, changed = self._read(*opened)
        if changed:
            data, changed = self._read(*open_regular(path))
        if data is None:
            return [LARGE]
        if not data:
            return [EMPTY, changed]
        blob_id = self._cipher.blob_id(data)
        sealed = self._cipher.seal_blob(BlobType.DATA, blob_id, compress(data, self._level))
        return [SEALED, blob_id, len(data), sealed, changed]

    def _read(self, fd: int, before: os.stat_result) -> tuple[bytes | None, bool]:
        """The file's bytes (None: one chunk cannot hold them) and whether it changed
        while read; `fd` is closed here."""
        try:
            size, limit = before.st_size, self._limit
            data = b""
            if size < limit:
                data = os.read(fd, size + 1)
                while data and len(data) < limit and len(data) != size:  # grew, short read
                    more = os.read(fd, min(len(data) + 1, limit - len(data)))
                    if not more:
                        break
                    data += more
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if size >= limit or len(data) >= limit:
            return None, False
        changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
        return data, changed or len(data) != after.st_size


def _failed(error: OSError) -> list[Any]:
    return [FAILED, error.errno or 0, error.strerror or str(error)]


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    setup = read_message(stdin)
    if setup is None:
        return 0
    keys = WorkerKeys(setup["encryption_key"], setup["id_key"])
    sealer = FileSealer(keys, setup["level"], setup["limit"])
    while (paths := read_message(stdin)) is not None:
        write_message(stdout, sealer.seal_batch(paths))
    return 0


if __name__ == "__main__":
    serve(main)
