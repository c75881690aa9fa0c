"""Backup, restore and check through the real stack over HTTP to moto, with faults injected
directly above the S3 backend: failed calls, truncated reads, lost PUT responses, delays."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, restored_path
from s3_harness import (
    MiB,
    bucket_objects,
    misnamed_objects,
    mixed_tree,
    run_operation,
    source_files,
)

from bbackup.ops.backup import Archiver, BackupOptions
from bbackup.ops.check import check_repository
from bbackup.ops.check_read_data import ReadDataSubset
from bbackup.ops.check_report import CheckReport
from bbackup.ops.restore import Restorer
from bbackup.ops.restore_report import RestoreSummary
from bbackup.repository import RepositoryConfig, init_repository, open_repository
from bbackup.snapshot.store import find_snapshot, load_snapshots
from bbackup.storage import Storage, StorageOptions, StorageStack
from bbackup.storage.fault import FaultyStorage
from s3_server import S3Bucket

pytestmark = pytest.mark.s3


class FaultPlan:
    """Wraps the backend of every stack the test opens in two fault layers, and adds up
    what they injected.

    The outer layer injects faults at random rates. Seeded or not, which calls it hits
    depends on how concurrent requests interleave, and a stack makes only tens of calls;
    so an inner layer makes sure, once per stack, that the first data pack PUT has its
    response lost and the first data pack GET comes back truncated.
    """

    def __init__(self, **rates: float) -> None:
        self.rates = rates
        self.wrappers: list[FaultyStorage] = []

    def wrap(self, backend: Storage) -> Storage:
        once = FaultyStorage(backend, fail_after_put_rate=1.0, truncate_rate=1.0)
        once.only = lambda name: name.startswith("data/") and not once.injected
        faulty = FaultyStorage(once, seed=len(self.wrappers), **self.rates)
        self.wrappers += [once, faulty]
        return faulty

    @property
    def injected(self) -> Counter[str]:
        return sum((w.injected for w in self.wrappers), Counter())


def test_backup_restore_and_check_survive_faults_and_leave_only_whole_objects(
    tmp_path: Path, s3_bucket: S3Bucket, cli: Cli
) -> None:
    src = mixed_tree(tmp_path / "src", big_files=3, big_size=3 * MiB, small_files=40)
    plan = FaultPlan(fail_rate=0.2, truncate_rate=0.1, fail_after_put_rate=0.1, delay=0.01)
    # All ten attempts fail at under 30% each about once in 300,000 calls; the budget
    # only bounds a hang.
    options = StorageOptions(wrap_backend=plan.wrap, retry_seconds=60)
    cache = tmp_path / "cache"

    async def init(stack: StorageStack) -> None:
        await init_repository(stack, PASSWORD, RepositoryConfig(pack_size=4 * MiB))

    async def backup(stack: StorageStack) -> int:
        repo = await open_repository(stack, PASSWORD, cache_root=cache)
        archiver = Archiver(repo, BackupOptions(paths=[str(src)], upload_slots=8))
        await archiver.run()
        return archiver.summary.errors

    async def restore(stack: StorageStack) -> RestoreSummary:
        # No cache: every index segment and tree comes through the faulty backend too.
        repo = await open_repository(stack, PASSWORD, use_cache=False)
        snapshot = find_snapshot(await load_snapshots(repo), "latest")
        return await Restorer(repo, snapshot, str(tmp_path / "restore"), connections=8).run()

    async def check(stack: StorageStack) -> CheckReport:
        repo = await open_repository(stack, PASSWORD, use_cache=False)
        return await check_repository(repo, read_data=ReadDataSubset(), connections=8)

    run_operation(s3_bucket.url, options, init)
    assert run_operation(s3_bucket.url, options, backup) == 0
    (src / "big-1.bin").write_bytes(os.urandom(2 * MiB))
    (src / "dir-3" / "new.txt").write_text("added after the first backup\n")
    assert run_operation(s3_bucket.url, options, backup) == 0
    restored = run_operation(s3_bucket.url, options, restore)
    report = run_operation(s3_bucket.url, options, check)

    injected = plan.injected
    assert injected["fail"] > 0 and injected["truncate"] > 0 and injected["fail_after_put"] > 0
    assert restored.errors == 0, restored.error_list
    assert source_files(restored_path(tmp_path / "restore", src)) == source_files(src)
    assert report.ok and not report.warnings, (report.errors, report.warnings)
    assert report.snapshots == 2
    assert report.packs_read == report.packs >= 4
    clean = cli("check", "-r", s3_bucket.url, "--read-data")
    assert clean.exit_code == 0 and "no errors were found" in clean.stdout, clean
    # Nothing half-written under a final name, no lock left behind, no upload pending.
    assert misnamed_objects(s3_bucket, "repo/") == []
    assert bucket_objects(s3_bucket, "repo/locks/") == []
    uploads = s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.bucket)
    assert uploads.get("Uploads", []) == []
