"""S3's object versions and object lock for one repository (`VersionedStore`): the
lock-enabled bucket, retention reads and extensions, ListObjectVersions, GetObject by
VersionId, and CopyObject of an old version back as the current one.

It speaks through the S3Storage it is given (its client, key naming and error
translation), so errors arrive as `bbackup.errors` storage errors like every other call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from botocore import exceptions as boto_errors

from bbackup.errors import Permanent
from bbackup.storage.object_lock import (
    BucketLockState,
    ObjectLockSetting,
    ObjectVersion,
    Retention,
    is_locked_name,
)
from bbackup.storage.s3 import S3Storage
from bbackup.storage.s3_connection import DEFAULT_REGION
from bbackup.storage.s3_errors import error_code
from bbackup.storage.s3_transfer import TransferDeadline, read_body


class S3Versions:
    """The `VersionedStore` of a repository in an S3 bucket."""

    def __init__(self, s3: S3Storage) -> None:
        self.s3 = s3

    @property
    def location(self) -> str:
        return self.s3.location

    def set_object_lock(self, setting: ObjectLockSetting | None) -> None:
        self.s3.object_lock = setting

    def _deadline(self, name: str, operation: str) -> TransferDeadline:
        return TransferDeadline(self.s3.io_timeout, f"{name}: S3 {operation} at {self.s3.endpoint}")

    # -- the bucket -------------------------------------------------------------------

    async def bucket_lock_state(self) -> BucketLockState:
        client = await self.s3._get_client()
        with self.s3._translate_errors(None):
            async with self._deadline("/", "GetBucketVersioning").running():
                versioning = await client.get_bucket_versioning(Bucket=self.s3.bucket)
            async with self._deadline("/", "GetObjectLockConfiguration").running():
                try:
                    lock = await client.get_object_lock_configuration(Bucket=self.s3.bucket)
                except boto_errors.ClientError as exc:
                    if error_code(exc) != "ObjectLockConfigurationNotFoundError":
                        raise
                    lock = {}
        enabled = (lock.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled")
        return BucketLockState(str(versioning.get("Status") or ""), enabled == "Enabled")

    async def create_locked_bucket(self) -> BucketLockState:
        client = await self.s3._get_client()
        params: dict[str, Any] = {"Bucket": self.s3.bucket, "ObjectLockEnabledForBucket": True}
        if self.s3.region != DEFAULT_REGION:
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.s3.region}
        with self.s3._translate_errors(None):
            try:
                await client.head_bucket(Bucket=self.s3.bucket)
            except boto_errors.ClientError as exc:
                if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                try:
                    await client.create_bucket(**params)
                except boto_errors.ClientError as create_exc:
                    if error_code(create_exc) != "BucketAlreadyOwnedByYou":
                        raise
        return await self.bucket_lock_state()

    async def noncurrent_days(self) -> int | None:
        try:
            rules = await self.s3.get_lifecycle_rules()
        except Permanent:
            return None  # no permission or no lifecycle API: the caller says "unknown"
        own = self.s3._key("")
        days = [
            int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
            for rule in rules
            if rule.get("Status") == "Enabled"
            and "NoncurrentDays" in (rule.get("NoncurrentVersionExpiration") or {})
            and own.startswith(_rule_prefix(rule))
        ]
        return min(days) if days else None

    # -- versions ---------------------------------------------------------------------

    async def list_versions(self, prefix: str) -> AsyncIterator[ObjectVersion]:
        client = await self.s3._get_client()
        pages = (
            client.get_paginator("list_object_versions")
            .paginate(Bucket=self.s3.bucket, Prefix=self.s3._key(prefix))
            .__aiter__()
        )
        while True:
            with self.s3._translate_errors(prefix or "/"):
                try:
                    async with self._deadline(prefix or "/", "ListObjectVersions").running():
                        page = await pages.__anext__()
                except StopAsyncIteration:
                    return
            for entry in page.get("Versions", ()):
                yield ObjectVersion(
                    self.s3._name(entry["Key"]),
                    str(entry["VersionId"]),
                    entry["LastModified"].timestamp(),
                    int(entry["Size"]),
                    bool(entry["IsLatest"]),
                    etag=str(entry.get("ETag") or ""),
                )
            for entry in page.get("DeleteMarkers", ()):
                yield ObjectVersion(
                    self.s3._name(entry["Key"]),
                    str(entry["VersionId"]),
                    entry["LastModified"].timestamp(),
                    0,
                    bool(entry["IsLatest"]),
                    deleted=True,
                )

    async def get_version(
        self, name: str, version_id: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        if length == 0:
            return b""
        params: dict[str, Any] = {
            "Bucket": self.s3.bucket,
            "Key": self.s3._key(name),
            "VersionId": version_id,
        }
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{last}"
        client = await self.s3._get_client()
        with self.s3._translate_errors(name):
            async with self._deadline(name, "GetObject").running():
                try:
                    response = await client.get_object(**params)
                except boto_errors.ClientError as exc:
                    if error_code(exc) == "InvalidRange":
                        return b""
                    raise
                async with response["Body"] as body:
                    return await read_body(body)

    # -- retention --------------------------------------------------------------------

    async def retention(self, name: str) -> Retention:
        client = await self.s3._get_client()
        with self.s3._translate_errors(name):
            async with self._deadline(name, "HeadObject").running():
                response = await client.head_object(Bucket=self.s3.bucket, Key=self.s3._key(name))
        until = response.get("ObjectLockRetainUntilDate")
        return Retention(
            response.get("ObjectLockMode"), until.timestamp() if until is not None else None
        )

    async def extend_retention(self, name: str, mode: str, until: float) -> None:
        client = await self.s3._get_client()
        with self.s3._translate_errors(name):
            async with self._deadline(name, "PutObjectRetention").running():
                await client.put_object_retention(
                    Bucket=self.s3.bucket,
                    Key=self.s3._key(name),
                    Retention={"Mode": mode, "RetainUntilDate": datetime.fromtimestamp(until, UTC)},
                )

    async def restore_version(self, name: str, version_id: str) -> None:
        client = await self.s3._get_client()
        key = self.s3._key(name)
        with self.s3._translate_errors(name):
            async with self._deadline(name, "CopyObject").running():
                # The copy and then its retention: stores differ on which checksum
                # header a CopyObject with lock parameters must carry, none on this.
                await client.copy_object(
                    Bucket=self.s3.bucket,
                    Key=key,
                    CopySource={"Bucket": self.s3.bucket, "Key": key, "VersionId": version_id},
                )
        setting = self.s3.object_lock
        if setting is not None and is_locked_name(name):
            await self.extend_retention(name, setting.s3_mode, setting.retain_until(time.time()))


def _rule_prefix(rule: dict[str, Any]) -> str:
    """The key prefix a lifecycle rule applies to ('' for the whole bucket)."""
    found = rule.get("Filter") or {}
    prefix = found.get("Prefix")
    if prefix is None:
        prefix = (found.get("And") or {}).get("Prefix")
    if prefix is None:
        prefix = rule.get("Prefix", "")
    return str(prefix or "")
