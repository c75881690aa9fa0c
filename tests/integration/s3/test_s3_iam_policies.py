"""The three IAM policies of infra/policies/, enforced for real by moto: a backup credential
backs up but cannot forget or prune (exit 17, the bucket unchanged); a restore-only
credential lists and restores byte-identical files but cannot back up (exit 17, the bucket
unchanged); the maintenance credential does what the others cannot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, restored_path

from iam_server import Credential, IamUsers, infra_policy
from s3_server import MotoEndpoint, S3Bucket

pytestmark = pytest.mark.s3

ACCESS_DENIED = 17
ROLES = ("backup", "maintenance", "restore")

AsUser = Callable[..., CliResult]


@pytest.fixture
def users(moto_endpoint: MotoEndpoint, s3_bucket: S3Bucket) -> Iterator[dict[str, Credential]]:
    """One user per infra/ policy for this bucket's repository, and the admin."""
    iam = IamUsers(moto_endpoint)
    try:
        made = {r: iam.create(r, infra_policy(r, s3_bucket.bucket, "repo")) for r in ROLES}
        with iam.enforcing():
            yield {**made, "admin": iam.admin}
    finally:
        iam.close()


@pytest.fixture
def as_user(cli: Cli, monkeypatch: pytest.MonkeyPatch, users: dict[str, Credential]) -> AsUser:
    """Run bbackup with one of the users' access keys."""

    def run(role: str, *args: str | Path) -> CliResult:
        for key, value in users[role].env().items():
            monkeypatch.setenv(key, value)
        return cli(*args)

    return run


def bucket_state(bucket: S3Bucket, users: dict[str, Credential]) -> dict[str, str]:
    """Every object and its ETag (an overwrite changes it), read as the admin."""
    client = users["admin"].s3_client(bucket.endpoint)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", ())}
    finally:
        client.close()


def assert_denied(result: CliResult) -> None:
    assert result.exit_code == ACCESS_DENIED, result
    assert "Traceback" not in result.output
    assert "access denied" in result.stderr


def test_a_backup_credential_backs_up_but_cannot_forget_or_prune(
    as_user: AsUser, users: dict[str, Credential], s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    url = s3_bucket.url
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"first version\n" * 1000)
    assert as_user("maintenance", "init", "-r", url).exit_code == 0
    assert as_user("backup", "backup", "-r", url, src).exit_code == 0
    (src / "a.txt").write_bytes(b"second version\n" * 1000)
    second = as_user("backup", "backup", "-r", url, src)
    assert second.exit_code == 0, second
    backed_up = bucket_state(s3_bucket, users)
    assert not [k for k in backed_up if k.startswith("repo/locks/")]  # removed its locks

    assert_denied(as_user("backup", "forget", "-r", url, "--keep-last", "1"))
    assert bucket_state(s3_bucket, users) == backed_up

    forgot = as_user("maintenance", "forget", "-r", url, "--keep-last", "1")
    assert forgot.exit_code == 0, forgot
    forgotten = bucket_state(s3_bucket, users)

    assert_denied(as_user("backup", "prune", "-r", url, "--grace", "0s"))
    assert bucket_state(s3_bucket, users) == forgotten

    pruned = as_user("maintenance", "prune", "-r", url, "--grace", "0s")
    assert pruned.exit_code == 0, pruned
    remaining = bucket_state(s3_bucket, users)
    assert len([k for k in remaining if k.startswith("repo/data/")]) < len(
        [k for k in forgotten if k.startswith("repo/data/")]
    )


def test_a_restore_credential_restores_but_cannot_back_up(
    as_user: AsUser, users: dict[str, Credential], s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    url = s3_bucket.url
    src = tmp_path / "src"
    src.mkdir()
    (src / "report.bin").write_bytes(bytes(range(256)) * 4096)
    assert as_user("maintenance", "init", "-r", url).exit_code == 0
    assert as_user("backup", "backup", "-r", url, src).exit_code == 0
    before = bucket_state(s3_bucket, users)

    restored = as_user("restore", "restore", "-r", url, "latest", "--target", tmp_path / "out")

    assert restored.exit_code == 0, restored
    target = restored_path(tmp_path / "out", src)
    assert (target / "report.bin").read_bytes() == (src / "report.bin").read_bytes()
    assert as_user("restore", "snapshots", "-r", url).exit_code == 0
    listed = as_user("restore", "ls", "-r", url, "latest")
    assert listed.exit_code == 0 and "report.bin" in listed.stdout, listed

    (src / "new.txt").write_text("never stored\n")
    assert_denied(as_user("restore", "backup", "-r", url, src))
    assert bucket_state(s3_bucket, users) == before


def test_only_the_maintenance_credential_manages_lifecycle_rules(
    as_user: AsUser, users: dict[str, Credential], s3_bucket: S3Bucket
) -> None:
    ladder = ("-r", s3_bucket.url, "-t", "GLACIER_IR:90")

    assert_denied(as_user("backup", "lifecycle", "apply", *ladder))
    assert_denied(as_user("restore", "lifecycle", "show", "-r", s3_bucket.url))

    applied = as_user("maintenance", "lifecycle", "apply", *ladder)
    assert applied.exit_code == 0, applied
    shown = as_user("maintenance", "lifecycle", "show", "-r", s3_bucket.url)
    assert "bbackup-tiering:repo/ (bbackup, this repository)" in shown.stdout
