"""The lifecycle rules bbackup writes, as plain data: which ladders it refuses and why, the
exact S3 rules a ladder becomes, how they merge with a bucket's own rules, and what a
provider without some feature gets told."""

from __future__ import annotations

from typing import Any

import pytest

from bbackup.errors import UsageError
from bbackup.ops.lifecycle import plan_lifecycle
from bbackup.ops.lifecycle_changes import (
    ADD,
    CHANGE,
    REMOVE,
    describe_rule,
    merge_rules,
    rule_changes,
    rule_hazards,
)
from bbackup.ops.lifecycle_rules import (
    ClassRules,
    Ladder,
    Transition,
    build_rules,
    parse_transition,
    validate_ladder,
)
from bbackup.storage import PROVIDERS, detect_provider

AWS_RULES = ClassRules("AWS S3", PROVIDERS["aws"].transition_classes, PROVIDERS["aws"].minimum_days)


def ladder(*steps: str, abort: int | None = 1, noncurrent: int | None = None) -> Ladder:
    return Ladder(tuple(parse_transition(s) for s in steps), abort, noncurrent)


FOREIGN = {
    "ID": "logs-expiry",
    "Filter": {"Prefix": "logs/"},
    "Status": "Enabled",
    "Expiration": {"Days": 7},
}


def test_a_ladder_becomes_a_transition_rule_on_data_only_and_an_abort_rule_on_the_repo() -> None:
    rules = build_rules("hosts/web1", ladder("standard_ia:30", "GLACIER:90", noncurrent=30))

    assert rules == [
        {
            "ID": "bbackup-tiering:hosts/web1/",
            "Filter": {"Prefix": "hosts/web1/data/"},
            "Status": "Enabled",
            "Transitions": [
                {"Days": 30, "StorageClass": "STANDARD_IA"},
                {"Days": 90, "StorageClass": "GLACIER"},
            ],
        },
        {
            "ID": "bbackup-abort-multipart:hosts/web1/",
            "Filter": {"Prefix": "hosts/web1/"},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {
            "ID": "bbackup-noncurrent:hosts/web1/",
            "Filter": {"Prefix": "hosts/web1/"},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        },
    ]


def test_a_repository_at_the_bucket_root_tiers_data_and_cleans_the_whole_bucket() -> None:
    tiering, abort = build_rules("", ladder("GLACIER:90"))

    assert tiering["Filter"] == {"Prefix": "data/"}
    assert abort["Filter"] == {"Prefix": ""}


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        (("GLACIER:90", "STANDARD_IA:120"), "cannot move objects from GLACIER to STANDARD_IA"),
        (("STANDARD_IA:30", "GLACIER:30"), "days must increase"),
        (("STANDARD_IA:60", "GLACIER:45"), "days must increase"),
        (("STANDARD_IA:10",), "no earlier than 30 days"),
        (("ONEZONE_IA:29",), "no earlier than 30 days"),
        (("STANDARD_IA:30", "GLACIER_IR:45"), "must stay 30 days in STANDARD_IA"),
        (("ONEZONE_IA:30", "GLACIER_IR:90"), "cannot move objects from ONEZONE_IA to GLACIER_IR"),
        (("DEEP_ARCHIVE:180", "GLACIER:365"), "cannot move objects from DEEP_ARCHIVE"),
        (("GLACIER:30", "GLACIER:90"), "already in GLACIER"),
        (("COLDLINE:30",), "AWS S3 has no storage class COLDLINE"),
    ],
)
def test_ladders_s3_would_refuse_are_refused_with_the_reason(
    steps: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(UsageError, match=reason):
        validate_ladder(ladder(*steps), AWS_RULES)


@pytest.mark.parametrize(
    "steps",
    [
        ("STANDARD_IA:30", "GLACIER:90", "DEEP_ARCHIVE:365"),
        ("STANDARD_IA:30", "GLACIER_IR:90", "DEEP_ARCHIVE:365"),
        ("GLACIER_IR:0",),
        ("INTELLIGENT_TIERING:0", "DEEP_ARCHIVE:180"),
        ("DEEP_ARCHIVE:1",),
    ],
)
def test_ladders_s3_accepts_pass_without_warnings(steps: tuple[str, ...]) -> None:
    assert validate_ladder(ladder(*steps), AWS_RULES) == []


def test_leaving_a_class_before_its_minimum_duration_is_allowed_with_a_warning() -> None:
    warnings = validate_ladder(ladder("GLACIER:10", "DEEP_ARCHIVE:40"), AWS_RULES)

    assert len(warnings) == 1
    assert "leave GLACIER after 30 days, before its 90-day minimum" in warnings[0]


@pytest.mark.parametrize("text", ["GLACIER", "GLACIER:", ":90", "GLACIER:ninety", "GLACIER:-1"])
def test_a_malformed_transition_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--transition"):
        parse_transition(text)


def test_merging_keeps_foreign_rules_and_other_repositories_and_replaces_ours() -> None:
    other_repo = build_rules("other", ladder("GLACIER:90"))
    old_ours = build_rules("repo", ladder("GLACIER:90", noncurrent=30))
    new_ours = build_rules("repo", ladder("STANDARD_IA:30", "GLACIER:90"))

    merged = merge_rules([FOREIGN, *other_repo, *old_ours], new_ours, "repo")

    assert merged == [FOREIGN, *other_repo, *new_ours]
    kinds = {c.rule_id: c.kind for c in rule_changes([FOREIGN, *other_repo, *old_ours], merged)}
    assert kinds == {"bbackup-tiering:repo/": CHANGE, "bbackup-noncurrent:repo/": REMOVE}


def test_applying_the_same_ladder_again_changes_nothing_whatever_spelling_the_store_returns() -> (
    None
):
    ours = build_rules("repo", ladder("STANDARD_IA:30", "GLACIER:90"))
    # How a store may hand the rules back: reordered, defaults filled in, transitions
    # in another order, the legacy Prefix field.
    returned: list[dict[str, Any]] = [
        {**FOREIGN, "Transitions": []},
        {
            **ours[0],
            "Transitions": list(reversed(ours[0]["Transitions"])),
            "NoncurrentVersionTransitions": [],
        },
        {k: v for k, v in ours[1].items() if k != "Filter"} | {"Prefix": "repo/"},
    ]

    assert rule_changes(returned, merge_rules(returned, ours, "repo")) == []


def test_a_first_apply_adds_our_rules() -> None:
    ours = build_rules("repo", ladder("GLACIER:90"))

    changes = rule_changes([], merge_rules([], ours, "repo"))

    assert [(c.kind, c.rule_id) for c in changes] == [
        (ADD, "bbackup-tiering:repo/"),
        (ADD, "bbackup-abort-multipart:repo/"),
    ]


def test_rules_are_explained_in_words_with_their_owner() -> None:
    tiering = build_rules("repo", ladder("STANDARD_IA:30", "GLACIER:90"))[0]

    assert describe_rule(tiering, "repo") == (
        "bbackup-tiering:repo/ (bbackup, this repository): objects under 'repo/data/': "
        "moves them to STANDARD_IA after 30 days, then to GLACIER after 90 days"
    )
    assert "another repository" in describe_rule(tiering, "elsewhere")
    assert describe_rule(FOREIGN, "repo").startswith("logs-expiry (foreign")
    assert "DELETES them after 7 days" in describe_rule(FOREIGN, "repo")


@pytest.mark.parametrize(
    ("rule", "hazard"),
    [
        ({**FOREIGN, "Filter": {"Prefix": ""}}, "deletes objects of this repository"),
        ({**FOREIGN, "Filter": {"Prefix": "repo/snapshots/"}}, "deletes objects"),
        (
            {
                "ID": "archive-all",
                "Filter": {},
                "Status": "Enabled",
                "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
            },
            "outside 'repo/data/'",
        ),
    ],
)
def test_foreign_rules_that_would_break_the_repository_are_named(
    rule: dict[str, Any], hazard: str
) -> None:
    hazards = rule_hazards(rule, "repo")

    assert len(hazards) == 1 and hazard in hazards[0]


def test_foreign_rules_elsewhere_or_tiering_only_data_are_harmless() -> None:
    data_only = {
        "ID": "x",
        "Filter": {"Prefix": "repo/data/"},
        "Status": "Enabled",
        "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}],
    }

    assert rule_hazards(FOREIGN, "repo") == []
    assert rule_hazards(data_only, "repo") == []
    assert rule_hazards({**FOREIGN, "Status": "Disabled", "Filter": {}}, "repo") == []


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        (None, "aws"),
        ("https://s3.eu-central-1.amazonaws.com", "aws"),
        ("https://s3.us-west-004.backblazeb2.com", "b2"),
        ("https://0123abcd.r2.cloudflarestorage.com", "r2"),
        ("https://s3.eu-central-2.wasabisys.com", "wasabi"),
        ("https://storage.googleapis.com", "gcs"),
        ("http://127.0.0.1:9000", "s3"),
        ("https://notamazonaws.com", "s3"),
    ],
)
def test_the_provider_comes_from_the_endpoint_host(endpoint: str | None, name: str) -> None:
    assert detect_provider(endpoint).name == name


def test_an_explicit_provider_wins_and_an_unknown_one_is_a_usage_error() -> None:
    assert detect_provider("http://127.0.0.1:9000", "MinIO").name == "minio"
    with pytest.raises(UsageError, match="not one of"):
        detect_provider(None, "dropbox")


def test_gcs_has_no_s3_lifecycle_api_and_is_told_what_to_do_instead() -> None:
    with pytest.raises(UsageError, match="gcloud storage buckets update"):
        plan_lifecycle("repo", ladder("COLDLINE:90"), PROVIDERS["gcs"])


def test_b2_cannot_tier_but_takes_the_clean_up_rules() -> None:
    with pytest.raises(UsageError, match=r"Backblaze B2 cannot transition.*one storage class"):
        plan_lifecycle("repo", ladder("GLACIER:90"), PROVIDERS["b2"])

    plan = plan_lifecycle("repo", ladder(noncurrent=30), PROVIDERS["b2"])

    assert [r["ID"] for r in plan.rules] == [
        "bbackup-abort-multipart:repo/",
        "bbackup-noncurrent:repo/",
    ]


def test_minio_takes_any_tier_name_but_no_abort_rule_and_says_how_to_add_tiers() -> None:
    plan = plan_lifecycle("repo", ladder("WARM:30", "COLD:90"), PROVIDERS["minio"])

    assert [r["ID"] for r in plan.rules] == ["bbackup-tiering:repo/"]
    assert plan.rules[0]["Transitions"][0] == {"Days": 30, "StorageClass": "WARM"}
    assert any("mc ilm tier add" in note for note in plan.notes)
    assert any("abort unfinished multipart" in note for note in plan.notes)


def test_r2_offers_infrequent_access_only_and_wasabi_nothing_to_tier() -> None:
    plan = plan_lifecycle("repo", ladder("STANDARD_IA:30"), PROVIDERS["r2"])
    assert plan.rules[0]["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"}]
    with pytest.raises(UsageError, match="no storage class GLACIER"):
        plan_lifecycle("repo", ladder("GLACIER:90"), PROVIDERS["r2"])
    with pytest.raises(UsageError, match="no noncurrent-version expiry"):
        plan_lifecycle("repo", ladder(noncurrent=30), PROVIDERS["r2"])
    with pytest.raises(UsageError, match="Wasabi cannot transition"):
        plan_lifecycle("repo", ladder("STANDARD_IA:30"), PROVIDERS["wasabi"])


def test_a_transition_keeps_its_text_form() -> None:
    assert str(Transition("GLACIER", 90)) == "GLACIER:90"


def test_the_storage_profile_carries_the_providers_capabilities() -> None:
    from bbackup.storage import StorageOptions, open_storage

    b2 = open_storage(
        "s3://bucket/repo", StorageOptions(s3_endpoint="https://s3.us-west-004.backblazeb2.com")
    ).profile
    minio = open_storage(
        "s3://bucket/repo",
        StorageOptions(s3_endpoint="http://127.0.0.1:9000", s3_provider="minio"),
    ).profile

    assert b2.provider is PROVIDERS["b2"]
    assert not b2.storage_classes and not b2.restore_requests and b2.object_lock
    assert minio.provider is PROVIDERS["minio"] and minio.restore_requests
