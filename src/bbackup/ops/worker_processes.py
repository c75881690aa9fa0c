"""Child processes that take a command's per-file work onto other cores than the one the
interpreter lock leaves its threads: the backup's seal workers (`ops/seal_worker.py`,
`ops/seal_processes.py`) and the restore's write workers (`ops/restore_worker.py`,
`ops/restore_processes.py`).

Workers start on first use, one batch at a time each; a thread hands a batch to an idle
worker and waits for its reply without holding the interpreter lock. They get their setup
(keys above all) as the first message on their stdin, never on a command line or in the
environment, and run in their own session, so Ctrl-C reaches only the command. A worker
that dies, answers out of turn or cannot start is a `WorkerFailed` naming it; the caller
decides what of its batch to do again itself.

What goes through the pipes: framed msgpack messages (`ops/worker_protocol.py`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import Any

from bbackup.errors import BbackupError
from bbackup.ops.worker_protocol import read_message, write_message

#: Seconds a worker gets to leave once its input ends, before it is killed.
EXIT_GRACE = 5.0


class WorkerFailed(BbackupError):
    """A worker process ended or answered out of turn; its batch's outcome is unknown."""


def worker_count(workers: int) -> int:
    """Worker processes for a command with `workers` threads: one per thread, up to the
    cores this process may run on; none on a single core, where they would only add work."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(workers, cores)


class WorkerProcesses:
    """Up to `count` workers running `python -m <module>`, each sent `setup` first;
    thread-safe. `close()` ends them. `what` names a worker in messages ("seal worker");
    `pass_fds`: descriptors the workers inherit (a restore's target)."""

    def __init__(
        self,
        module: str,
        setup: dict[str, Any],
        *,
        count: int,
        what: str,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self._module = module
        self._setup = setup
        self._what = what
        self._pass_fds = pass_fds
        self._count = count
        self._lock = threading.Lock()
        self._idle_changed = threading.Condition(self._lock)
        self._idle: list[subprocess.Popen[bytes]] = []
        self._started: list[subprocess.Popen[bytes]] = []
        self._closed = False

    def run(self, batch: Any, replies: int) -> list[Any]:
        """A worker's reply to `batch`, a list of `replies` outcomes; blocks the calling
        thread until an idle worker has answered."""
        process = self._take()
        assert process.stdin is not None and process.stdout is not None
        try:
            write_message(process.stdin, batch)
            reply = read_message(process.stdout)
        except (OSError, ValueError) as exc:
            raise self._failed(process, str(exc)) from exc
        if not isinstance(reply, list) or len(reply) != replies:
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
                    raise WorkerFailed(f"the {self._what}s were stopped")
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
                [sys.executable, "-m", self._module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=self._pass_fds,
                start_new_session=True,  # Ctrl-C is the command's to handle
            )
        except OSError as exc:
            raise WorkerFailed(f"cannot start a {self._what}: {exc.strerror or exc}") from exc
        assert process.stdin is not None
        try:
            write_message(process.stdin, self._setup)
        except OSError as exc:
            process.kill()
            process.wait()
            raise WorkerFailed(f"cannot start a {self._what}: {exc.strerror or exc}") from exc
        return process

    def _failed(self, process: subprocess.Popen[bytes], what: str) -> WorkerFailed:
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
        return WorkerFailed(f"{self._what} {process.pid} failed ({what}; exit status {status})")


__all__ = ["WorkerFailed", "WorkerProcesses", "worker_count"]
