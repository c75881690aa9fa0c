"""The S3 backend: objects under a key prefix in one bucket, spoken to through aiobotocore.

Every request runs inside `s3_errors.translate_errors`, which turns botocore, aiohttp and
socket errors into `bbackup.errors` storage errors; nothing above this module sees a
botocore type. This module is the data path, requests on objects and their answers; the
client and object naming are its base `s3_connection`, the bucket's calls `s3_bucket`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from botocore import exceptions as boto_errors

from bbackup.errors import Transient
from bbackup.storage.base import ObjectInfo
from bbackup.storage.object_lock import lock_parameters
from bbackup.storage.s3_bucket import S3Bucket
from bbackup.storage.s3_errors import error_code, http_status
from bbackup.storage.s3_transfer import (
    BufferBody,
    TransferDeadline,
    bounded,
    read_body,
)

#: Payloads above this size are hashed in a worker thread (hashlib releases the GIL).
_HASH_IN_THREAD = 1 << 20

_RESTORE_RE = re.compile(r'ongoing-request\s*=\s*"(true|false)"', re.IGNORECASE)


def parse_restore_state(header: str | None) -> str | None:
    """Map an S3 `x-amz-restore` header to ObjectInfo.restore_state."""
    match = _RESTORE_RE.search(header or "")
    if match is None:
        return None
    return "ongoing" if match.group(1).lower() == "true" else "restored"


class S3Storage(S3Bucket):
    """A repository at `s3://bucket/prefix` on AWS S3 or an S3-compatible store.

    Objects are written with one PUT each (packs are at most 128 MiB, far below the 5 GiB
    single-PUT limit), so bbackup itself never leaves incomplete multipart uploads; other
    tools sharing the bucket may, and `abort_multipart_uploads` cleans those up.

    The aiobotocore client is created on first use and belongs to the event loop that was
    running then; `aclose()` (or leaving `async with`) releases its connections.
    """

    async def __aenter__(self) -> S3Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- Storage protocol ------------------------------------------------------------

    @bounded("PutObject")
    async def put(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        storage_class: str | None = None,
        if_absent: bool = False,
    ) -> None:
        """Store `data` under `name` with one PUT carrying its SHA-256 for the store to verify.

        With `if_absent`, `If-None-Match: *` makes the store refuse to overwrite. A store
        that ignores the header overwrites, and one that rejects it (501 NotImplemented) is
        sent plain PUTs from then on: both are harmless for content-addressed names.
        """
        # botocore takes bytes or a file; any other buffer (a pack's memory map) goes as a
        # file over it, and `prepare_request` sends either without copying it.
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(name),
            "Body": data if isinstance(data, bytes) else BufferBody(data),
            "ChecksumAlgorithm": "SHA256",
            # Computed here, so botocore sends it as a header rather than an aws-chunked
            # trailer (which it would use over HTTPS); the store rejects a mismatch.
            "ChecksumSHA256": await _sha256_b64(data),
        }
        if storage_class:
            params["StorageClass"] = storage_class
        params.update(lock_parameters(self.object_lock, name, time.time()))
        conditional = if_absent and self._conditional_writes
        if conditional:
            params["IfNoneMatch"] = "*"
        client = await self._get_client()
        with self._translate_errors(name):
            try:
                await client.put_object(**params)
            except boto_errors.ClientError as exc:
                code = error_code(exc)
                if conditional and code in ("PreconditionFailed", "412"):
                    return  # the object exists: exactly what if_absent asks for
                if not (conditional and code == "NotImplemented"):
                    raise
                self._conditional_writes = False
                del params["IfNoneMatch"]
                if isinstance(params["Body"], BufferBody):
                    params["Body"].seek(0)
                await client.put_object(**params)

    @bounded("GetObject")
    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            return b""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name)}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{last}"
        client = await self._get_client()
        with self._translate_errors(name):
            try:
                response = await client.get_object(**params)
            except boto_errors.ClientError as exc:
                if error_code(exc) == "InvalidRange" or http_status(exc) == 416:
                    return b""  # the range starts at or after the end of the object
                raise
            async with response["Body"] as body:
                data = await read_body(body)
        expected = response.get("ContentLength")
        if expected is not None and len(data) != expected:
            raise Transient(
                f"{name}: truncated body from S3 endpoint {self.endpoint}: "
                f"got {len(data)} of {expected} bytes"
            )
        return data

    @bounded("HeadObject")
    async def stat(self, name: str) -> ObjectInfo:
        client = await self._get_client()
        with self._translate_errors(name):
            response = await client.head_object(Bucket=self.bucket, Key=self._key(name))
        return ObjectInfo(
            name,
            int(response["ContentLength"]),
            response["LastModified"].timestamp(),
            response.get("StorageClass") or "STANDARD",
            parse_restore_state(response.get("Restore")),
        )

    async def list(
        self, prefix: str, *, after: str = "", before: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        client = await self._get_client()
        paginator = client.get_paginator("list_objects_v2")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        if after:
            params["StartAfter"] = self._key(after)
        pages = paginator.paginate(**params).__aiter__()
        while True:
            # Only the page fetch is translated: errors thrown into this generator by the
            # consumer must reach it unchanged.
            with self._translate_errors(prefix or "/"):
                try:
                    async with self._page_deadline(prefix).running():
                        page = await pages.__anext__()
                except StopAsyncIteration:
                    return
            for entry in page.get("Contents", ()):
                if before is not None and entry["Key"] >= self._key(before):
                    return  # the rest of the listing sorts after the span: not fetched
                yield ObjectInfo(
                    self._name(entry["Key"]),
                    int(entry["Size"]),
                    entry["LastModified"].timestamp(),
                    entry.get("StorageClass") or "STANDARD",
                )

    def _page_deadline(self, prefix: str) -> TransferDeadline:
        describe = f"{prefix or '/'}: S3 ListObjectsV2 at {self.endpoint}"
        return TransferDeadline(self.io_timeout, describe)

    @bounded("DeleteObject")
    async def delete(self, name: str) -> None:
        client = await self._get_client()
        with self._translate_errors(name):
            try:
                await client.delete_object(Bucket=self.bucket, Key=self._key(name))
            except boto_errors.ClientError as exc:
                if error_code(exc) not in ("NoSuchKey", "404"):
                    raise

    @bounded("RestoreObject")
    async def restore(self, name: str, days: int, tier: str) -> None:
        """Request a temporary readable copy of an archived object; a no-op otherwise."""
        client = await self._get_client()
        with self._translate_errors(name):
            try:
                await client.restore_object(
                    Bucket=self.bucket,
                    Key=self._key(name),
                    RestoreRequest={
                        "Days": days,
                        "GlacierJobParameters": {"Tier": tier.capitalize()},
                    },
                )
            except boto_errors.ClientError as exc:
                # InvalidObjectState: the object is not in an archive class, nothing to do.
                if error_code(exc) not in ("RestoreAlreadyInProgress", "InvalidObjectState"):
                    raise


async def _sha256_b64(data: bytes | bytearray | memoryview) -> str:
    if len(data) > _HASH_IN_THREAD:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
    else:
        digest = hashlib.sha256(data).digest()
    return base64.b64encode(digest).decode("ascii")
