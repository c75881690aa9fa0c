"""Backing up an unchanged tree again downloads no data pack, with a warm cache or an
empty one, as seen by the server and by the `requests` counts of `backup --json`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree
from history_harness import store_lock
from s3_harness import MiB, bucket_objects, gets_under, listed_prefixes, server_requests

from bbackup.errors import ExitCode
from s3_server import S3Bucket

pytestmark = pytest.mark.s3

DATA_BYTES = 6 * MiB


def backup_seen_by_server(
    cli: Cli, s3_bucket: S3Bucket, src: Path
) -> tuple[CliResult, list[tuple[str, str]]]:
    with server_requests() as requests:
        result = cli("backup", "-r", s3_bucket.url, "--json", src)
    assert result.exit_code == 0, result
    assert gets_under(requests, s3_bucket, "repo/config"), "the server log recorded nothing"
    return result, requests


def test_unchanged_rebackup_downloads_no_data_pack_with_warm_or_empty_cache(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = make_tree(
        tmp_path / "src",
        {
            **{f"file-{i}.bin": os.urandom(DATA_BYTES // 4) for i in range(4)},
            "docs": {f"note-{i}.txt": f"note {i}\n" * 200 for i in range(20)},
        },
    )
    assert cli("init", "-r", s3_bucket.url, "--pack-size", "4").exit_code == 0
    assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
    assert len(bucket_objects(s3_bucket, "repo/data/")) >= 2

    warm, requests = backup_seen_by_server(cli, s3_bucket, src)

    assert gets_under(requests, s3_bucket, "repo/data/") == []
    # Index segments, snapshots and trees all come from the cache: only config and key.
    for cached in ("index/", "snapshots/", "tree/"):
        assert gets_under(requests, s3_bucket, f"repo/{cached}") == [], cached
    summary = warm.event("summary")
    assert summary["files_unchanged"] == 24 and summary["bytes_read"] == 0
    assert summary["requests"]["GET"] <= 3, summary["requests"]
    assert summary["requests"]["bytes_down"] < DATA_BYTES / 100, summary["requests"]

    # A machine that lost its cache (or a new cache directory) rebuilds it from the
    # repository's index, snapshots and trees, still without a data pack.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    metadata = [e for e in bucket_objects(s3_bucket, "repo/") if "/data/" not in e["Key"]]

    cold, requests = backup_seen_by_server(cli, s3_bucket, src)

    assert gets_under(requests, s3_bucket, "repo/data/") == []
    assert gets_under(requests, s3_bucket, "repo/tree/"), "the parent's trees were not read"
    downloaded = gets_under(requests, s3_bucket, "repo/")
    assert len(downloaded) == len(set(downloaded)), "an object was downloaded twice"
    summary = cold.event("summary")
    assert summary["files_unchanged"] == 24 and summary["bytes_read"] == 0
    # Each metadata object at most once, plus the backup's own lock (read back when it
    # checks for conflicting locks).
    assert summary["requests"]["GET"] <= len(metadata) + 1, summary["requests"]
    assert summary["requests"]["bytes_down"] < DATA_BYTES / 10, summary["requests"]
    assert (tmp_path / "empty-cache" / "bbackup").is_dir()


def test_empty_cache_rebackup_lists_keys_and_locks_in_one_request(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = make_tree(tmp_path / "src", {f"note-{i}.txt": f"note {i}\n" * 50 for i in range(5)})
    assert cli("init", "-r", s3_bucket.url).exit_code == 0
    assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))

    with server_requests(keep_query=True) as requests:
        result = cli("backup", "-r", s3_bucket.url, "--json", src)

    assert result.exit_code == 0, result
    assert result.event("summary")["files_unchanged"] == 5
    listed = listed_prefixes(requests, s3_bucket)
    # keys/ and locks/ before the lock is written (one listing), locks/ again after it is
    # written, snapshots/, index/, and data/ with the damage records (`d`): restic 0.18
    # sends 5 too (keys, locks twice, snapshots, index).
    assert len(listed) == 5, listed
    assert sorted(listed) == ["repo/", "repo/d", "repo/index/", "repo/locks/", "repo/snapshots/"]
    lock_put = next(i for i, (m, p) in enumerate(requests) if m == "PUT" and "/locks/" in p)
    listings = [i for i, (m, p) in enumerate(requests) if m == "GET" and "list-type=2" in p]
    after_lock = [listed[listings.index(i)] for i in listings if i > lock_put]
    # The conflict check after our lock is stored, and the index and snapshots read only
    # once the lock is visible, as before.
    assert sorted(after_lock) == ["repo/d", "repo/index/", "repo/locks/", "repo/snapshots/"]
    assert result.event("summary")["requests"]["LIST"] == 5


def test_empty_cache_backup_of_a_repository_locked_exclusively_writes_no_lock(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = make_tree(tmp_path / "src", {"note.txt": "note\n"})
    assert cli("init", "-r", s3_bucket.url).exit_code == 0
    lock_id = store_lock(s3_bucket.url, exclusive=True, at=time.time())  # a prune elsewhere
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))

    with server_requests() as requests:
        result = cli("backup", "-r", s3_bucket.url, src)

    assert result.exit_code == ExitCode.LOCKED, result
    assert "locked" in result.stderr and "nas" in result.stderr
    # Refused by the check before writing, from the listing made with the key files.
    assert not [p for m, p in requests if m == "PUT" and "/locks/" in p]
    assert [o["Key"] for o in bucket_objects(s3_bucket, "repo/locks/")] == [f"repo/locks/{lock_id}"]
