"""prune on S3 with data packs in GLACIER: archived packs are never read or repacked, unused
ones are deleted, and the early-deletion charge is reported before it is incurred."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cli_harness import CHEAPEST_KDF, PASSWORD, Cli, CliResult
from prune_harness import MiB, backup_at, ok, replace_tree
from typer.testing import CliRunner

from bbackup.cli.app import app
from s3_server import TEST_CREDENTIALS, MotoEndpoint, S3Bucket

pytestmark = pytest.mark.s3


@dataclass(frozen=True)
class GlacierRepo:
    url: str
    #: data packs by role: "unused" (only in a forgotten snapshot), "partial" (holds one
    #: file still used and one that is not), "used" (only what the kept snapshot added)
    packs: dict[str, str]


def data_objects(bucket: S3Bucket) -> dict[str, dict[str, Any]]:
    """Every data pack in the bucket: key → what S3 says about it."""
    paginator = bucket.client.get_paginator("list_objects_v2")
    return {
        entry["Key"]: {
            "etag": entry["ETag"],
            "modified": entry["LastModified"],
            "class": entry.get("StorageClass", "STANDARD"),
        }
        for page in paginator.paginate(Bucket=bucket.bucket, Prefix="repo/data/")
        for entry in page.get("Contents", ())
    }


@dataclass(frozen=True)
class GlacierTemplate:
    """The repository every test copies: built once, in STANDARD so it can be copied."""

    bucket: str
    packs: dict[str, str]


@pytest.fixture(scope="module")
def glacier_template(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: MotoEndpoint
) -> Iterator[GlacierTemplate]:
    """Three backups (each adds one data pack) and the first two forgotten, made once per
    module: three backups per test were most of this file's time. Module fixtures come
    before the per-test isolated environment, so this one builds its own."""
    root = tmp_path_factory.mktemp("glacier-template")
    bucket = moto_endpoint.create_bucket()
    url = f"s3://{bucket}/repo"
    isolated: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith(("AWS_", "BBACKUP_", "XDG_"))
    }
    env = {
        **isolated,
        **TEST_CREDENTIALS,
        "HOME": str(root),
        "XDG_CACHE_HOME": str(root / "cache"),
        "BBACKUP_S3_ENDPOINT": moto_endpoint.url,
        "BBACKUP_PASSWORD": PASSWORD,
    }
    runner = CliRunner()

    def cli(*args: str | os.PathLike[str]) -> CliResult:
        result = runner.invoke(app, [os.fspath(a) for a in args], env=env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def data_keys() -> set[str]:
        listing = moto_endpoint.client.list_objects_v2(Bucket=bucket, Prefix="repo/data/")
        return {entry["Key"] for entry in listing.get("Contents", ())}

    ok(cli("init", "-r", url, *CHEAPEST_KDF))
    src = root / "src"
    a = os.urandom(2 * MiB)
    states = [
        ("unused", {"e.bin": os.urandom(MiB)}),
        ("partial", {"a.bin": a, "b.bin": os.urandom(2 * MiB)}),
        ("used", {"a.bin": a, "c.bin": os.urandom(MiB)}),
    ]
    packs = {}
    for day, (role, files) in enumerate(states, start=1):
        before = data_keys()
        replace_tree(src, files)
        backup_at(cli, url, src, f"2026-03-0{day}T04:00:00+00:00")
        [packs[role]] = data_keys() - before
    ok(cli("forget", "-r", url, "--keep-last", "1"))
    try:
        yield GlacierTemplate(bucket, packs)
    finally:
        moto_endpoint.remove_bucket(bucket)


@pytest.fixture
def glacier_repo(s3_bucket: S3Bucket, glacier_template: GlacierTemplate) -> GlacierRepo:
    """A fresh copy of the template whose data packs are in GLACIER, as
    `backup --storage-class GLACIER` leaves them (what prune sees of a pack's class is
    what the listing says, so copies stored as GLACIER are the same to it)."""
    client, template = s3_bucket.client, glacier_template.bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=template):
        for entry in page.get("Contents", ()):
            key = entry["Key"]
            client.copy_object(
                Bucket=s3_bucket.bucket,
                Key=key,
                CopySource={"Bucket": template, "Key": key},
                StorageClass="GLACIER" if key.startswith("repo/data/") else "STANDARD",
            )
    assert {o["class"] for o in data_objects(s3_bucket).values()} == {"GLACIER"}
    assert set(glacier_template.packs.values()) <= set(data_objects(s3_bucket))
    return GlacierRepo(s3_bucket.url, glacier_template.packs)


def decisions_by_key(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"repo/data/{d['pack'][:2]}/{d['pack']}": d for d in event["decisions"]}


def test_prune_deletes_unused_glacier_packs_and_leaves_partly_used_ones_untouched(
    cli: Cli, s3_bucket: S3Bucket, glacier_repo: GlacierRepo
) -> None:
    packs = glacier_repo.packs
    before = data_objects(s3_bucket)

    # Any GET of a GLACIER object fails (InvalidObjectState), so a prune that tried to
    # repack an archived pack could not succeed.
    result = ok(
        cli("prune", "-r", glacier_repo.url, "--max-unused", "0%", "--grace", "0s", "--json")
    )

    after = data_objects(s3_bucket)
    assert packs["unused"] not in after
    assert after[packs["partial"]] == before[packs["partial"]]
    assert after[packs["used"]] == before[packs["used"]]
    assert set(after) == {packs["partial"], packs["used"]}, "no data pack was written"
    event = result.event("prune")
    assert event["bytes_repacked_written"] == 0
    decisions = decisions_by_key(event)
    assert decisions[packs["unused"]]["action"] == "delete"
    assert decisions.get(packs["partial"], {}).get("action", "keep") == "keep"
    ok(cli("check", "-r", glacier_repo.url))


def test_prune_reports_why_a_partly_used_glacier_pack_is_not_repacked(
    cli: Cli, glacier_repo: GlacierRepo
) -> None:
    result = ok(
        cli("prune", "-r", glacier_repo.url, "--max-unused", "0%", "--grace", "0s", "--json")
    )

    decisions = decisions_by_key(result.event("prune"))
    partial = decisions.get(glacier_repo.packs["partial"])
    assert partial is not None, "the partly used archived pack is not in the report"
    assert partial["action"] == "keep"
    assert "archived" in partial["reason"]
    assert partial["storage_class"] == "GLACIER"


def test_prune_dry_run_reports_the_early_deletion_charge_of_young_glacier_packs(
    cli: Cli, s3_bucket: S3Bucket, glacier_repo: GlacierRepo
) -> None:
    before = data_objects(s3_bucket)

    result = ok(cli("prune", "-r", glacier_repo.url, "--grace", "0s", "--dry-run", "--json"))

    event = result.event("prune")
    assert event["dry_run"] is True
    assert event["early_delete_charge_usd"] > 0
    unused = decisions_by_key(event)[glacier_repo.packs["unused"]]
    assert unused["action"] == "delete"
    assert unused["storage_class"] == "GLACIER"
    # 1 MiB deleted on day 0 of GLACIER's 90-day minimum at $0.0036 per GB-month.
    assert unused["early_delete_charge_usd"] == pytest.approx(
        unused["size"] / 1e9 * 0.0036 * 3, abs=1e-6
    )
    assert data_objects(s3_bucket) == before

    human = ok(cli("prune", "-r", glacier_repo.url, "--grace", "0s", "--dry-run"))

    assert "early-deletion charge" in human.stdout
