"""Object lock, versions and the backup-only credential on moto over HTTP (moto enforces
object lock, and IAM policies inside `IamUsers.enforcing()`): an attacker holding the
backup credential cannot destroy history, `--as-of` reads it back byte for byte and
`repair versions` makes it current again; locked packs survive deletes; prune finishes on
a locked repository and says when space is freed; `locks extend` touches only retentions
about to lapse; a snapshot with a forged time pushes no real one out."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cli_harness import PASSWORD, Cli, CliResult, restored_path

from bbackup.storage.s3_versions import S3Versions
from iam_server import Credential, IamUsers, infra_policy
from s3_server import TEST_CREDENTIALS, MotoEndpoint, S3Bucket

pytestmark = pytest.mark.s3

ACCESS_DENIED = 17


@dataclass(frozen=True)
class LockedBucket:
    """A bucket bbackup creates itself, with object lock, at `init --object-lock`."""

    endpoint: str
    bucket: str
    client: Any

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/repo"

    def current(self, prefix: str = "repo/") -> dict[str, str]:
        """Current objects and their ETags."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", ())}

    def versions(self, prefix: str = "repo/") -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [v for page in pages for v in page.get("Versions", ())]

    def retention(self, key: str) -> datetime:
        return self.client.head_object(Bucket=self.bucket, Key=key)["ObjectLockRetainUntilDate"]


@pytest.fixture
def locked(
    moto_endpoint: MotoEndpoint, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> Iterator[LockedBucket]:
    for key, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BBACKUP_S3_ENDPOINT", moto_endpoint.url)
    bucket = LockedBucket(
        moto_endpoint.url, f"bb-lock-{secrets.token_hex(6)}", moto_endpoint.client
    )
    try:
        yield bucket
    finally:
        _remove_governed_bucket(bucket)


def _remove_governed_bucket(bucket: LockedBucket) -> None:
    """Governance-mode locks yield to an explicit bypass: clean up what the test made."""
    with contextlib.suppress(ClientError):
        _delete_every_version(bucket.client, bucket.bucket)
        bucket.client.delete_bucket(Bucket=bucket.bucket)


def _delete_every_version(client: Any, bucket: str) -> None:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
            client.delete_object(
                Bucket=bucket,
                Key=v["Key"],
                VersionId=v["VersionId"],
                BypassGovernanceRetention=True,
            )


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ledger.bin").write_bytes(secrets.token_bytes(300_000))
    (src / "notes.txt").write_text("quarterly numbers\n" * 500)
    return src


def _init(run: Callable[..., CliResult], url: str, *flags: str) -> None:
    result = run("init", "-r", url, "--object-lock", *flags)
    assert result.exit_code == 0, result


def _moment_between() -> str:
    """A moment after everything written so far and before everything written next.
    Stores keep LastModified to the second, rounded down: what is written next must
    carry a later whole second than the moment."""
    moment = time.time()
    time.sleep(math.ceil(moment) - moment + 0.05)
    return datetime.fromtimestamp(moment, UTC).isoformat()


def _same_tree(restored: Path, src: Path) -> None:
    for name in ("ledger.bin", "notes.txt"):
        assert (restored / name).read_bytes() == (src / name).read_bytes()


# --- the attack ----------------------------------------------------------------------


@pytest.fixture
def users(moto_endpoint: MotoEndpoint, locked: LockedBucket) -> Iterator[dict[str, Credential]]:
    iam = IamUsers(moto_endpoint)
    try:
        made = {
            r: iam.create(r, infra_policy(r, locked.bucket, "repo"))
            for r in ("backup", "maintenance", "restore")
        }
        with iam.enforcing():
            yield {**made, "admin": iam.admin}
    finally:
        iam.close()


def test_an_attacker_with_the_backup_credential_cannot_destroy_history(
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    locked: LockedBucket,
    users: dict[str, Credential],
    tmp_path: Path,
) -> None:
    def as_user(role: str, *args: str | Path) -> CliResult:
        for key, value in users[role].env().items():
            monkeypatch.setenv(key, value)
        return cli(*args)

    admin = users["admin"].s3_client(locked.endpoint)
    locked = dataclasses.replace(locked, client=admin)  # the test's own eyes, under IAM
    src = _source(tmp_path)
    _init(lambda *a: as_user("admin", *a), locked.url, "7d")  # creates the locked bucket
    backed_up = as_user("backup", "backup", "-r", locked.url, src)
    assert backed_up.exit_code == 0, backed_up
    before_attack = _moment_between()

    # The attacker holds the backup credential: it deletes and overwrites all it can.
    attacker = users["backup"].s3_client(locked.endpoint)
    keys = list(locked.current())
    denied = 0
    for key in keys:
        try:
            attacker.delete_object(Bucket=locked.bucket, Key=key)
        except ClientError:
            denied += 1
        attacker.put_object(Bucket=locked.bucket, Key=key, Body=b"encrypted by ransomware")
        attacker.put_object(Bucket=locked.bucket, Key=key + ".locked", Body=b"pay up")
    version = locked.client.list_object_versions(Bucket=locked.bucket, Prefix="repo/data/")
    with pytest.raises(ClientError):
        attacker.delete_object(
            Bucket=locked.bucket,
            Key=version["Versions"][0]["Key"],
            VersionId=version["Versions"][0]["VersionId"],
        )
    with pytest.raises(ClientError):
        attacker.list_object_versions(Bucket=locked.bucket)
    assert denied == len(keys)  # no delete but of its own locks, and there are none left
    attacker.close()
    assert as_user("restore", "snapshots", "-r", locked.url).exit_code != 0  # config is junk

    # Recovery, read-only, with the restore credential: as of before the attack.
    listed = as_user("restore", "snapshots", "-r", locked.url, "--as-of", before_attack)
    assert listed.exit_code == 0 and "1 snapshots" in listed.stdout, listed
    files = as_user("restore", "ls", "-r", locked.url, "latest", "--as-of", before_attack)
    assert files.exit_code == 0 and "ledger.bin" in files.stdout, files
    out = tmp_path / "out"
    restored = as_user(
        "restore", "restore", "-r", locked.url, "latest", "--target", out,
        "--as-of", before_attack, "--no-cache",
    )  # fmt: skip
    assert restored.exit_code == 0, restored
    _same_tree(restored_path(out, src), src)
    checked = as_user("restore", "check", "-r", locked.url, "--read-data", "--as-of", before_attack)
    assert checked.exit_code == 0, checked
    assert "no errors were found" in checked.stdout

    # The maintenance credential makes that view current again; no version is deleted.
    versions_before = len(locked.versions())
    repaired = as_user(
        "maintenance", "repair", "versions", "-r", locked.url, "--as-of", before_attack, "--json"
    )
    assert repaired.exit_code == 0, repaired
    assert len(locked.versions()) > versions_before
    again = tmp_path / "again"
    plain = as_user("restore", "restore", "-r", locked.url, "latest", "--target", again)
    assert plain.exit_code == 0, plain
    _same_tree(restored_path(again, src), src)
    assert as_user("restore", "check", "-r", locked.url, "--read-data").exit_code == 0
    # Backups go on; the backup credential still cannot forget or prune, and changes
    # nothing trying.
    (src / "notes.txt").write_text("after the attack\n")
    assert as_user("backup", "backup", "-r", locked.url, src).exit_code == 0
    state = locked.current()
    denied_forget = as_user("backup", "forget", "-r", locked.url, "--keep-last", "1")
    assert denied_forget.exit_code == ACCESS_DENIED, denied_forget
    assert as_user("backup", "prune", "-r", locked.url).exit_code == ACCESS_DENIED
    assert locked.current() == state
    admin.close()


def test_a_locked_pack_survives_a_direct_delete_of_its_version(
    cli: Cli, locked: LockedBucket, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    _init(cli, locked.url, "7d")
    assert cli("backup", "-r", locked.url, src).exit_code == 0
    packs = [v for v in locked.versions("repo/data/")]
    assert packs
    # Every object bbackup wrote carries a retention of the lock period.
    for key in locked.current():
        head = locked.client.head_object(Bucket=locked.bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        left = head["ObjectLockRetainUntilDate"] - datetime.now(UTC)
        assert timedelta(days=6, hours=23) < left <= timedelta(days=7), key

    for pack in packs:
        with pytest.raises(ClientError, match="AccessDenied"):
            locked.client.delete_object(
                Bucket=locked.bucket, Key=pack["Key"], VersionId=pack["VersionId"]
            )

    assert [v["VersionId"] for v in locked.versions("repo/data/")] == [
        p["VersionId"] for p in packs
    ]
    restored = cli("restore", "-r", locked.url, "latest", "--target", tmp_path / "out")
    assert restored.exit_code == 0, restored
    _same_tree(restored_path(tmp_path / "out", src), src)


# --- prune ---------------------------------------------------------------------------


def test_prune_on_a_versioned_bucket_says_deleted_packs_stay_stored(
    cli: Cli, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    client, bucket = s3_bucket.client, s3_bucket.bucket
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        src = _source(tmp_path)
        assert cli("init", "-r", s3_bucket.url).exit_code == 0
        assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
        (src / "ledger.bin").write_bytes(secrets.token_bytes(300_000))
        assert cli("backup", "-r", s3_bucket.url, src).exit_code == 0
        assert cli("forget", "-r", s3_bucket.url, "--keep-last", "1").exit_code == 0

        pruned = cli("prune", "-r", s3_bucket.url, "--grace", "0s", "--json")

        assert pruned.exit_code == 0, pruned
        versioned = pruned.event("prune")["versioned"]
        assert versioned["delete_markers"] >= 1 and versioned["locked"] == 0
        assert versioned["noncurrent_days"] is None and versioned["freed_after"] is None
        listing = client.list_object_versions(Bucket=bucket, Prefix="repo/data/")
        assert len(listing["Versions"]) > len(s3_bucket.keys("repo/data/"))  # still stored
    finally:
        _delete_every_version(client, bucket)


def test_prune_on_a_locked_repository_frees_nothing_locked_and_says_when_it_will(
    cli: Cli, locked: LockedBucket, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    _init(cli, locked.url, "30d")
    assert cli("backup", "-r", locked.url, src).exit_code == 0
    first = _moment_between()
    (src / "ledger.bin").write_bytes(secrets.token_bytes(300_000))
    assert cli("backup", "-r", locked.url, src).exit_code == 0
    locked.client.put_bucket_lifecycle_configuration(
        Bucket=locked.bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "bbackup-noncurrent:repo/",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "repo/"},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                }
            ]
        },
    )
    forgot = cli("forget", "-r", locked.url, "--keep-last", "1")
    assert forgot.exit_code == 0, forgot
    data_versions = {v["VersionId"] for v in locked.versions("repo/data/")}
    # The plan already knows: what it deletes stays stored, locked, until when.
    before = locked.current()
    plan = cli("prune", "-r", locked.url, "--grace", "0s", "--dry-run", "--json")
    assert plan.exit_code == 0, plan
    foreseen = plan.event("prune")["versioned"]
    assert foreseen["foreseen"] and foreseen["locked"] == foreseen["delete_markers"] >= 1
    assert locked.current() == before

    pruned = cli("prune", "-r", locked.url, "--grace", "0s", "--json")

    assert pruned.exit_code == 0, pruned
    versioned = pruned.event("prune")["versioned"]
    assert versioned["delete_markers"] >= 1
    assert versioned["locked"] == versioned["delete_markers"]
    assert versioned["noncurrent_days"] == 7
    locked_until = datetime.fromisoformat(versioned["locked_until"])
    assert timedelta(days=29) < locked_until - datetime.now(UTC) <= timedelta(days=30)
    assert versioned["freed_after"] == versioned["locked_until"]  # the lock outlasts 7 days
    # Hidden from the current view, nothing freed: every version is still stored.
    listing = locked.client.list_object_versions(Bucket=locked.bucket, Prefix="repo/")
    packs = [
        m for m in listing["DeleteMarkers"] if m["Key"].startswith(("repo/data/", "repo/tree/"))
    ]
    assert len(packs) == versioned["delete_markers"]
    assert data_versions <= {v["VersionId"] for v in locked.versions("repo/data/")}
    # A maintenance run keeps what is left locked; nothing lapses yet, so nothing is asked.
    again = cli("prune", "-r", locked.url, "--extend-locks")
    assert again.exit_code == 0, again
    assert "extended 0 of" in again.stdout and "0 PutObjectRetention" in again.stdout
    # The forgotten snapshot is still restorable from the versions.
    out = tmp_path / "old"
    old = cli("restore", "-r", locked.url, "latest", "--target", out, "--as-of", first)
    assert old.exit_code == 0, old
    assert (restored_path(out, src) / "notes.txt").read_text() == (src / "notes.txt").read_text()
    # The view of the past only reads.
    before = locked.current()
    refused = cli("backup", "-r", locked.url, src, "--as-of", first)
    assert refused.exit_code == 2, refused
    assert "which only reads" in refused.stderr
    assert locked.current() == before


# --- lock extension --------------------------------------------------------------------


def test_locks_extend_touches_only_retentions_about_to_lapse(
    cli: Cli, locked: LockedBucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _source(tmp_path)
    _init(cli, locked.url, "2d")
    assert cli("backup", "-r", locked.url, src).exit_code == 0
    keys = sorted(locked.current())
    lapsing = [k for k in keys if k.startswith(("repo/data/", "repo/snapshots/"))]
    soon = datetime.now(UTC) + timedelta(hours=1)
    for key in lapsing:
        locked.client.put_object_retention(
            Bucket=locked.bucket,
            Key=key,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon},
            BypassGovernanceRetention=True,
        )
    before = {k: locked.retention(k) for k in keys}
    sent: list[str] = []  # every PutObjectRetention request that goes out
    send = S3Versions.extend_retention

    async def counted(self: S3Versions, name: str, mode: str, until: float) -> None:
        sent.append(name)
        await send(self, name, mode, until)

    monkeypatch.setattr(S3Versions, "extend_retention", counted)

    extended = cli("locks", "extend", "-r", locked.url, "--margin", "47h", "--json")

    assert extended.exit_code == 0, extended
    report = extended.event("locks_extend")
    assert sorted(f"repo/{name}" for name in sent) == sorted(lapsing)
    assert report["requests"]["PutObjectRetention"] == len(lapsing) == report["extended"]
    after = {k: locked.retention(k) for k in keys}
    changed = sorted(k for k in keys if after[k] != before[k])
    assert changed == sorted(lapsing)
    for key in lapsing:
        assert after[key] - datetime.now(UTC) > timedelta(hours=47)


def test_locks_extend_asks_nothing_of_objects_written_within_the_lock_period(
    cli: Cli, locked: LockedBucket, tmp_path: Path
) -> None:
    _init(cli, locked.url, "30d")
    assert cli("backup", "-r", locked.url, _source(tmp_path)).exit_code == 0

    extended = cli("locks", "extend", "-r", locked.url, "--json")

    assert extended.exit_code == 0, extended
    report = extended.event("locks_extend")
    assert report["requests"] == {
        "ListObjectVersions": 1,
        "HeadObject": 0,
        "PutObjectRetention": 0,
    }
    assert report["live_objects"] == report["recent"] == len(locked.current()) > 0


# --- forged snapshot times -----------------------------------------------------------


def test_a_snapshot_with_a_forged_time_does_not_remove_a_real_one(
    cli: Cli, locked: LockedBucket, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    _init(cli, locked.url, "7d")
    real = cli("backup", "-r", locked.url, src, "--json")
    assert real.exit_code == 0, real
    real_id = real.event("summary")["snapshot_id"]
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    forged = cli("backup", "-r", locked.url, src, "--time", future, "--json")
    assert forged.exit_code == 0, forged
    forged_id = forged.event("summary")["snapshot_id"]

    trusting = cli("forget", "-r", locked.url, "--keep-last", "1", "--trust-times", "-n", "--json")
    decisions = {
        s["id"]: s["keep"] for g in trusting.event("forget")["groups"] for s in g["snapshots"]
    }
    assert decisions == {real_id: False, forged_id: True}  # what the forger wanted

    forgot = cli("forget", "-r", locked.url, "--keep-last", "1", "--json")

    assert forgot.exit_code == 0, forgot
    snapshots = {s["id"]: s for g in forgot.event("forget")["groups"] for s in g["snapshots"]}
    assert snapshots[real_id]["keep"] and snapshots[forged_id]["keep"]
    assert "kept outside the policy" in snapshots[forged_id]["reasons"][0]
    listed = cli("snapshots", "-r", locked.url)
    assert real_id[:8] in listed.stdout


# --- what is refused ------------------------------------------------------------------


def test_as_of_and_object_lock_are_refused_where_there_are_no_versions(
    cli: Cli, tmp_path: Path
) -> None:
    local = tmp_path / "repo"
    assert cli("init", "-r", local).exit_code == 0

    as_of = cli("snapshots", "-r", local, "--as-of", "2026-12-01T00:00Z")
    bad_time = cli("snapshots", "-r", local, "--as-of", "yesterday")
    lock = cli("init", "-r", tmp_path / "other", "--object-lock", "30d")

    assert as_of.exit_code == bad_time.exit_code == lock.exit_code == 2
    assert "only S3 repositories have" in as_of.stderr
    assert "use ISO 8601" in bad_time.stderr
    assert "not on a store with S3 object lock" in lock.stderr
    assert not (tmp_path / "other").exists()


def test_init_refuses_object_lock_in_a_bucket_without_it(cli: Cli, s3_bucket: S3Bucket) -> None:
    result = cli("init", "-r", s3_bucket.url, "--object-lock", "30d")

    assert result.exit_code == 1, result
    assert "has no object lock and no versioning" in result.stderr
    assert s3_bucket.keys() == []


def test_copy_as_of_carries_the_state_before_an_attack_into_a_new_repository(
    cli: Cli, locked: LockedBucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _source(tmp_path)
    _init(cli, locked.url, "7d")
    assert cli("backup", "-r", locked.url, src).exit_code == 0
    before_attack = _moment_between()
    for key in locked.current():
        locked.client.put_object(Bucket=locked.bucket, Key=key, Body=b"encrypted by ransomware")
    fresh = tmp_path / "fresh"
    assert cli("init", "-r", fresh).exit_code == 0
    monkeypatch.setenv("BBACKUP_FROM_PASSWORD", PASSWORD)

    copied = cli("copy", "-r", fresh, "--from-repo", locked.url, "--as-of", before_attack)

    assert copied.exit_code == 0, copied
    out = tmp_path / "out"
    assert cli("restore", "-r", fresh, "latest", "--target", out).exit_code == 0
    _same_tree(restored_path(out, src), src)


def test_repair_versions_hides_drill_records_written_since_the_moment(
    cli: Cli, locked: LockedBucket, tmp_path: Path
) -> None:
    # A drill record says which packs were proven restorable: one written by whoever
    # holds the backup machine after the moment must not steer drills after the repair.
    src = _source(tmp_path)
    _init(cli, locked.url, "7d")
    assert cli("backup", "-r", locked.url, src).exit_code == 0
    before_attack = _moment_between()
    assert cli("drill", "-r", locked.url, "--sample", "100%").exit_code == 0
    assert [k for k in locked.current() if k.startswith("repo/drills/")]

    repaired = cli("repair", "versions", "-r", locked.url, "--as-of", before_attack)

    assert repaired.exit_code == 0, repaired
    assert [k for k in locked.current() if k.startswith("repo/drills/")] == []
