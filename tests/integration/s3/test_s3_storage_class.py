"""`backup --storage-class` puts data packs, and only data packs, in that storage class."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree
from s3_harness import MiB, bucket_objects

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def test_storage_class_applies_to_data_packs_only(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    # More than a 4 MiB pack plus the largest chunk (8 MiB) can hold: two data packs at
    # least, whichever order the reader threads take the files in.
    src = make_tree(
        tmp_path / "src",
        {"a.bin": os.urandom(13 * MiB), "b.bin": os.urandom(MiB), "sub": {"c.txt": "c\n" * 99}},
    )
    assert cli("init", "-r", s3_bucket.url, "--pack-size", "4").exit_code == 0

    result = cli("backup", "-r", s3_bucket.url, "--storage-class", "STANDARD_IA", src)

    assert result.exit_code == 0, result
    listed = {e["Key"]: e.get("StorageClass", "STANDARD") for e in bucket_objects(s3_bucket)}
    data = {k: c for k, c in listed.items() if k.startswith("repo/data/")}
    others = {k: c for k, c in listed.items() if k not in data}
    assert len(data) >= 2, listed
    assert set(data.values()) == {"STANDARD_IA"}, data
    for key in data:
        head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
        assert head.get("StorageClass") == "STANDARD_IA", key
    kinds = {k.split("/")[1] for k in others}
    assert kinds == {"config", "keys", "tree", "index", "snapshots"}, others
    assert set(others.values()) == {"STANDARD"}, others
    for key in others:
        head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
        assert head.get("StorageClass", "STANDARD") == "STANDARD", key
