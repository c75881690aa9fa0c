"""The backup's seal workers: child processes (`ops/seal_worker.py`) that read small files
and hash, compress and seal each as one blob, so that a backup of many small files uses
more than the one core the interpreter lock leaves its threads. Per small file that work
was most of a first backup's interpreter time; the backup itself keeps the tree walk, the
dedup check and the packs (docs/bench/session11.md).

A worker that dies, answers nonsense or cannot start is a `WorkerFailed` naming it:
its batch was not stored, and the backup reads that batch and the rest itself
(`chunk_pipeline`). Starting, feeding and ending workers: `ops/worker_processes.py`.
"""

from __future__ import annotations

from typing import Any

from bbackup.crypto.keys import MasterKey
from bbackup.ops.worker_processes import WorkerProcesses


class SealWorkers(WorkerProcesses):
    """Up to `count` seal workers of one backup; thread-safe. `close()` ends them."""

    def __init__(self, master: MasterKey, *, compression_level: int, limit: int, count: int):
        """`limit`: the largest file a worker seals is one byte shorter (the chunker's
        minimum chunk); a larger one comes back for the backup to chunk."""
        setup = {
            "encryption_key": master.encryption_key,
            "id_key": master.id_key,
            "level": compression_level,
            "limit": limit,
        }
        super().__init__("bbackup.ops.seal_worker", setup, count=count, what="seal worker")

    def seal(self, paths: list[bytes]) -> list[list[Any]]:
        """The outcomes of one batch (`seal_worker` tags), in order; blocks the calling
        reader thread until an idle worker has answered."""
        return self.run(paths, len(paths))


__all__ = ["SealWorkers"]
