"""S3 backend behaviour beyond the shared contract, over real HTTP to a local moto server:
checksums, storage classes, conditional writes, archive restores, error translation,
pagination and bucket housekeeping."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import mmap
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bbackup.errors import AccessDenied, Archived, BucketNotFound, NotFound, Permanent, Transient
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.counting import CountingStorage
from bbackup.storage.retry import RetryingStorage
from bbackup.storage.s3 import S3Storage, parse_restore_state
from bbackup.storage.s3_errors import NO_CREDENTIALS
from s3_server import MotoEndpoint, S3Bucket

pytestmark = pytest.mark.s3

T = TypeVar("T")
SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "s3_endpoint.py"


def run_with(
    s3: S3Bucket,
    scenario: Callable[[S3Storage], Awaitable[T]],
    *,
    bucket: str | None = None,
    prefix: str = "repo",
    **options: Any,
) -> T:
    """Run `scenario` against an S3Storage on the test bucket, closing it afterwards."""

    async def go() -> T:
        async with S3Storage(
            bucket or s3.bucket, prefix, endpoint_url=s3.endpoint, **options
        ) as storage:
            return await scenario(storage)

    return asyncio.run(go())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def put_into_moto(bucket: str, keys: list[str], body: bytes) -> None:
    """Objects written straight into the store of this process's moto server, no HTTP."""
    from moto.s3.models import s3_backends

    partition, account = s3_backends.bucket_accounts[bucket]
    backend = s3_backends[account][partition]
    for key in keys:
        backend.put_object(bucket, key, body)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- what lands in the bucket -----------------------------------------------------------


def test_objects_are_stored_under_the_prefix(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> None:
        await storage.put("config", b"c")
        await storage.put("data/ab/abcd", b"d")

    run_with(s3_bucket, go)
    assert s3_bucket.keys() == ["repo/config", "repo/data/ab/abcd"]


def test_empty_prefix_stores_names_at_the_bucket_root(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> list[str]:
        await storage.put("config", b"c")
        return [info.name async for info in storage.list("")]

    assert run_with(s3_bucket, go, prefix="") == ["config"]
    assert s3_bucket.keys() == ["config"]


def test_put_sends_sha256_checksum_that_the_store_keeps(s3_bucket: S3Bucket) -> None:
    payload = os.urandom(3000)
    expected = base64.b64encode(hashlib.sha256(payload).digest()).decode()
    sent: list[dict[str | bytes, str | bytes]] = []

    async def go(storage: S3Storage) -> None:
        client = await storage._get_client()
        client.meta.events.register(
            "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
        )
        await storage.put("data/ck/sum", memoryview(payload))

    run_with(s3_bucket, go)
    headers = {_text(k).lower(): _text(v) for k, v in sent[0].items()}
    assert headers["x-amz-checksum-sha256"] == expected
    assert "x-amz-trailer" not in headers  # a plain header, not an aws-chunked trailer
    head = s3_bucket.client.head_object(
        Bucket=s3_bucket.bucket, Key="repo/data/ck/sum", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == expected


def test_a_pack_in_a_memory_map_is_sent_from_the_map_itself_not_a_copy(
    s3_bucket: S3Bucket,
) -> None:
    # What a backup uploads: a view of the pack's map, shorter than the map. A copy of
    # each pack on its way out would hold one more pack per upload in flight.
    size = 3 * 1024 * 1024 + 17
    pack_map = mmap.mmap(-1, size + 4096)
    pack_map[:size] = os.urandom(size)
    sent: list[Any] = []

    async def go(storage: S3Storage) -> None:
        client = await storage._get_client()
        client.meta.events.register(
            "before-send.s3.PutObject", lambda request, **_: sent.append(request)
        )
        await storage.put("data/mm/pack", memoryview(pack_map)[:size])

    run_with(s3_bucket, go)
    stored = s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key="repo/data/mm/pack")
    assert stored["Body"].read() == pack_map[:size]
    body = memoryview(sent[0].body._value)  # the body aiohttp was given
    assert body.obj is pack_map and len(body) == size


def test_storage_class_lands_on_the_object(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> tuple[str, str, dict[str, str]]:
        await storage.put("data/aa/cold", b"x", storage_class="STANDARD_IA")
        await storage.put("index/hot", b"y")
        listed = {info.name: info.storage_class async for info in storage.list("")}
        return (
            (await storage.stat("data/aa/cold")).storage_class,
            (await storage.stat("index/hot")).storage_class,
            listed,
        )

    cold, hot, listed = run_with(s3_bucket, go)
    assert (cold, hot) == ("STANDARD_IA", "STANDARD")
    assert listed == {"data/aa/cold": "STANDARD_IA", "index/hot": "STANDARD"}
    head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key="repo/data/aa/cold")
    assert head["StorageClass"] == "STANDARD_IA"


def test_if_absent_keeps_existing_object_and_creates_missing_one(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> tuple[bytes, bytes]:
        await storage.put("locks/a", b"first")
        # moto overwrites unless If-None-Match: * is sent, so this checks the header too.
        await storage.put("locks/a", b"second", if_absent=True)
        await storage.put("locks/b", b"new", if_absent=True)
        return await storage.get("locks/a"), await storage.get("locks/b")

    assert run_with(s3_bucket, go) == (b"first", b"new")


def test_stat_reports_size_and_mtime(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> tuple[int, float]:
        await storage.put("snapshots/s", b"12345")
        info = await storage.stat("snapshots/s")
        return info.size, info.mtime

    size, mtime = run_with(s3_bucket, go)
    assert size == 5
    assert abs(mtime - time.time()) < 60


def test_range_at_or_past_the_end_returns_empty(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> tuple[bytes, bytes, bytes, bytes]:
        await storage.put("data/rr/r", b"0123456789")
        await storage.put("data/rr/empty", b"")
        return (
            await storage.get("data/rr/r", 10),
            await storage.get("data/rr/r", 50, 5),
            await storage.get("data/rr/r", 8, 100),
            await storage.get("data/rr/empty", 0, 10),
        )

    assert run_with(s3_bucket, go) == (b"", b"", b"89", b"")


# -- archive tiers ------------------------------------------------------------------------


def test_archived_object_needs_restore_before_reading(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> tuple[Any, ...]:
        await storage.put("data/gl/pack", b"frozen", storage_class="GLACIER")
        before = await storage.stat("data/gl/pack")
        with pytest.raises(Archived, match="restore"):
            await storage.get("data/gl/pack")
        await storage.restore("data/gl/pack", 1, "bulk")
        await storage.restore("data/gl/pack", 1, "bulk")  # already restored: fine
        after = await storage.stat("data/gl/pack")
        return before, after, await storage.get("data/gl/pack")

    before, after, data = run_with(s3_bucket, go)
    assert (before.storage_class, before.restore_state, before.archived) == ("GLACIER", None, True)
    assert (after.restore_state, after.archived) == ("restored", False)
    assert data == b"frozen"


def test_restore_of_standard_object_is_a_no_op_and_of_missing_one_not_found(
    s3_bucket: S3Bucket,
) -> None:
    async def go(storage: S3Storage) -> bytes:
        await storage.put("data/st/x", b"warm")
        await storage.restore("data/st/x", 1, "standard")
        with pytest.raises(NotFound):
            await storage.restore("data/st/missing", 1, "standard")
        return await storage.get("data/st/x")

    assert run_with(s3_bucket, go) == b"warm"


@pytest.mark.parametrize(
    ("header", "state"),
    [
        (None, None),
        ('ongoing-request="true"', "ongoing"),
        ('ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"', "restored"),
    ],
)
def test_restore_header_maps_to_restore_state(header: str | None, state: str | None) -> None:
    assert parse_restore_state(header) == state


# -- listing and bulk housekeeping ------------------------------------------------------------


def test_listing_follows_pages_past_1000_and_stays_under_the_prefix(s3_bucket: S3Bucket) -> None:
    names = [f"data/{i % 256:02x}/obj{i:04d}" for i in range(1001)]
    # Straight into the server's store: a thousand PUTs over HTTP cost ~10 s of CPU, and
    # putting is not what this test is about (the last object still goes over HTTP).
    put_into_moto(s3_bucket.bucket, [f"repo/{name}" for name in names[:-1]], b"x")

    async def go(storage: S3Storage) -> tuple[list[str], list[str]]:
        await storage.put(names[-1], b"x")
        await storage.put("config", b"c")
        listed = [info.name async for info in storage.list("data/")]
        return listed, [info.name async for info in storage.list("")]

    # A sibling prefix that merely starts with the same letters stays invisible.
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key="repo2/data/x", Body=b"other")
    listed, everything = run_with(s3_bucket, go)
    assert sorted(listed) == sorted(names)
    assert sorted(everything) == sorted([*names, "config"])


def test_abort_multipart_uploads_only_under_the_prefix(s3_bucket: S3Bucket) -> None:
    client, bucket = s3_bucket.client, s3_bucket.bucket
    for key in ("repo/data/aa/big1", "repo/data/bb/big2", "elsewhere/big3"):
        client.create_multipart_upload(Bucket=bucket, Key=key)

    async def go(storage: S3Storage) -> tuple[int, int, int]:
        # moto dates every upload 2010-11-10, so only an age none reaches is testable.
        young = await storage.abort_multipart_uploads(older_than=1e10)
        return (
            young,
            await storage.abort_multipart_uploads(),
            await storage.abort_multipart_uploads(),
        )

    assert run_with(s3_bucket, go) == (0, 2, 0)
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]
    assert left == ["elsewhere/big3"]


def test_factory_opens_s3_repository_from_environment(s3_bucket: S3Bucket) -> None:
    # s3_bucket set BBACKUP_S3_ENDPOINT and the AWS_* credentials, as a user would.
    async def go() -> bytes:
        stack = open_storage(s3_bucket.url, StorageOptions(retry_seconds=5))
        try:
            await stack.storage.put("keys/k1", b"key")
            return await stack.storage.get("keys/k1")
        finally:
            await stack.storage.aclose()

    assert asyncio.run(go()) == b"key"
    assert s3_bucket.keys() == ["repo/keys/k1"]


# -- buckets ----------------------------------------------------------------------------------


def test_missing_bucket_raises_bucket_not_found_without_retrying(s3_bucket: S3Bucket) -> None:
    missing = f"{s3_bucket.bucket}-missing"

    async def go() -> None:
        backend = S3Storage(missing, "repo", endpoint_url=s3_bucket.endpoint)
        counter = CountingStorage(backend)
        storage = RetryingStorage(counter, max_elapsed=10)
        try:
            with pytest.raises(BucketNotFound, match=f"{missing}.*{s3_bucket.endpoint}"):
                await storage.get("config")
            with pytest.raises(BucketNotFound):
                [info async for info in storage.list("")]
            with pytest.raises(BucketNotFound, match="not found at"):
                await backend.ensure_bucket(create=False)
            assert counter.counts["GET"] == 1 and counter.counts["LIST"] == 1
        finally:
            await storage.aclose()

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started < 5


def test_ensure_bucket_creates_missing_bucket(
    s3_bucket: S3Bucket, moto_endpoint: MotoEndpoint
) -> None:
    fresh = f"{s3_bucket.bucket}-new"

    async def go(storage: S3Storage) -> bytes:
        await storage.ensure_bucket(create=True)
        await storage.ensure_bucket(create=False)
        await storage.put("config", b"c")
        return await storage.get("config")

    try:
        assert run_with(s3_bucket, go, bucket=fresh) == b"c"
    finally:
        moto_endpoint.remove_bucket(fresh)


# -- credentials and reachability ---------------------------------------------------------------


def test_unknown_credentials_raise_access_denied_without_retrying(
    s3_bucket: S3Bucket, moto_endpoint: MotoEndpoint
) -> None:
    async def go() -> None:
        counter = CountingStorage(
            S3Storage(s3_bucket.bucket, "repo", endpoint_url=s3_bucket.endpoint)
        )
        storage = RetryingStorage(counter, max_elapsed=10)
        try:
            with pytest.raises(AccessDenied, match="credentials") as caught:
                await storage.put("config", b"c")
            assert "InvalidAccessKeyId" in caught.value.message
            assert "\n" not in caught.value.message
            assert counter.counts["PUT"] == 1
        finally:
            await storage.aclose()

    started = time.monotonic()
    with moto_endpoint.enforcing_credentials():
        asyncio.run(go())
    assert time.monotonic() - started < 5


def test_missing_credentials_raise_access_denied_naming_the_sources(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup

    async def go(storage: S3Storage) -> None:
        await storage.get("config")

    with pytest.raises(AccessDenied) as caught:
        run_with(s3_bucket, go)
    assert caught.value.message == NO_CREDENTIALS


def test_unknown_profile_raises_access_denied(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> None:
        await storage.get("config")

    with pytest.raises(AccessDenied, match="no-such-profile"):
        run_with(s3_bucket, go, profile="no-such-profile")


def test_unreachable_endpoint_is_transient_and_retries_stop_in_time(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{closed_port()}"

    async def go() -> None:
        # A short max_wait: tenacity does not shorten the last back-off to the time budget.
        storage = RetryingStorage(
            S3Storage("bucket", "repo", endpoint_url=endpoint),
            max_elapsed=2,
            max_attempts=100,
            max_wait=0.5,
        )
        try:
            await storage.put("config", b"c")
        finally:
            await storage.aclose()

    started = time.monotonic()
    with pytest.raises(Transient, match=f"cannot reach S3 endpoint {endpoint}"):
        asyncio.run(go())
    assert time.monotonic() - started < 6


# -- error responses from a misbehaving server --------------------------------------------------


Reply = tuple[int, bytes, int | None]  # status, body, claimed Content-Length (None: real)


@contextlib.asynccontextmanager
async def canned_server(
    status: int = 200,
    body: bytes = b"",
    length: int | None = None,
    *,
    reply: Callable[[bytes], Reply] | None = None,
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP server on 127.0.0.1 that answers every request with `status` and `body`
    (or whatever `reply(request_head)` returns), then closes the connection.

    Yields its URL and the list of request heads it received."""
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        received.append(request)
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", request)
        # With "Expect: 100-continue" (botocore's PUTs) the body only follows a 100 reply.
        if match and b"100-continue" not in request.lower():
            await reader.readexactly(int(match.group(1)))
        code, content, claimed = reply(request) if reply else (status, body, length)
        head = (
            f"HTTP/1.1 {code} Canned\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(content) if claimed is None else claimed}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + content)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


def s3_error(code: str, message: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (503, s3_error("SlowDown", "Please reduce your request rate."), Transient, "SlowDown"),
        (500, s3_error("InternalError", "Try again."), Transient, "InternalError"),
        (403, s3_error("AccessDenied", "Access Denied"), AccessDenied, "credentials"),
        (400, s3_error("InvalidArgument", "Bad header"), Permanent, "InvalidArgument"),
        (404, s3_error("NoSuchKey", "The specified key does not exist."), NotFound, "config"),
    ],
)
def test_error_responses_are_translated(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    body: bytes,
    error: type[Exception],
    text: str,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    async def go() -> None:
        async with (
            canned_server(status, body) as (endpoint, _),
            S3Storage("bucket", "repo", endpoint_url=endpoint) as storage,
        ):
            with pytest.raises(error) as caught:
                await storage.get("config")
        assert text in str(caught.value) or text in repr(caught.value.__cause__)
        if error is Transient:
            assert endpoint in str(caught.value)
        if error is Permanent:
            assert not isinstance(caught.value, AccessDenied | BucketNotFound)

    asyncio.run(go())


def test_body_shorter_than_content_length_is_transient(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    async def go() -> None:
        async with (
            canned_server(200, b"only ten b", length=100) as (endpoint, _),
            S3Storage("bucket", "repo", endpoint_url=endpoint) as storage,
        ):
            with pytest.raises(Transient, match=endpoint):
                await storage.get("data/aa/pack")

    asyncio.run(go())


# -- addressing and region ----------------------------------------------------------------------


def test_addressing_style_defaults_to_path_for_custom_endpoints(isolated_env: Path) -> None:
    assert S3Storage("b", "p").addressing_style == "auto"
    assert S3Storage("b", "p", endpoint_url="http://minio:9000").addressing_style == "path"
    assert S3Storage("b", "p", endpoint_url="http://x", path_style=False).addressing_style == (
        "virtual"
    )
    assert S3Storage("b", "p", path_style=True).addressing_style == "path"


def test_region_comes_from_flag_then_environment_then_default(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert S3Storage("b", "p").region == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert S3Storage("b", "p").region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert S3Storage("b", "p").region == "eu-central-1"
    assert S3Storage("b", "p", region="ap-south-1").region == "ap-south-1"


def test_region_falls_back_to_the_aws_profile(
    s3_bucket: S3Bucket, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    aws = isolated_env / ".aws"
    aws.mkdir()
    (aws / "config").write_text("[profile backup]\nregion = eu-west-2\n")
    (aws / "credentials").write_text(
        "[backup]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )

    async def go(storage: S3Storage) -> tuple[str, bytes]:
        await storage.put("config", b"c")
        return storage.region, await storage.get("config")

    assert run_with(s3_bucket, go, profile="backup") == ("eu-west-2", b"c")


# -- the demo endpoint script -------------------------------------------------------------------


def test_endpoint_script_runs_a_command_against_a_fresh_bucket(isolated_env: Path) -> None:
    probe = (
        "import os, boto3\n"
        "c = boto3.client('s3', endpoint_url=os.environ['BBACKUP_S3_ENDPOINT'])\n"
        "c.put_object(Bucket='demo', Key='hello', Body=b'hi')\n"
        "print(c.get_object(Bucket='demo', Key='hello')['Body'].read().decode())\n"
        "raise SystemExit(3)\n"
    )
    command = [sys.executable, "-c", probe]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--bucket", "demo", "--run", "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "hi"


def test_store_rejecting_if_none_match_gets_plain_puts(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    def reply(request: bytes) -> Reply:
        if b"\r\nif-none-match:" in request.lower():
            return 501, s3_error("NotImplemented", "A header you provided is not implemented"), None
        return 200, b"", None

    async def go() -> list[bytes]:
        async with (
            canned_server(reply=reply) as (endpoint, received),
            S3Storage("bucket", "repo", endpoint_url=endpoint) as storage,
        ):
            await storage.put("data/aa/one", b"1", if_absent=True)
            await storage.put("data/aa/two", b"2", if_absent=True)
        return received

    received = asyncio.run(go())
    conditional = [b"\r\nif-none-match:" in r.lower() for r in received]
    assert conditional == [True, False, False]


def test_an_empty_buffer_is_stored_as_an_empty_object(s3_bucket: S3Bucket) -> None:
    async def go(storage: S3Storage) -> bytes:
        await storage.put("data/mm/empty", memoryview(bytearray()))
        return await storage.get("data/mm/empty")

    assert run_with(s3_bucket, go) == b""
