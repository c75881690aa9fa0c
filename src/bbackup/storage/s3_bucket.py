"""The bucket-level calls of the S3 backend: the bucket's existence (and its creation), its
lifecycle rules, and the incomplete multipart uploads other tools left under the prefix.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from botocore import exceptions as boto_errors

from bbackup.errors import BucketNotFound, Permanent
from bbackup.storage.s3_connection import DEFAULT_REGION, S3Connection
from bbackup.storage.s3_errors import error_code
from bbackup.storage.s3_transfer import TransferDeadline

#: Lifecycle rules in S3's LifecycleConfiguration shape (the `Rules` list).
LifecycleRules = list[dict[str, Any]]


class S3Bucket(S3Connection):
    """Bucket housekeeping, a base of `S3Storage`: the requests that concern the bucket
    rather than one object of the repository."""

    # -- bucket housekeeping -----------------------------------------------------------

    async def ensure_bucket(self, create: bool) -> None:
        """Check that the bucket exists; create it when missing and `create` is set."""
        client = await self._get_client()
        with self._translate_errors(None):
            try:
                await client.head_bucket(Bucket=self.bucket)
                return
            except boto_errors.ClientError as exc:
                if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
        if not create:
            raise BucketNotFound(f"bucket {self.bucket!r} not found at {self.endpoint}")
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != DEFAULT_REGION:
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with self._translate_errors(None):
            try:
                await client.create_bucket(**params)
            except boto_errors.ClientError as exc:
                if error_code(exc) != "BucketAlreadyOwnedByYou":
                    raise

    async def get_lifecycle_rules(self) -> LifecycleRules:
        """The bucket's lifecycle rules in S3's LifecycleConfiguration shape; [] if none."""
        client = await self._get_client()
        with self._translate_errors(None), self._unsupported("GetBucketLifecycleConfiguration"):
            async with self._bucket_deadline("GetBucketLifecycleConfiguration").running():
                try:
                    response = await client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
                except boto_errors.ClientError as exc:
                    if error_code(exc) == "NoSuchLifecycleConfiguration":
                        return []
                    raise
        return list(response.get("Rules") or ())

    async def put_lifecycle_rules(self, rules: LifecycleRules) -> None:
        """Replace the bucket's lifecycle rules (all of them: merging is the caller's job);
        no rules deletes the configuration, which S3 cannot store empty."""
        client = await self._get_client()
        operation = "PutBucketLifecycleConfiguration" if rules else "DeleteBucketLifecycle"
        with self._translate_errors(None), self._unsupported(operation):
            async with self._bucket_deadline(operation).running():
                if rules:
                    await client.put_bucket_lifecycle_configuration(
                        Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
                    )
                else:
                    await client.delete_bucket_lifecycle(Bucket=self.bucket)

    def _bucket_deadline(self, operation: str) -> TransferDeadline:
        return TransferDeadline(self.io_timeout, f"S3 {operation} at {self.endpoint}")

    @contextlib.contextmanager
    def _unsupported(self, operation: str) -> Iterator[None]:
        """Say plainly that a store lacks a bucket API, rather than quoting its error."""
        try:
            yield
        except boto_errors.ClientError as exc:
            if error_code(exc) not in ("NotImplemented", "MethodNotAllowed", "501", "405"):
                raise
            raise Permanent(
                f"the store at {self.endpoint} does not support S3 {operation} "
                f"({error_code(exc)}): see docs/providers.md for what to do instead"
            ) from exc

    async def abort_multipart_uploads(self, older_than: float = 0.0) -> int:
        """Abort incomplete multipart uploads under the prefix started more than
        `older_than` seconds ago; returns how many were aborted."""
        client = await self._get_client()
        uploads: list[tuple[str, str]] = []
        paginator = client.get_paginator("list_multipart_uploads")
        with self._translate_errors(None):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("")):
                for upload in page.get("Uploads", ()):
                    started = upload.get("Initiated")
                    age = _age_seconds(started) if started is not None else float("inf")
                    if age >= older_than:
                        uploads.append((upload["Key"], upload["UploadId"]))
        aborted = 0
        for key, upload_id in uploads:
            with self._translate_errors(self._name(key)):
                try:
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                except boto_errors.ClientError as exc:
                    if error_code(exc) != "NoSuchUpload":
                        raise
                    continue
            aborted += 1
        return aborted


def _age_seconds(started: Any) -> float:
    return time.time() - float(started.timestamp())
