"""A restore from S3 hands its small files to write workers too: the tree comes back
identical, metadata for metadata, from packs read with ranged GETs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, restored_path
from tree_metadata import tree_metadata

from bbackup.ops import restore_processes, worker_processes
from bbackup.ops.restore_processes import RestoreWorkers
from bbackup.ops.restore_worker import RestoreOutcome
from s3_server import S3Bucket

pytestmark = [
    pytest.mark.s3,
    pytest.mark.skipif(worker_processes.worker_count(2) == 0, reason="workers need two cores"),
]


def test_small_files_restored_from_s3_by_workers_are_identical(
    tmp_path: Path, cli: Cli, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restore_processes, "DELEGATE_AFTER_FILES", 0)
    done = {"files": 0}
    original = RestoreWorkers.run

    def counting(self: RestoreWorkers, batch: Any, replies: int) -> list[Any]:
        outcomes = original(self, batch, replies)
        done["files"] += sum(1 for o in outcomes if o[0] == RestoreOutcome.DONE)
        return outcomes

    monkeypatch.setattr(RestoreWorkers, "run", counting)
    src = tmp_path / "src"
    for i in range(300):
        path = src / f"d{i % 4}" / f"f{i:03}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(i * 13 % 3000 + 1))
        path.chmod(0o600 if i % 2 else 0o644)
        os.utime(path, ns=(1_650_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
    url = f"s3://{s3_bucket.bucket}/workers"
    assert cli("init", "-r", url).exit_code == 0
    assert cli("backup", "-r", url, src).exit_code == 0
    target = tmp_path / "restore"

    result = cli("restore", "latest", "-r", url, "--target", target, "--no-cache")

    assert result.exit_code == 0, result
    assert done["files"] == 300
    assert tree_metadata(restored_path(target, src)) == tree_metadata(src)
