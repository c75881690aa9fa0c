"""The totals scan that progress shows (files and bytes a backup will come to): counted in
a child process, excludes applied as the backup applies them, names that are not UTF-8
counted, and a child whose backup is gone does not stay behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bbackup.ops.excludes import Excluder
from bbackup.ops.totals_scan import TotalsScan


def _wait_finished(scan: TotalsScan) -> None:
    deadline = time.monotonic() + 30
    while not scan.finished:
        assert time.monotonic() < deadline, "the totals scan never finished"
        time.sleep(0.01)


def test_totals_count_regular_files_and_bytes_without_the_excluded(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one").write_bytes(b"x" * 10)
    (tmp_path / "a" / "skip.tmp").write_bytes(b"x" * 1000)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "big").write_bytes(b"x" * 5000)
    os.symlink("one", tmp_path / "a" / "link")  # not a regular file: not counted
    with open(os.fsencode(tmp_path / "a") + b"/caf\xe9", "wb") as f:  # not UTF-8
        f.write(b"y" * 7)

    scan = TotalsScan([str(tmp_path)], Excluder(["*.tmp", f"{tmp_path}/cache"]))
    _wait_finished(scan)
    scan.stop()

    assert (scan.files, scan.bytes) == (2, 17)


def test_stop_ends_the_count_and_reaps_the_child(tmp_path: Path) -> None:
    scan = TotalsScan([str(tmp_path)], Excluder([]))
    scan.stop()
    assert scan.finished
    assert scan._child is not None and scan._child.returncode is not None


def test_the_child_ends_quietly_when_its_backup_is_gone(tmp_path: Path) -> None:
    for n in range(300):
        (tmp_path / f"d{n}").mkdir()
        (tmp_path / f"d{n}" / "f").write_bytes(b"z")
    errors = tmp_path / "stderr"
    with errors.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "bbackup.ops.totals_scan"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps({"paths": [str(tmp_path)], "patterns": []}).encode())
    child.stdin.close()
    child.stdout.close()  # the backup died: nobody reads the counts

    assert child.wait(timeout=30) == 0
    assert errors.read_bytes() == b""  # no traceback
