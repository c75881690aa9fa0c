"""A restore from S3 planned window by window still reads each data pack once: the packs a
window boundary splits are carried over to the next window."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path
from s3_harness import bucket_objects, gets_under, server_requests

from bbackup.ops import restore_plan
from s3_server import S3Bucket

pytestmark = pytest.mark.s3

KiB = 1024


def test_small_files_restored_in_windows_read_each_pack_once(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(19)
    spec: dict[str, object] = {
        f"d{d}": {f"f{i:02d}.bin": rng.randbytes(150 * KiB) for i in range(20)} for d in range(3)
    }
    src = make_tree(tmp_path / "src", spec)  # type: ignore[arg-type]
    assert cli("init", "-r", s3_bucket.url, "--pack-size", "4").exit_code == 0
    assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
    packs = [f"/{s3_bucket.bucket}/{p['Key']}" for p in bucket_objects(s3_bucket, "repo/data/")]
    assert len(packs) >= 2
    # Windows of 8 files: most packs hold files of two or three windows.
    monkeypatch.setattr(restore_plan, "WINDOW_FILES", 8)
    target = tmp_path / "restore"

    with server_requests() as requests:
        result = cli("restore", "latest", "-r", s3_bucket.url, "--target", target)

    assert result.exit_code == 0, result
    restored = restored_path(target, src)
    for path in src.rglob("*.bin"):
        assert (restored / path.relative_to(src)).read_bytes() == path.read_bytes()
    assert sorted(gets_under(requests, s3_bucket, "repo/data/")) == sorted(packs)
