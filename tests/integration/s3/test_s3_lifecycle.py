"""`bbackup lifecycle` against a real bucket over HTTP: `apply` writes rules that tier only
the repository's data/ prefix, keeps the rules it did not write, does nothing (not even a
PUT) the second time, `plan` never touches the bucket, and `show` explains every rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cli_harness import Cli
from s3_harness import server_requests

from s3_server import S3Bucket

pytestmark = pytest.mark.s3

LADDER = ("-t", "STANDARD_IA:30", "-t", "GLACIER:90", "-t", "DEEP_ARCHIVE:365")
FOREIGN = {
    "ID": "expire-build-logs",
    "Filter": {"Prefix": "logs/"},
    "Status": "Enabled",
    "Expiration": {"Days": 14},
}


def bucket_rules(bucket: S3Bucket) -> list[dict[str, Any]]:
    response = bucket.client.get_bucket_lifecycle_configuration(Bucket=bucket.bucket)
    return list(response["Rules"])


def lifecycle_writes(requests: list[tuple[str, str]], bucket: S3Bucket) -> list[str]:
    """PUTs and DELETEs on the bucket itself: only ?lifecycle ones in these tests."""
    return [m for m, path in requests if path == f"/{bucket.bucket}" and m in ("PUT", "DELETE")]


def test_apply_keeps_a_foreign_rule_tiers_only_data_and_a_second_apply_writes_nothing(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    s3_bucket.client.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket.bucket, LifecycleConfiguration={"Rules": [FOREIGN]}
    )

    first = cli("lifecycle", "apply", "-r", s3_bucket.url, *LADDER, "--noncurrent-days", "30")

    assert first.exit_code == 0, first
    assert "applied" in first.stdout and "add 3 rules" in first.stdout
    rules = {r["ID"]: r for r in bucket_rules(s3_bucket)}
    assert rules["expire-build-logs"] == FOREIGN
    tiering = rules["bbackup-tiering:repo/"]
    assert tiering["Filter"] == {"Prefix": "repo/data/"}
    assert [(t["StorageClass"], t["Days"]) for t in tiering["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER", 90),
        ("DEEP_ARCHIVE", 365),
    ]
    assert rules["bbackup-abort-multipart:repo/"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    assert rules["bbackup-noncurrent:repo/"]["Filter"] == {"Prefix": "repo/"}
    # Nothing but data/ is ever transitioned.
    assert [r["ID"] for r in rules.values() if r.get("Transitions")] == ["bbackup-tiering:repo/"]

    with server_requests() as requests:
        second = cli("lifecycle", "apply", "-r", s3_bucket.url, *LADDER, "--noncurrent-days", "30")

    assert second.exit_code == 0, second
    assert second.stdout.startswith("no change")
    assert lifecycle_writes(requests, s3_bucket) == []
    assert {r["ID"]: r for r in bucket_rules(s3_bucket)} == rules


def test_apply_replaces_only_its_own_rules_and_dry_run_writes_nothing(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    other = f"s3://{s3_bucket.bucket}/other-repo"
    assert cli("lifecycle", "apply", "-r", other, "-t", "GLACIER:30").exit_code == 0
    assert cli("lifecycle", "apply", "-r", s3_bucket.url, *LADDER).exit_code == 0
    before = bucket_rules(s3_bucket)

    with server_requests() as requests:
        dry = cli("lifecycle", "apply", "-r", s3_bucket.url, "-t", "GLACIER_IR:60", "--dry-run")

    assert dry.exit_code == 0, dry
    assert "~ bbackup-tiering:repo/" in dry.stdout and "was:" in dry.stdout
    assert "dry run: nothing written" in dry.stdout
    assert lifecycle_writes(requests, s3_bucket) == []
    assert bucket_rules(s3_bucket) == before

    changed = cli("lifecycle", "apply", "-r", s3_bucket.url, "-t", "GLACIER_IR:60", "--json")

    assert changed.exit_code == 0, changed
    event = changed.event("lifecycle_apply")
    assert event["applied"] and [c["change"] for c in event["changes"]] == ["change"]
    rules = {r["ID"]: r for r in bucket_rules(s3_bucket)}
    assert rules["bbackup-tiering:repo/"]["Transitions"] == [
        {"Days": 60, "StorageClass": "GLACIER_IR"}
    ]
    assert rules["bbackup-tiering:other-repo/"]["Transitions"] == [
        {"Days": 30, "StorageClass": "GLACIER"}
    ]


def test_plan_prints_the_s3_document_and_never_touches_the_bucket(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    with server_requests() as requests:
        result = cli("lifecycle", "plan", "-r", s3_bucket.url, *LADDER)

    assert result.exit_code == 0, result
    document = json.loads(result.stdout)
    assert [r["ID"] for r in document["Rules"]] == [
        "bbackup-tiering:repo/",
        "bbackup-abort-multipart:repo/",
    ]
    assert requests == []
    # What plan prints is what the bucket takes, and then what apply considers done.
    s3_bucket.client.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket.bucket, LifecycleConfiguration=document
    )
    assert cli("lifecycle", "apply", "-r", s3_bucket.url, *LADDER).stdout.startswith("no change")


def test_show_explains_ours_and_foreign_rules_and_warns_of_a_dangerous_one(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    whole_bucket_expiry = {**FOREIGN, "ID": "expire-everything", "Filter": {"Prefix": ""}}
    s3_bucket.client.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket.bucket, LifecycleConfiguration={"Rules": [whole_bucket_expiry]}
    )
    assert cli("lifecycle", "apply", "-r", s3_bucket.url, *LADDER).exit_code == 0

    result = cli("lifecycle", "show", "-r", s3_bucket.url)

    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert "3 lifecycle rules" in lines[0]
    assert any("expire-everything (foreign" in line for line in lines)
    assert any(
        "bbackup-tiering:repo/ (bbackup, this repository): objects under 'repo/data/': "
        "moves them to STANDARD_IA after 30 days, then to GLACIER after 90 days, "
        "then to DEEP_ARCHIVE after 365 days" in line
        for line in lines
    )
    assert any("WARNING: rule expire-everything deletes objects" in line for line in lines)

    as_json = cli("lifecycle", "show", "-r", s3_bucket.url, "--json").event("lifecycle")
    owners = {r["rule"]["ID"]: r["description"].split(" (")[1] for r in as_json["rules"]}
    assert owners["expire-everything"].startswith("foreign")
    assert owners["bbackup-tiering:repo/"].startswith("bbackup, this repository")
    (hazard,) = [h for r in as_json["rules"] for h in r["hazards"]]
    assert hazard.startswith("rule expire-everything deletes objects of this repository")


def test_show_of_a_bucket_without_rules_says_so(cli: Cli, s3_bucket: S3Bucket) -> None:
    result = cli("lifecycle", "show", "-r", s3_bucket.url)

    assert result.exit_code == 0, result
    assert "has no lifecycle rules" in result.stdout


def test_an_invalid_ladder_is_refused_before_the_bucket_is_touched(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    with server_requests() as requests:
        result = cli("lifecycle", "apply", "-r", s3_bucket.url, "-t", "STANDARD_IA:7")

    assert result.exit_code == 2, result
    assert result.stderr.strip().splitlines() == [
        "bbackup: error: --transition STANDARD_IA:7: S3 moves objects to STANDARD_IA no "
        "earlier than 30 days after they are written"
    ]
    assert requests == []


def test_a_store_without_the_lifecycle_api_is_told_what_to_do_instead(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    with server_requests() as requests:
        result = cli("lifecycle", "apply", "-r", s3_bucket.url, "--s3-provider", "gcs")

    assert result.exit_code == 2, result
    assert "Google Cloud Storage (S3 interoperability API) has no S3 lifecycle API" in (
        result.stderr
    )
    assert "gcloud storage buckets update" in result.stderr
    assert requests == []


def test_lifecycle_of_a_local_repository_is_a_usage_error(cli: Cli, tmp_path: Any) -> None:
    result = cli("lifecycle", "show", "-r", tmp_path / "repo")

    assert result.exit_code == 2, result
    assert "lifecycle rules belong to S3 buckets" in result.stderr


def test_applying_no_rules_removes_ours_and_deletes_the_empty_configuration(
    cli: Cli, s3_bucket: S3Bucket
) -> None:
    assert cli("lifecycle", "apply", "-r", s3_bucket.url, *LADDER).exit_code == 0

    result = cli("lifecycle", "apply", "-r", s3_bucket.url, "--abort-multipart-days", "0")

    assert result.exit_code == 0, result
    assert "remove 2 rules" in result.stdout
    shown = cli("lifecycle", "show", "-r", s3_bucket.url)
    assert "has no lifecycle rules" in shown.stdout, shown
