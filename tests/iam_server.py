"""IAM users with real policies on the session's moto server, and moto checking them.

moto authorizes every S3 request against IAM once its "initial no-auth action count" is
used up (`INITIAL_NO_AUTH_ACTION_COUNT`, reset through /moto-api/reset-auth): the access key
must belong to an IAM user, and that user's policies must allow the action on the bucket
or object ARN. `IamUsers` creates users with policies while the server still lets
everything through; inside `enforcing()` each request is then checked. moto's state (and
this switch) is process-wide, so enforcement is always switched off on the way out.

The infra/policies/*.json documents are read from here too (`infra_policy`), so tests
enforce exactly what Terraform deploys.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3_server import TEST_CREDENTIALS, MotoEndpoint

INFRA_POLICIES = Path(__file__).resolve().parents[1] / "infra" / "policies"

#: Allows everything: set-up and clean-up while enforcement is on.
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def infra_policy(role: str, bucket: str, prefix: str) -> dict[str, Any]:
    """infra/policies/ROLE.json for one repository, as Terraform's templatefile renders it,
    in moto's spelling (`for_moto`)."""
    text = (INFRA_POLICIES / f"{role}.json").read_text()
    document: dict[str, Any] = json.loads(
        string.Template(text).substitute(bucket=bucket, prefix=prefix)
    )
    return for_moto(document)


#: Requests moto authorizes under the operation's own name rather than the IAM action AWS
#: checks for it: AWS action → moto's names for the same requests.
MOTO_ACTION_NAMES = {
    "s3:ListBucket": ("s3:HeadBucket", "s3:ListObjects", "s3:ListObjectsV2"),
    "s3:GetObject": ("s3:HeadObject",),
    # AWS authorizes CopyObject as PutObject on the target (and GetObject on the source).
    "s3:PutObject": ("s3:CopyObject",),
    "s3:ListBucketVersions": ("s3:ListObjectVersions",),
    "s3:ListBucketMultipartUploads": ("s3:ListMultipartUploads",),
    "s3:GetLifecycleConfiguration": ("s3:GetBucketLifecycleConfiguration",),
    "s3:PutLifecycleConfiguration": (
        "s3:PutBucketLifecycleConfiguration",
        "s3:DeleteBucketLifecycle",
    ),
}


def for_moto(document: dict[str, Any]) -> dict[str, Any]:
    """The same policy in moto's spelling: wherever an action is granted, so are moto's
    names for the requests AWS checks under it (`MOTO_ACTION_NAMES`), on the same
    resources. Nothing else is added."""
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else list(actions)
        actions += [alias for a in actions for alias in MOTO_ACTION_NAMES.get(a, ())]
        statements.append({**statement, "Action": actions})
    return {**document, "Statement": statements}


@dataclass(frozen=True)
class Credential:
    """An IAM user's access key."""

    user: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        """The AWS variables that make bbackup (or boto3) act as this user."""
        return {
            **TEST_CREDENTIALS,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def s3_client(self, endpoint: str) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


class IamUsers:
    """Creates IAM users on a moto server, each with one policy and one access key."""

    def __init__(self, endpoint: MotoEndpoint) -> None:
        import boto3

        self.endpoint = endpoint
        self._iam = boto3.client(
            "iam",
            endpoint_url=endpoint.url,
            region_name=TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.admin = self.create("admin", ADMIN_POLICY)

    def create(self, role: str, policy: dict[str, Any]) -> Credential:
        """A new user (unique name) whose only permissions are `policy`, attached as a
        managed policy, as Terraform's aws_iam_policy would be."""
        user = f"bbackup-{role}-{secrets.token_hex(4)}"
        self._iam.create_user(UserName=user)
        arn = self._iam.create_policy(PolicyName=user, PolicyDocument=json.dumps(policy))["Policy"][
            "Arn"
        ]
        self._iam.attach_user_policy(UserName=user, PolicyArn=arn)
        key = self._iam.create_access_key(UserName=user)["AccessKey"]
        return Credential(user, key["AccessKeyId"], key["SecretAccessKey"])

    @contextlib.contextmanager
    def enforcing(self) -> Iterator[None]:
        """Every request in this block is checked against the caller's IAM policies."""
        with self.endpoint.enforcing_credentials():
            yield

    def close(self) -> None:
        self._iam.close()
