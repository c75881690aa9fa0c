"""`copy` from a local repository to S3 (a 3-2-1 off-site copy) with another password and
another chunker seed: every snapshot arrives with its fields, a second run copies nothing,
and a new machine restores the copy byte- and metadata-identical."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, restored_path, run_subprocess
from copy_harness import SOURCE_PASSWORD, Source, make_source, picture, snapshot_fields
from s3_harness import bucket_objects

from s3_server import TEST_CREDENTIALS, S3Bucket

pytestmark = pytest.mark.s3


@pytest.fixture
def source(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> Source:
    return make_source(tmp_path, cli, make_tree, monkeypatch)


def stored_keys(bucket: S3Bucket) -> list[str]:
    """Every object in the bucket but locks (which come and go with each command)."""
    return [e["Key"] for e in bucket_objects(bucket) if "/locks/" not in e["Key"]]


def test_copy_to_s3_keeps_every_snapshot_and_a_new_machine_restores_it_identically(
    tmp_path: Path, cli: Cli, source: Source, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0

    first = cli("copy", "-r", url, *source.from_args(), "--json")

    assert first.exit_code == 0, first
    summary = first.event("summary")
    assert summary["mode"] == "rechunk"  # another key, another chunker seed
    assert [c["source"] for c in summary["copied"]] == source.snapshot_ids
    assert summary["bytes_added"] >= 5 * 1024 * 1024  # both big files, stored once each
    with monkeypatch.context() as env:
        env.setenv("BBACKUP_PASSWORD", SOURCE_PASSWORD)
        source_listing = cli("snapshots", "-r", source.repo, "--json").snapshot_list()
    copy_listing = cli("snapshots", "-r", url, "--json").snapshot_list()
    assert snapshot_fields(copy_listing) == snapshot_fields(source_listing)
    assert [s["original"] for s in copy_listing] == source.snapshot_ids

    # Idempotent: a second run (the source's password from the environment this time)
    # copies nothing, says so, and leaves the bucket as it was.
    before = stored_keys(s3_bucket)
    monkeypatch.setenv("BBACKUP_FROM_PASSWORD", SOURCE_PASSWORD)
    second = cli("copy", "-r", url, "--from-repo", source.repo)
    assert second.exit_code == 0, second
    assert "nothing to copy: all 2 selected snapshots are in the target already" in second.stdout
    assert stored_keys(s3_bucket) == before

    assert cli("check", "-r", url, "--read-data").exit_code == 0  # the source: test_copy.py

    # A new machine: another HOME, no cache, only the URL, credentials and the password.
    new_home = tmp_path / "new-home"
    new_home.mkdir()
    env_vars = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
        "HOME": str(new_home),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "BBACKUP_S3_ENDPOINT": s3_bucket.endpoint,
        "BBACKUP_PASSWORD": PASSWORD,
    }
    target = tmp_path / "restore"
    restored = run_subprocess("restore", "latest", "-r", url, "--target", target, env=env_vars)
    assert restored.exit_code == 0, restored
    assert picture(restored_path(target, source.src)) == picture(source.src)

    # The contents were cut with the target's chunker: a full backup of the same files
    # into the copy's repository finds every chunk there already.
    again = cli("backup", "-r", url, "--type", "full", "--json", source.src)
    assert again.exit_code == 0, again
    assert again.event("summary")["bytes_added"] < 64 * 1024


def test_copy_from_s3_reaches_the_source_with_its_own_options_and_keeps_the_first_original(
    tmp_path: Path, cli: Cli, source: Source, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_bucket.url
    assert cli("init", "-r", url).exit_code == 0
    assert cli("copy", "-r", url, *source.from_args(), source.snapshot_ids[0]).exit_code == 0
    monkeypatch.delenv("BBACKUP_S3_ENDPOINT")  # the source's endpoint only from its option
    back = tmp_path / "back-on-site"
    assert cli("init", "-r", back).exit_code == 0
    monkeypatch.setenv("BBACKUP_FROM_PASSWORD", PASSWORD)

    result = cli(
        "copy", "-r", back, "--from-repo", url, "--from-s3-endpoint", s3_bucket.endpoint,
        "--from-s3-region", "us-east-1", "--from-s3-path-style", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result
    listing = cli("snapshots", "-r", back, "--json").snapshot_list()
    assert [s["original"] for s in listing] == source.snapshot_ids[:1]
    # The copy of a copy is recognised as a copy of the first snapshot: nothing to do.
    monkeypatch.setenv("BBACKUP_FROM_PASSWORD", "not the password")  # the file wins over it
    again = cli("copy", "-r", back, *source.from_args(), source.snapshot_ids[0])
    assert "nothing to copy" in again.stdout, again
    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", back, "--target", target).exit_code == 0
    first = picture(restored_path(target, source.src))
    assert "more.bin" not in first and first["big.bin"] == picture(source.src)["big.bin"]
