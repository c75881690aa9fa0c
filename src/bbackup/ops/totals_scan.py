"""Counting the files and bytes a backup will come to, beside it (restic's scanner), so
that progress can show totals, a percentage and an ETA. It only stats, reads nothing, and
is started only when progress is shown.

The walk runs in a child process, `python -m bbackup.ops.totals_scan`: in a thread it was
a second walk of every entry holding the interpreter lock the backup needs, up to a third
of the CPU of an unchanged backup of many small files (docs/bench/session10.md). The
child gets the sources and exclude patterns as JSON on its stdin and writes
"FILES BYTES" lines, then "done"; it leaves the terminal's signals to the backup (its own
session) and ends when the backup stops it or its stdout is gone. Standard library only,
to start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from bbackup.ops.excludes import Excluder

#: Seconds between two counts the child reports.
REPORT_INTERVAL = 0.2


class TotalsScan:
    """The totals scan of one backup: `files` and `bytes` so far, `finished` once the
    count is complete (or stopped: `stop()`). No child (it could not start): no totals."""

    def __init__(self, paths: Sequence[str], excluder: Excluder) -> None:
        self.files = 0
        self.bytes = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        request = json.dumps({"paths": list(paths), "patterns": excluder.patterns})
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "bbackup.ops.totals_scan"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C is the backup's to handle
            )
            assert self._child.stdin is not None
            self._child.stdin.write(request.encode())
            self._child.stdin.close()
        except OSError:
            self.stop()  # progress without totals; the backup goes on
            return
        self._reader = threading.Thread(target=self._read, name="bb-totals", daemon=True)
        self._reader.start()

    @property
    def finished(self) -> bool:
        """True once the count is complete (or stopped)."""
        return self._reader is None or not self._reader.is_alive()

    def _read(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        for line in self._child.stdout:
            parts = line.split()
            if len(parts) == 2:
                self.files, self.bytes = int(parts[0]), int(parts[1])

    def stop(self) -> None:
        """End the count where it is (the backup is done) and wait for the child."""
        child = self._child
        if child is not None:
            with contextlib.suppress(OSError):
                child.kill()
            child.wait()
        if self._reader is not None:
            self._reader.join()  # the child's stdout has ended with it
        if child is not None and child.stdout is not None:
            child.stdout.close()


def count(paths: Sequence[bytes], excluder: Excluder, out: IO[bytes]) -> None:
    """Count the regular files under `paths` and their bytes, writing the counts to `out`
    every REPORT_INTERVAL seconds and at the end, then "done"."""
    files = size = 0
    pending = []
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            pending.append(path)
        elif stat.S_ISREG(st.st_mode):
            files += 1
            size += st.st_size
    next_report = time.monotonic() + REPORT_INTERVAL
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    full = directory + b"/" + entry.name
                    if excluder.excluded(full):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(full)
                    elif entry.is_file(follow_symlinks=False):
                        files += 1
                        size += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # the backup reports what it cannot read
        if time.monotonic() >= next_report:
            out.write(b"%d %d\n" % (files, size))
            out.flush()
            next_report = time.monotonic() + REPORT_INTERVAL
    out.write(b"%d %d\ndone\n" % (files, size))
    out.flush()


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    paths = [os.fsencode(p) for p in request["paths"]]
    try:
        count(paths, Excluder(request["patterns"]), sys.stdout.buffer)
    except BrokenPipeError:  # the backup is gone: nobody to count for
        os._exit(0)


if __name__ == "__main__":
    main()
