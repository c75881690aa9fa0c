"""On S3, a backup interrupted after storing its packs is resumed by the next one with one
ranged read of each pack's end and almost nothing uploaded, as the server sees it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path
from s3_harness import (
    MiB,
    bucket_objects,
    gets_under,
    listed_prefixes,
    server_requests,
    source_files,
)

import bbackup.repository.writer
from s3_server import S3Bucket

pytestmark = pytest.mark.s3


async def interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt  # as Ctrl-C lands: the packs are stored, no index segment


def test_backup_after_an_interrupted_one_adopts_its_packs_with_one_ranged_read_each(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = s3_bucket.url
    src = make_tree(
        tmp_path / "src",
        {"one.bin": os.urandom(6 * MiB), "two.bin": os.urandom(5 * MiB), "a.txt": "alpha\n"},
    )
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    with monkeypatch.context() as patch:
        patch.setattr(bbackup.repository.writer.BlobWriter, "write_segment", interrupted)
        assert cli("backup", "-r", url, src).exit_code != 0
    packs = bucket_objects(s3_bucket, "repo/data/") + bucket_objects(s3_bucket, "repo/tree/")
    assert len(packs) >= 3 and bucket_objects(s3_bucket, "repo/index/") == []

    with server_requests() as requests:
        resumed = cli("backup", "-r", url, "--json", src)

    assert resumed.exit_code == 0, resumed
    summary = resumed.event("summary")
    assert summary["packs_adopted"] == len(packs)
    assert summary["bytes_added"] < 64 * 1024
    assert summary["requests"]["bytes_up"] < 256 * 1024
    pack_gets = gets_under(requests, s3_bucket, "repo/data/")
    assert len(pack_gets) == len(bucket_objects(s3_bucket, "repo/data/"))  # headers only
    assert summary["requests"]["bytes_down"] < len(packs) * 64 * 1024 + 64 * 1024
    assert cli("check", "-r", url, "--read-data").exit_code == 0
    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", url, "--target", target).exit_code == 0
    assert source_files(restored_path(target, src)) == source_files(src)

    # Nothing is unindexed now: the next backup lists data/ (with damaged/, as "d") and
    # not tree/, which it lists only when a data pack is unindexed.
    with server_requests(keep_query=True) as requests:
        assert cli("backup", "-r", url, src).exit_code == 0
    listed = listed_prefixes(requests, s3_bucket)
    assert "repo/d" in listed and "repo/tree/" not in listed, listed
