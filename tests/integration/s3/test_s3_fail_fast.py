"""S3 failures a user meets get their documented exit code and one line naming what is
wrong, without a traceback: refused credentials, a missing bucket, an unreachable
endpoint, a malformed s3:// URL. Retries never turn a permanent failure into a wait."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, run_subprocess
from s3_harness import UNREACHABLE_COMMANDS, UnreachableRun, server_requests

from s3_server import MotoEndpoint, S3Bucket

pytestmark = pytest.mark.s3


def assert_one_line_error(result: CliResult, code: int, *needles: str) -> None:
    assert result.exit_code == code, result
    assert "Traceback" not in result.output, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    for needle in needles:
        assert needle in lines[0], result


def command_line(command: str, url: str, src: Path) -> list[str]:
    return [command, "-r", url, *([str(src)] if command == "backup" else [])]


def bucket_exists(moto_endpoint: MotoEndpoint, name: str) -> bool:
    buckets = moto_endpoint.client.list_buckets()["Buckets"]
    return name in {b["Name"] for b in buckets}


@pytest.mark.parametrize("command", ["init", "snapshots", "backup"])
def test_refused_credentials_exit_17_at_once(
    tmp_path: Path,
    s3_bucket: S3Bucket,
    moto_endpoint: MotoEndpoint,
    password: str,
    command: str,
) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG", "AWS_SECRET_ACCESS_KEY": "x"}
    started = time.monotonic()
    with moto_endpoint.enforcing_credentials(), server_requests() as requests:
        result = run_subprocess(*command_line(command, s3_bucket.url, tmp_path), env=env)
    elapsed = time.monotonic() - started

    assert_one_line_error(result, 17, "access denied", s3_bucket.bucket, "credentials")
    assert elapsed < 20
    # Opening asks for the config and the key listing at once; neither may be retried.
    assert len(requests) == len(set(requests)) <= 2, f"retried a refusal: {requests}"
    assert s3_bucket.keys() == []


@pytest.mark.parametrize("command", ["snapshots", "backup"])
def test_missing_bucket_exits_10_naming_it_and_is_not_created(
    tmp_path: Path, cli: Cli, s3_bucket: S3Bucket, moto_endpoint: MotoEndpoint, command: str
) -> None:
    missing = f"bb-missing-{secrets.token_hex(6)}"

    result = cli(*command_line(command, f"s3://{missing}/repo", tmp_path))

    assert_one_line_error(result, 10, repr(missing), "not found")
    assert not bucket_exists(moto_endpoint, missing)


def test_init_creates_a_missing_bucket(
    cli: Cli, s3_bucket: S3Bucket, moto_endpoint: MotoEndpoint
) -> None:
    missing = f"bb-created-{secrets.token_hex(6)}"
    url = f"s3://{missing}/repo"
    try:
        result = cli("init", "-r", url)

        assert result.exit_code == 0, result
        assert bucket_exists(moto_endpoint, missing)
        listed = cli("snapshots", "-r", url, "--json")
        assert listed.exit_code == 0, listed
        assert listed.snapshot_list() == []
    finally:
        if bucket_exists(moto_endpoint, missing):
            moto_endpoint.remove_bucket(missing)


@pytest.mark.parametrize("command", UNREACHABLE_COMMANDS)
def test_unreachable_endpoint_exits_18_naming_it_within_the_retry_budget(
    unreachable_runs: dict[str, UnreachableRun], command: str
) -> None:
    run = unreachable_runs[command]

    result, elapsed = run.wait()

    assert_one_line_error(result, 18, f"cannot reach S3 endpoint {run.endpoint}")
    assert elapsed < 120


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("s3://", "use s3://bucket[/prefix]", id="no-bucket"),
        pytest.param("s3://UPPER_bad!/x", "is not a bucket name", id="bad-bucket-name"),
        pytest.param("s3://b//x", "is not a bucket name", id="short-bucket-name"),
        # The test's own bucket, so a wrongly accepted URL leaves nothing behind.
        pytest.param("s3://{bucket}//x", "empty path segment", id="empty-first-segment"),
    ],
)
@pytest.mark.parametrize("command", ["init", "snapshots", "backup"])
def test_malformed_s3_url_exits_16_without_a_request(
    tmp_path: Path, cli: Cli, s3_bucket: S3Bucket, url: str, reason: str, command: str
) -> None:
    url = url.format(bucket=s3_bucket.bucket)
    with server_requests() as requests:
        result = cli(*command_line(command, url, tmp_path))

    assert_one_line_error(result, 16, repr(url), reason)
    assert requests == []
