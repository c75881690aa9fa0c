"""prune (and forget) beside a backup running in another process, on S3: the backup's
packs survive, its snapshot restores, and the repository checks clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_harness import Cli
from prune_harness import MiB, backup_at, ok, read_files, replace_tree, restore_files

from s3_server import S3Bucket

pytestmark = pytest.mark.s3

# The real CLI over a slow uplink: every pack upload waits argv[2] seconds first, so a
# 30 MB backup runs for a few seconds and prunes overlap all of it, commit included. No
# upload starts before the file argv[1] exists: the test creates it once a prune has
# finished, so on however busy a machine, one prune runs wholly inside the backup.
SLOW_UPLINK_BACKUP = """
import asyncio, os, sys

from bbackup.repository.writer import BlobWriter

gate, delay = sys.argv[1], float(sys.argv[2])
upload = BlobWriter._upload


async def slow_upload(self, *args, **kwargs):
    while not os.path.exists(gate):
        await asyncio.sleep(0.02)
    await asyncio.sleep(delay)
    await upload(self, *args, **kwargs)


BlobWriter._upload = slow_upload
from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[3:]]
main()
"""


def wait_for_lock(bucket: S3Bucket, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Return once the backup's lock object is in the bucket."""
    deadline = time.monotonic() + timeout
    while not bucket.keys("repo/locks/"):
        assert proc.poll() is None, "the backup ended before it took its lock"
        assert time.monotonic() < deadline, "the backup never took a lock"
        time.sleep(0.01)


def test_prune_beside_a_running_backup_never_deletes_what_the_backup_needs(
    tmp_path: Path, cli: Cli, s3_bucket: S3Bucket
) -> None:
    url = s3_bucket.url
    ok(cli("init", "-r", url, "--pack-size", "4"))
    # Two old snapshots; the running backup re-adds the first one's file, so it
    # deduplicates against a pack that forget makes unused while the backup runs.
    old = tmp_path / "old"
    reused = os.urandom(2 * MiB)
    backup_at(cli, url, replace_tree(old, {"old-1.bin": reused}), "2020-01-01T00:00:00+00:00")
    backup_at(
        cli, url, replace_tree(old, {"old-2.bin": os.urandom(2 * MiB)}), "2020-01-02T00:00:00+00:00"
    )
    src = replace_tree(
        tmp_path / "src",
        {"reused.bin": reused, **{f"new-{n:02}.bin": os.urandom(MiB) for n in range(28)}},
    )
    script = tmp_path / "slow_backup.py"
    script.write_text(SLOW_UPLINK_BACKUP)
    gate = tmp_path / "a-prune-finished"

    # Output goes to files: a pipe nobody reads while prunes run would fill and stall it.
    out, err = tmp_path / "backup.out", tmp_path / "backup.err"

    with out.open("w") as stdout, err.open("w") as stderr:
        backup = subprocess.Popen(
            [
                sys.executable,
                script,
                gate,
                "0.1",
                "backup",
                "-r",
                url,
                "--connections",
                "1",
                "--json",
                src,
            ],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "backup-cache")},
        )
        try:
            wait_for_lock(s3_bucket, backup)
            prunes_during_backup = 0
            while backup.poll() is None:
                ok(cli("forget", "-r", url, "--keep-last", "1"))
                ok(cli("prune", "-r", url, "--grace", "0s", "--max-unused", "0%"))
                prunes_during_backup += backup.poll() is None
                gate.touch()
            backup.wait(timeout=60)
        finally:
            backup.kill()
            backup.wait()

    assert backup.returncode == 0, err.read_text()
    assert prunes_during_backup >= 1, "no prune finished while the backup was running"
    summary = [json.loads(ln) for ln in out.read_text().splitlines() if '"summary"' in ln][-1]
    # With the backup gone, prune may delete what it only marked, and still nothing the
    # snapshot needs (it refuses to run if a pack a snapshot uses is missing).
    ok(cli("prune", "-r", url, "--grace", "0s"))
    ok(cli("check", "-r", url, "--read-data"))
    restored = restore_files(cli, url, summary["snapshot_id"], tmp_path / "restore", src)
    assert restored == read_files(src)
