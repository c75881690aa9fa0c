"""A flipped bit in one index segment on S3: named and skipped, prune refuses, and
`repair index` rebuilds the index with one ranged read per pack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree, restored_path
from s3_harness import MiB, gets_under, server_requests, source_files

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


def flip_bit_in_middle(bucket: S3Bucket, key: str) -> None:
    body = bytearray(bucket.client.get_object(Bucket=bucket.bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x10
    bucket.client.put_object(Bucket=bucket.bucket, Key=key, Body=bytes(body))


def test_a_damaged_index_segment_on_s3_is_skipped_until_repair_index_rebuilds_it(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    url = s3_bucket.url
    src_a = make_tree(tmp_path / "a", {"big.bin": os.urandom(5 * MiB), "a.txt": "alpha\n"})
    src_b = make_tree(tmp_path / "b", {"photo.raw": os.urandom(2 * MiB), "b.txt": "beta\n"})
    ok(cli("init", "-r", url, "--pack-size", "4"))
    ok(cli("backup", "-r", url, src_a))
    [segment_a] = s3_bucket.keys("repo/index/")
    ok(cli("backup", "-r", url, src_b))
    listed = ok(cli("snapshots", "-r", url, "--json")).snapshot_list()
    snap_a, snap_b = (s["id"] for s in sorted(listed, key=lambda s: s["paths"] != [str(src_a)]))
    flip_bit_in_middle(s3_bucket, segment_a)
    name = segment_a.removeprefix("repo/")
    packs = s3_bucket.keys("repo/data/") + s3_bucket.keys("repo/tree/")

    out_b = tmp_path / "out-b"
    restored = ok(cli("restore", "-r", url, snap_b, "--target", out_b, "--no-cache"))
    assert source_files(restored_path(out_b, src_b)) == source_files(src_b)
    assert name in restored.stderr and "repair index" in restored.stderr
    checked = cli("check", "-r", url)
    assert checked.exit_code == 13, checked
    assert name in checked.stderr
    pruned = cli("prune", "-r", url, "--grace", "0s", "--no-cache")
    assert pruned.exit_code == 13, pruned
    assert s3_bucket.keys("repo/data/") + s3_bucket.keys("repo/tree/") == packs

    with server_requests() as requests:
        repaired = ok(cli("repair", "index", "-r", url, "--json"))
    report = repaired.event("repair_index")
    assert report["packs_read"] == len(packs)
    assert list(report["damaged_segments"]) == [name]
    pack_gets = gets_under(requests, s3_bucket, "repo/data/")
    pack_gets += gets_under(requests, s3_bucket, "repo/tree/")
    assert len(pack_gets) == len(packs)  # one ranged read of each pack's end
    assert segment_a not in s3_bucket.keys("repo/index/")

    ok(cli("check", "-r", url, "--read-data"))
    out_a = tmp_path / "out-a"
    ok(cli("restore", "-r", url, snap_a, "--target", out_a, "--no-cache"))
    assert source_files(restored_path(out_a, src_a)) == source_files(src_a)
    ok(cli("prune", "-r", url, "--grace", "0s"))
