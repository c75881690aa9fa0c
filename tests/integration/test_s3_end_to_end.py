"""The same user journey against S3 (a moto server over real HTTP): init, back up twice,
check the data, restore on a "new machine" (empty cache)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def test_s3_backup_dedups_checks_and_restores_without_the_local_cache(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, isolated_env: Path
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(3 * 1024 * 1024), "a.txt": "alpha\n", "sub": {"b": "beta\n"}},
    )
    assert cli("init", "-r", s3_bucket.url).exit_code == 0
    first = cli("backup", "-r", s3_bucket.url, "--json", src)
    assert first.exit_code == 0, first
    second = cli("backup", "-r", s3_bucket.url, "--json", src)
    assert second.exit_code == 0, second
    assert second.event("summary")["bytes_read"] == 0
    assert second.event("summary")["bytes_added"] < 256 * 1024
    assert s3_bucket.keys("repo/data/"), "no data packs landed in the bucket"
    check = cli("check", "-r", s3_bucket.url, "--read-data")
    assert check.exit_code == 0, check

    shutil.rmtree(isolated_env / ".cache", ignore_errors=True)
    target = tmp_path / "restore"
    restore = cli("restore", "latest", "-r", s3_bucket.url, "--target", target)
    assert restore.exit_code == 0, restore

    restored = restored_path(target, src)
    for path in src.rglob("*"):
        if path.is_file():
            assert (restored / path.relative_to(src)).read_bytes() == path.read_bytes(), path
