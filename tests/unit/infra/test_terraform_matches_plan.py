"""infra/ and bbackup never drift: the lifecycle rules the Terraform module writes equal what
`bbackup lifecycle plan` prints for the same ladder (its defaults and the example tfvars),
and the IAM policies Terraform creates are exactly the JSON documents in infra/policies/,
which grant each role what it needs and nothing more."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
from terraform_reading import INFRA, Scope, expand_blocks, resource, tfvars, variable_defaults
from typer.testing import CliRunner

from bbackup.cli.app import app

ROLES = ("backup", "maintenance", "restore")


def terraform_rules(variables: dict[str, Any]) -> list[dict[str, Any]]:
    """The lifecycle rules infra/main.tf creates with these variables, in S3's shape."""
    body = resource("aws_s3_bucket_lifecycle_configuration", "repository")
    return [s3_rule(block) for block in expand_blocks(body, "rule", Scope(variables))]


def s3_rule(block: dict[str, Any]) -> dict[str, Any]:
    block = dict(block)
    (filt,) = block.pop("filter")
    rule: dict[str, Any] = {
        "ID": block.pop("id"),
        "Filter": {"Prefix": filt["prefix"]},
        "Status": block.pop("status"),
    }
    if transitions := block.pop("transition", None):
        rule["Transitions"] = [
            {"Days": t["days"], "StorageClass": t["storage_class"]} for t in transitions
        ]
    if abort := block.pop("abort_incomplete_multipart_upload", None):
        rule["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": abort[0]["days_after_initiation"]
        }
    if noncurrent := block.pop("noncurrent_version_expiration", None):
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": noncurrent[0]["noncurrent_days"]}
    assert not {k for k, v in block.items() if v}, f"rule parts the test does not map: {block}"
    return rule


def planned_rules(variables: dict[str, Any]) -> list[dict[str, Any]]:
    """What `bbackup lifecycle plan` prints for the same repository and ladder."""
    args = ["lifecycle", "plan", "-r", f"s3://{variables.get('bucket', 'b')}/{variables['prefix']}"]
    for step in variables["transitions"]:
        args += ["--transition", f"{step['storage_class']}:{step['days']}"]
    args += ["--abort-multipart-days", str(variables["abort_multipart_days"] or 0)]
    if variables["noncurrent_days"]:
        args += ["--noncurrent-days", str(variables["noncurrent_days"])]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rules: list[dict[str, Any]] = json.loads(result.stdout)["Rules"]
    return rules


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param(variable_defaults(), id="defaults"),
        pytest.param({**variable_defaults(), **tfvars("terraform.tfvars.example")}, id="example"),
        pytest.param(
            {**variable_defaults(), "abort_multipart_days": None, "noncurrent_days": None},
            id="tiering-only",
        ),
    ],
)
def test_terraform_lifecycle_rules_equal_what_lifecycle_plan_prints(
    variables: dict[str, Any],
) -> None:
    by_id = {r["ID"]: r for r in terraform_rules(variables)}

    assert by_id == {r["ID"]: r for r in planned_rules(variables)}
    assert by_id[f"bbackup-tiering:{variables['prefix']}/"]["Filter"] == {
        "Prefix": f"{variables['prefix']}/data/"
    }


def policy_file(role: str) -> Path:
    return INFRA / "policies" / f"{role}.json"


def render_policy(role: str, bucket: str, prefix: str) -> dict[str, Any]:
    text = string.Template(policy_file(role).read_text()).substitute(bucket=bucket, prefix=prefix)
    document: dict[str, Any] = json.loads(text)
    return document


@pytest.mark.parametrize("role", ROLES)
def test_terraform_creates_each_policy_from_its_json_document(role: str) -> None:
    policy = resource("aws_iam_policy", role)["policy"]

    call = re.fullmatch(
        r'\$\{templatefile\("\$\{path\.module\}/policies/(\w+)\.json", \{(.*)\}\)\}', policy
    )
    assert call is not None, policy
    assert call[1] == role
    given = dict(re.findall(r"(\w+) = var\.(\w+)", call[2]))
    placeholders = set(re.findall(r"\$\{(\w+)\}", policy_file(role).read_text()))
    assert given == {name: name for name in placeholders}
    assert set(given) == {"bucket", "prefix"}


def grants(document: dict[str, Any]) -> dict[str, set[str]]:
    """action → the resources a policy allows it on."""
    allowed: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            allowed.setdefault(action, set()).update(
                [resources] if isinstance(resources, str) else resources
            )
    return allowed


def test_the_policies_grant_each_role_what_it_needs_and_nothing_more() -> None:
    bucket, objects = "arn:aws:s3:::b", "arn:aws:s3:::b/p/*"
    backup, maintenance, restore = (grants(render_policy(r, "b", "p")) for r in ROLES)

    assert backup == {
        "s3:ListBucket": {bucket},
        "s3:GetObject": {objects},
        "s3:PutObject": {objects},
        # AWS asks for it to send a retention date with each new object (object lock);
        # it can only lengthen a retention, never shorten or remove one.
        "s3:PutObjectRetention": {objects},
        "s3:DeleteObject": {"arn:aws:s3:::b/p/locks/*"},  # its own lock, when it finishes
    }
    assert restore == {
        "s3:ListBucket": {bucket},
        "s3:ListBucketVersions": {bucket},
        "s3:GetObject": {objects},
        "s3:GetObjectVersion": {objects},
        "s3:RestoreObject": {objects},
    }
    assert maintenance["s3:DeleteObject"] == {objects}
    assert maintenance["s3:PutLifecycleConfiguration"] == {bucket}
    # `locks extend` reads and extends retentions; `init --object-lock` checks the bucket.
    assert maintenance["s3:GetObjectRetention"] == maintenance["s3:PutObjectRetention"] == {objects}
    assert maintenance["s3:GetBucketObjectLockConfiguration"] == {bucket}
    # Nobody may destroy old versions: with versioning on, they are what survives a
    # compromised credential (lifecycle rules expire them instead).
    every = {a for policy in (backup, maintenance, restore) for a in policy}
    assert not {a for a in every if "*" in a or a.startswith("s3:DeleteObjectVersion")}
    assert not {a for a in every if "Bypass" in a or "Policy" in a}
