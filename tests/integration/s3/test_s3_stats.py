"""`bbackup stats` on a repository with a known history, its data packs in GLACIER: sizes in
each mode, what each snapshot added and holds alone, bytes per storage class, and the
monthly cost from the price table; it never reads a data pack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree
from s3_harness import MiB, bucket_objects, server_requests

from s3_server import S3Bucket

pytestmark = pytest.mark.s3

GIB = 2**30


def test_stats_of_a_known_history(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    a = os.urandom(2 * MiB)
    b = os.urandom(MiB)
    c = os.urandom(MiB // 2)
    # a.bin twice (dedup), b.bin only in the first snapshot, c.bin only in the second.
    src = make_tree(tmp_path / "src", {"a.bin": a, "copy": {"a.bin": a}, "b.bin": b})
    url = s3_bucket.url
    assert cli("init", "-r", url).exit_code == 0
    glacier = ("--storage-class", "GLACIER")
    assert cli("backup", "-r", url, *glacier, src, "--time", "2026-01-01T00:00:00Z").exit_code == 0
    (src / "b.bin").unlink()
    (src / "c.bin").write_bytes(c)
    last = cli("backup", "-r", url, *glacier, src, "--time", "2026-01-02T00:00:00Z", "--json")
    assert last.exit_code == 0, last

    with server_requests() as requests:
        restore_size = cli("stats", "-r", url, "--json", "--cost", "--backups-per-month", "10")
        by_contents = cli("stats", "-r", url, "--json", "--mode", "files-by-contents")
        raw = cli("stats", "-r", url, "--json", "--mode", "raw-data", "latest")

    for result in (restore_size, by_contents, raw):
        assert result.exit_code == 0, result
    data = f"/{s3_bucket.bucket}/repo/data/"
    assert [p for m, p in requests if m == "GET" and p.startswith(data)] == []

    stats = restore_size.event("stats")
    first, second = stats["snapshots"]
    assert stats["snapshots_count"] == 2
    assert first["restore_size"] == 2 * len(a) + len(b)
    assert second["restore_size"] == 2 * len(a) + len(c)
    assert stats["total_size"] == 4 * len(a) + len(b) + len(c)
    # Random data does not compress: stored is raw plus encryption overhead and trees.
    overhead = 64 * 1024
    assert len(a) + len(b) <= first["added_size"] < len(a) + len(b) + overhead
    assert len(c) <= second["added_size"] < len(c) + overhead
    assert len(b) <= first["unique_size"] < len(b) + overhead
    assert len(c) <= second["unique_size"] < len(c) + overhead
    content = len(a) + len(b) + len(c)
    assert content <= stats["raw_data_size"] < content + overhead
    assert stats["dedup_ratio"] == pytest.approx(
        stats["total_size"] / stats["raw_data_size"], abs=1e-3
    )

    contents = by_contents.event("stats")
    assert contents["total_file_count"] == 3
    assert contents["total_size"] == len(a) + len(b) + len(c)
    latest = raw.event("stats")
    assert latest["snapshots_count"] == 1
    assert len(a) + len(c) <= latest["total_uncompressed_size"] < len(a) + len(c) + overhead
    assert latest["total_size"] == latest["stored_size"]

    listing = bucket_objects(s3_bucket, "repo/")
    glacier_bytes = sum(e["Size"] for e in listing if e["Key"].startswith("repo/data/"))
    standard_bytes = sum(e["Size"] for e in listing if not e["Key"].startswith("repo/data/"))
    assert stats["storage_classes"] == {
        "GLACIER": {"bytes": glacier_bytes, "objects": sum("/data/" in e["Key"] for e in listing)},
        "STANDARD": {
            "bytes": standard_bytes,
            "objects": sum("/data/" not in e["Key"] for e in listing),
        },
    }
    cost = stats["cost"]
    assert cost["storage_usd"]["GLACIER"] == pytest.approx(glacier_bytes / GIB * 0.0036, abs=1e-6)
    assert cost["storage_usd"]["STANDARD"] == pytest.approx(standard_bytes / GIB * 0.023, abs=1e-6)
    # The last backup's requests, as recorded in its snapshot: its data pack at GLACIER's
    # PUT price ($0.03/1000), the rest at STANDARD's ($0.005 PUT and LIST, $0.0004 GET).
    recorded = cost["backup_requests"]
    summary = last.event("summary")
    # Recorded just before the snapshot is stored, counting its own PUT.
    assert recorded["PUT"] == summary["requests"]["PUT"]
    data_puts = summary["packs_written"]
    expected = data_puts * 0.03 / 1000
    expected += (recorded["PUT"] - data_puts + recorded["LIST"]) * 0.005 / 1000
    expected += (recorded["GET"] + recorded["HEAD"]) * 0.0004 / 1000
    assert cost["backup_requests_usd"] == pytest.approx(expected, abs=1e-6)
    assert cost["total_usd"] == pytest.approx(
        glacier_bytes / GIB * 0.0036 + standard_bytes / GIB * 0.023 + 10 * expected, abs=1e-5
    )
