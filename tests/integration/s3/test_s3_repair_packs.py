"""A flipped bit in a data pack on S3: `repair packs --pack` reads only the pack named,
takes it out of the bucket keeping its intact blobs, and the next full backup restores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree, restored_path
from s3_harness import (
    MiB,
    bucket_objects,
    gets_under,
    listed_prefixes,
    misnamed_objects,
    server_requests,
    source_files,
)

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


def test_repair_packs_on_s3_reads_the_named_pack_only_and_the_next_full_backup_restores(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    url = s3_bucket.url
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(6 * MiB), "other.bin": os.urandom(2 * MiB), "a.txt": "alpha\n"},
    )
    ok(cli("init", "-r", url, "--pack-size", "4"))
    ok(cli("backup", "-r", url, src))
    largest = max(bucket_objects(s3_bucket, "repo/data/"), key=lambda e: e["Size"])
    key = largest["Key"]
    body = bytearray(s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=key)["Body"].read())
    body[len(body) // 3] ^= 0x04  # inside a blob: the header sits at the end
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=bytes(body))
    name = key.removeprefix("repo/")

    checked = cli("check", "-r", url, "--read-data")
    assert checked.exit_code == 13, checked
    assert name in checked.stderr and "bbackup repair packs" in checked.stderr

    with server_requests() as requests:
        repaired = ok(cli("repair", "packs", "-r", url, "--pack", name, "--json"))
    report = repaired.event("repair_packs")
    assert report["packs_read"] == 1 and list(report["damaged_packs"]) == [name]
    assert len(report["blobs_lost"]) == 1
    # The damaged pack is read (a retried GET would read it again), none of the others.
    assert set(gets_under(requests, s3_bucket, "repo/data/")) == {f"/{s3_bucket.bucket}/{key}"}
    assert key not in s3_bucket.keys("repo/data/")

    summary = ok(cli("backup", "-r", url, "--type", "full", "--json", src)).event("summary")
    assert summary["bytes_added"] > 0  # the lost chunk, uploaded again
    out = tmp_path / "out"
    ok(cli("restore", "-r", url, summary["snapshot_id"], "--target", out, "--no-cache"))
    assert source_files(restored_path(out, src)) == source_files(src)
    ok(cli("check", "-r", url, "--read-data"))
    assert misnamed_objects(s3_bucket, "repo/") == []


def test_a_backup_on_another_machine_sees_the_damage_record_without_listing_damaged(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    url = s3_bucket.url
    src = make_tree(tmp_path / "src", {"big.bin": os.urandom(6 * MiB), "a.txt": "alpha\n"})
    ok(cli("init", "-r", url, "--pack-size", "4"))
    ok(cli("backup", "-r", url, src))
    largest = max(bucket_objects(s3_bucket, "repo/data/"), key=lambda e: e["Size"])
    key = largest["Key"]
    body = bytearray(s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=key)["Body"].read())
    body[len(body) // 3] ^= 0x04
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=bytes(body))
    assert cli("check", "-r", url, "--read-data").exit_code == 13
    assert s3_bucket.keys("repo/damaged/"), "check recorded no damage"

    with server_requests(keep_query=True) as requests:
        backup = ok(cli("backup", "-r", url, "--cache-dir", tmp_path / "host-2", "--json", src))

    # The record came with the listing of data/ (prefix "d"): one LIST for both.
    listed = listed_prefixes(requests, s3_bucket)
    assert "repo/d" in listed and "repo/damaged/" not in listed, listed
    assert f"1 pack is recorded as damaged ({key.removeprefix('repo/')})" in backup.stderr
    summary = backup.event("summary")
    assert summary["bytes_added"] > 0  # the damaged blob, read and uploaded again
    out = tmp_path / "out"
    ok(cli("restore", "-r", url, summary["snapshot_id"], "--target", out, "--no-cache"))
    assert source_files(restored_path(out, src)) == source_files(src)
