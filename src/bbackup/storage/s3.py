"""The S3 backend: objects under a key prefix in one bucket, spoken to through aiobotocore.

Every request runs inside `s3_errors.translate_errors`, which turns botocore, aiohttp and
socket errors into `bbackup.errors` storage errors; nothing above this module sees a
botocore type. This module is the data path: naming, requests and their answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from botocore import exceptions as boto_errors

from bbackup.errors import BucketNotFound, Permanent, Transient
from bbackup.storage.base import ObjectInfo
from bbackup.storage.object_lock import ObjectLockSetting, lock_parameters
from bbackup.storage.s3_errors import error_code, http_status, translate_errors
from bbackup.storage.s3_transfer import (
    BufferBody,
    TransferDeadline,
    bounded,
    prepare_request,
    read_body,
)

DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT = 10.0
#: Seconds a request may go without moving a block of its bytes (s3_transfer.py).
IO_TIMEOUT = 60.0
MAX_POOL_CONNECTIONS = 64
#: Payloads above this size are hashed in a worker thread (hashlib releases the GIL).
_HASH_IN_THREAD = 1 << 20

#: Lifecycle rules in S3's LifecycleConfiguration shape (the `Rules` list).
LifecycleRules = list[dict[str, Any]]

_RESTORE_RE = re.compile(r'ongoing-request\s*=\s*"(true|false)"', re.IGNORECASE)


def parse_restore_state(header: str | None) -> str | None:
    """Map an S3 `x-amz-restore` header to ObjectInfo.restore_state."""
    match = _RESTORE_RE.search(header or "")
    if match is None:
        return None
    return "ongoing" if match.group(1).lower() == "true" else "restored"


class S3Storage:
    """A repository at `s3://bucket/prefix` on AWS S3 or an S3-compatible store.

    Objects are written with one PUT each (packs are at most 128 MiB, far below the 5 GiB
    single-PUT limit), so bbackup itself never leaves incomplete multipart uploads; other
    tools sharing the bucket may, and `abort_multipart_uploads` cleans those up.

    The aiobotocore client is created on first use and belongs to the event loop that was
    running then; `aclose()` (or leaving `async with`) releases its connections.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool | None = None,
        profile: str | None = None,
        io_timeout: float = IO_TIMEOUT,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        explicit_region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        #: Until the client opens, a region from the AWS profile is not known yet.
        self._region_from_profile = not explicit_region
        self.region = explicit_region or DEFAULT_REGION
        if path_style is None:
            # Custom endpoints (MinIO, moto, many on-premise stores) rarely have wildcard
            # DNS for bucket subdomains; AWS itself prefers virtual-hosted addressing.
            self.addressing_style = "path" if self.endpoint_url else "auto"
        else:
            self.addressing_style = "path" if path_style else "virtual"
        self.profile = profile
        self.io_timeout = io_timeout
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._open_lock = asyncio.Lock()
        #: Cleared when the store answers If-None-Match with 501 NotImplemented.
        self._conditional_writes = True
        #: The repository's object lock: every object but lock documents gets a retention
        #: date on PUT (`storage.s3_versions` sets it once the config is read).
        self.object_lock: ObjectLockSetting | None = None

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        """The endpoint URL requests go to, for messages."""
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"

    async def __aenter__(self) -> S3Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- client lifetime -------------------------------------------------------------

    async def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None:
            async with self._open_lock:
                if self._client is None:
                    await self._open(loop)
        if self._client_loop is not loop:
            raise RuntimeError(
                "S3Storage is used from a different event loop than the one it was opened in"
            )
        return self._client

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        session = AioSession(profile=self.profile)
        if self._region_from_profile:
            with self._translate_errors(None):
                self.region = session.get_config_variable("region") or DEFAULT_REGION
            self._region_from_profile = False
        config = AioConfig(
            region_name=self.region,
            s3={"addressing_style": self.addressing_style},
            connect_timeout=CONNECT_TIMEOUT,
            # aiohttp's timeout on each socket read; the TransferDeadline around each
            # request also bounds the upload and a trickling answer, which this does not.
            read_timeout=self.io_timeout,
            # RetryingStorage owns retries (bounded total time, jitter); botocore must not
            # multiply them.
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            # We send our own SHA-256 checksum header on PUT. Leaving botocore's default
            # ("when_supported") on would add CRC32 trailers with aws-chunked encoding to
            # other requests, which several S3-compatible stores reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        stack = contextlib.AsyncExitStack()
        with self._translate_errors(None):
            try:
                client = await stack.enter_async_context(
                    session.create_client("s3", endpoint_url=self.endpoint_url, config=config)
                )
            except BaseException:
                await stack.aclose()
                raise
        client.meta.events.register("before-send.s3", prepare_request)
        self._stack, self._client, self._client_loop = stack, client, loop

    async def aclose(self) -> None:
        stack, self._stack, self._client, self._client_loop = self._stack, None, None, None
        self._open_lock = asyncio.Lock()  # a later reopen may run on another loop
        if stack is not None:
            await stack.aclose()

    def _translate_errors(self, name: str | None) -> contextlib.AbstractContextManager[None]:
        """Run a request about `name` (None: the bucket) with its errors translated."""
        return translate_errors(self, name)

    # -- naming ----------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

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


async def _sha256_b64(data: bytes | bytearray | memoryview) -> str:
    if len(data) > _HASH_IN_THREAD:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
    else:
        digest = hashlib.sha256(data).digest()
    return base64.b64encode(digest).decode("ascii")
