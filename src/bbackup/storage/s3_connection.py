"""One S3 bucket and key prefix, and the aiobotocore client that reaches it: the settings
the client is configured with (region, addressing, timeouts, pool), its lifetime on one
event loop, and the names of objects under the prefix. The base of every S3 call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from bbackup.storage.object_lock import ObjectLockSetting
from bbackup.storage.s3_errors import translate_errors
from bbackup.storage.s3_transfer import prepare_request

DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT = 10.0
#: Seconds a request may go without moving a block of its bytes (s3_transfer.py).
IO_TIMEOUT = 60.0
MAX_POOL_CONNECTIONS = 64


class S3Connection:
    """The bucket, prefix and client settings of an `S3Storage`, and its client: opened on
    first use, on the loop running then, and released by `aclose()`."""

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
