"""What a restore from S3 asks the server for: each data pack it needs, once."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path
from s3_harness import MiB, bucket_objects, gets_under, server_requests

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def test_an_edited_file_is_restored_with_one_get_per_pack(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    rng = random.Random(5)
    data = bytearray(rng.randbytes(12 * MiB))
    src = make_tree(tmp_path / "src", {"big.bin": bytes(data)})
    assert cli("init", "-r", s3_bucket.url, "--pack-size", "16").exit_code == 0
    assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
    # Rewrite 1.5 MiB in the middle: the old chunks stay in the first pack, between
    # chunks the latest snapshot still needs, and the new ones go to a second pack.
    data[5 * MiB : 5 * MiB + 3 * MiB // 2] = rng.randbytes(3 * MiB // 2)
    (src / "big.bin").write_bytes(data)
    assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
    packs = [f"/{s3_bucket.bucket}/{p['Key']}" for p in bucket_objects(s3_bucket, "repo/data/")]
    assert len(packs) == 2

    target = tmp_path / "restore"
    with server_requests() as requests:
        result = cli("restore", "latest", "-r", s3_bucket.url, "--target", target)

    assert result.exit_code == 0, result
    assert (restored_path(target, src) / "big.bin").read_bytes() == data
    # One ranged GET per pack: skipping the stale chunks costs bytes, not a request.
    assert sorted(gets_under(requests, s3_bucket, "repo/data/")) == sorted(packs)
