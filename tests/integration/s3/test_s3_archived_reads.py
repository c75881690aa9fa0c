"""Which commands read archived packs: `snapshots`, `ls`, `forget` and `prune` never do
(only `data/` is ever archived, and they read trees, index and snapshots), prune keeps a
partly unused archived pack rather than repack it, and `check --read-data` thaws before
it reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree
from s3_harness import MiB, bucket_objects, server_requests

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


@pytest.fixture
def glacier_history(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> tuple[str, Path]:
    """Two snapshots whose data packs are all in GLACIER; the second dropped b.bin, so
    forgetting the first leaves a pack partly unused. The cache is emptied after."""
    src = make_tree(
        tmp_path / "src",
        {"a.bin": os.urandom(3 * MiB), "b.bin": os.urandom(MiB // 2), "c.txt": "sea\n"},
    )
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "8").exit_code == 0
    for _ in range(2):
        result = cli("backup", "-r", url, "--storage-class", "GLACIER", src)
        assert result.exit_code == 0, result
        (src / "b.bin").unlink(missing_ok=True)
    classes = {e.get("StorageClass") for e in bucket_objects(s3_bucket, "repo/data/")}
    assert classes == {"GLACIER"}
    return url, tmp_path / "empty-cache"


def test_snapshots_ls_forget_and_prune_never_read_an_archived_pack(
    cli: Cli, s3_bucket: S3Bucket, glacier_history: tuple[str, Path]
) -> None:
    url, cache = glacier_history
    with server_requests() as requests:
        listed = cli("snapshots", "-r", url, "--cache-dir", cache, "--json")
        files = cli("ls", "-r", url, "latest", "--cache-dir", cache)
        forgot = cli("forget", "-r", url, "--keep-last", "1", "--cache-dir", cache)
        planned = cli("prune", "-r", url, "--dry-run", "--max-unused", "0", "--grace", "0s")
        pruned = cli("prune", "-r", url, "--max-unused", "0", "--grace", "0s")

    for result in (listed, files, forgot, planned, pruned):
        assert result.exit_code == 0, result
    assert "a.bin" in files.stdout and "b.bin" not in files.stdout
    data = f"/{s3_bucket.bucket}/repo/data/"
    reads = [path for method, path in requests if method == "GET" and path.startswith(data)]
    assert reads == []
    assert "prune never reads archived packs to repack them" in pruned.stdout
    assert "prune never reads archived packs to repack them" in planned.stdout
    # The partly unused pack is still there, still archived: nothing was repacked.
    left = bucket_objects(s3_bucket, "repo/data/")
    assert left and {e.get("StorageClass") for e in left} == {"GLACIER"}


def test_check_read_data_thaws_archived_packs_before_reading_them(
    cli: Cli,
    s3_bucket: S3Bucket,
    glacier_history: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = glacier_history
    monkeypatch.setenv("BBACKUP_THAW_POLL_SECONDS", "0.05")
    packs = [e["Key"] for e in bucket_objects(s3_bucket, "repo/data/")]

    result = cli("check", "-r", url, "--read-data")

    assert result.exit_code == 0, result
    assert f"waiting for {len(packs)} archived packs" in result.stderr
    assert "no errors were found" in result.stdout
    for key in packs:
        head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
        assert 'ongoing-request="false"' in head["Restore"]
