"""The backup's seal workers: child processes (`ops/seal_worker.py`) that read small files
and hash, compress and seal each as one blob, so that a backup of many small files uses
more than the one core the interpreter lock leaves its threads. Per small file that work
was most of a first backup's interpreter time; the backup itself keeps the tree walk, the
dedup check and the packs (docs/bench/session11.md).

Workers start on first use, one batch at a time each; a reader thread hands a batch to an
idle worker and waits for its reply without holding the interpreter lock. A worker that
dies, answers nonsense or cannot start is a `SealWorkerFailed` naming it: its batch was
not stored, and the backup reads that batch and the rest itself (`chunk_pipeline`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import Any

from bbackup.crypto.keys import MasterKey
from bbackup.errors import BbackupError
from bbackup.ops.seal_protocol import read_message, write_message

#: Seconds a worker gets to leave once its input ends, before it is killed.
EXIT_GRACE = 5.0


class SealWorkerFailed(BbackupError):
    """A seal worker ended or answered out of turn; the backup cannot trust the batch."""


def seal_worker_count(workers: int) -> int:
    """Seal workers for a backup with `workers` reader threads: one per reader, up to the
    cores this process may run on; none on a single core, where they would only add work."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(workers, cores)


class SealWorkers:
    """Up to `count` seal workers of one backup; thread-safe. `close()` ends them."""

    def __init__(self, master: MasterKey, *, compression_level: int, limit: int, count: int):
        """`limit`: the largest file a worker seals is one byte shorter (the chunker's
        minimum chunk); a larger one comes back for the backup to chunk."""
        self._setup = {
            "encryption_key": master.encryption_key,
            "id_key": master.id_key,
            "level": compression_level,
            "limit": limit,
        }
        self._count = count
        self._lock = threading.Lock()
        self._idle_changed = threading.Condition(self._lock)
        self._idle: list[subprocess.Popen[bytes]] = []
        self._started: list[subprocess.Popen[bytes]] = []
        self._closed = False

    def seal(self, paths: list[bytes]) -> list[list[Any]]:
        """The outcomes of one batch (`seal_worker` tags), in order; blocks the calling
        reader thread until an idle worker has answered."""
        process = self._take()
        assert process.stdin is not None and process.stdout is not None
        try:
            write_message(process.stdin, paths)
            reply = read_message(process.stdout)
        except (OSError, ValueError) as exc:
            raise self._failed(process, str(exc)) from exc
        if not isinstance(reply, list) or len(reply) != len(paths):
            raise self._failed(process, "no answer" if reply is None else "a malformed answer")
        with self._lock:
            self._idle.append(process)
            self._idle_changed.notify()
        return reply

    def close(self) -> None:
        """End every worker: their input closes, they leave; one that does not is killed."""
        with self._lock:
            self._closed = True
            processes, self._started, self._idle = self._started, [], []
            self._idle_changed.notify_all()
        for process in processes:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def _take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            while True:
                if self._closed:
                    raise SealWorkerFailed("the seal workers were stopped")
                if self._idle:
                    return self._idle.pop()
                if len(self._started) < self._count:
                    process = self._start()
                    self._started.append(process)
                    return process
                self._idle_changed.wait()

    def _start(self) -> subprocess.Popen[bytes]:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "bbackup.ops.seal_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C is the backup's to handle
            )
        except OSError as exc:
            raise SealWorkerFailed(f"cannot start a seal worker: {exc.strerror or exc}") from exc
        assert process.stdin is not None
        try:
            write_message(process.stdin, self._setup)
        except OSError as exc:
            process.kill()
            process.wait()
            raise SealWorkerFailed(f"cannot start a seal worker: {exc.strerror or exc}") from exc
        return process

    def _failed(self, process: subprocess.Popen[bytes], what: str) -> SealWorkerFailed:
        with contextlib.suppress(OSError):
            process.kill()
        status = process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a write may be left unflushed
                    stream.close()
        with self._lock:
            if process in self._started:
                self._started.remove(process)
            self._idle_changed.notify()
        return SealWorkerFailed(f"seal worker {process.pid} failed ({what}; exit status {status})")


__all__ = ["SealWorkerFailed", "SealWorkers", "seal_worker_count"]
