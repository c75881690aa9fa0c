"""prune on S3 with data packs in GLACIER: archived packs are never read or repacked, unused
ones are deleted, and the early-deletion charge is reported before it is incurred."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli
from prune_harness import MiB, backup_at, ok, replace_tree

from s3_server import S3Bucket

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


@pytest.fixture
def glacier_repo(tmp_path: Path, cli: Cli, s3_bucket: S3Bucket) -> GlacierRepo:
    url = s3_bucket.url
    ok(cli("init", "-r", url))
    src = tmp_path / "src"
    a = os.urandom(2 * MiB)
    states = [
        ("unused", {"e.bin": os.urandom(MiB)}),
        ("partial", {"a.bin": a, "b.bin": os.urandom(2 * MiB)}),
        ("used", {"a.bin": a, "c.bin": os.urandom(MiB)}),
    ]
    packs = {}
    for day, (role, files) in enumerate(states, start=1):
        before = set(data_objects(s3_bucket))
        replace_tree(src, files)
        when = f"2026-03-0{day}T04:00:00+00:00"
        backup_at(cli, url, src, when, "--storage-class", "GLACIER")
        [packs[role]] = set(data_objects(s3_bucket)) - before
    assert {o["class"] for o in data_objects(s3_bucket).values()} == {"GLACIER"}
    ok(cli("forget", "-r", url, "--keep-last", "1"))
    return GlacierRepo(url, packs)


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
