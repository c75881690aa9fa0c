"""`copy`, `dump` and `drill` read packs in GLACIER through the thaw path, on moto over
HTTP: each requests restores for the packs it needs and no others, waits for them (moto
completes a restore at once), and then succeeds as it would on the hot tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, CliResult, MakeTree
from s3_harness import MiB, bucket_objects, server_requests

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


@pytest.fixture
def two_backups_in_glacier(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, Path, set[str]]:
    """(old source, new source, the data pack keys of the new source's backup): two
    backups of different directories, each in packs of its own, stored in GLACIER; then
    an empty cache, as on a new machine."""
    old = make_tree(tmp_path / "old", {"a.bin": os.urandom(MiB)})
    new = make_tree(tmp_path / "new", {"b.bin": os.urandom(MiB), "c.txt": "see\n"})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    assert cli("backup", "-r", url, "--storage-class", "GLACIER", old).exit_code == 0
    old_packs = set(data_keys(s3_bucket))
    assert cli("backup", "-r", url, "--storage-class", "GLACIER", new).exit_code == 0
    new_packs = set(data_keys(s3_bucket)) - old_packs
    assert old_packs and new_packs
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "new-machine-cache"))
    monkeypatch.setenv("BBACKUP_THAW_POLL_SECONDS", "0.05")
    return old, new, {f"/{s3_bucket.bucket}/{key}" for key in new_packs}


def data_keys(bucket: S3Bucket) -> list[str]:
    return [e["Key"] for e in bucket_objects(bucket, "repo/data/")]


def run_thawing(cli: Cli, bucket: S3Bucket, *args: str | Path) -> tuple[CliResult, list[str]]:
    """Run `bbackup ARGS`, which must succeed; its result, and the object paths of the
    RestoreObject requests it sent (the only POSTs bbackup sends to a key), sorted."""
    with server_requests() as requests:
        result = cli(*args)
    assert result.exit_code == 0, result
    prefix = f"/{bucket.bucket}/repo/data/"
    restores = [path for method, path in requests if method == "POST" and path.startswith(prefix)]
    return result, sorted(restores)


def test_copy_thaws_only_the_packs_of_the_snapshots_it_copies(
    tmp_path: Path,
    cli: Cli,
    s3_bucket: S3Bucket,
    two_backups_in_glacier: tuple[Path, Path, set[str]],
) -> None:
    _, new, new_packs = two_backups_in_glacier
    target = tmp_path / "target"
    assert cli("init", "-r", target).exit_code == 0
    password_file = tmp_path / "source.pass"
    password_file.write_text(PASSWORD)
    source = ["--from-repo", s3_bucket.url, "--from-password-file", password_file]

    result, restores = run_thawing(
        cli, s3_bucket, "copy", "-r", target, *source, "--path", new, "--json"
    )
    assert len(result.event("summary")["copied"]) == 1
    assert restores == sorted(new_packs)
    copied = cli("dump", "-r", target, "latest", str(new / "c.txt"))
    assert (copied.exit_code, copied.stdout) == (0, "see\n")


def test_dump_thaws_only_the_packs_of_the_path_it_writes(
    cli: Cli,
    s3_bucket: S3Bucket,
    two_backups_in_glacier: tuple[Path, Path, set[str]],
) -> None:
    _, new, new_packs = two_backups_in_glacier

    result, restores = run_thawing(
        cli, s3_bucket, "dump", "-r", s3_bucket.url, "latest", new / "c.txt"
    )
    assert result.stdout == "see\n"  # the thaw's lines went to stderr
    assert "waiting for 1 archived packs" in result.stderr
    assert restores == sorted(new_packs)


def test_drill_thaws_only_the_packs_of_its_sample(
    cli: Cli,
    s3_bucket: S3Bucket,
    two_backups_in_glacier: tuple[Path, Path, set[str]],
) -> None:
    _, new, new_packs = two_backups_in_glacier

    result, restores = run_thawing(
        cli, s3_bucket, "drill", "-r", s3_bucket.url, "latest", "--path", new, "--json"
    )
    summary = result.event("summary")
    assert summary["ok"] and summary["verified_files"] == 2
    assert restores == sorted(new_packs)
