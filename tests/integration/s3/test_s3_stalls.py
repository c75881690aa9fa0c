"""Nothing waits forever on S3: behind a proxy that ignores `Expect: 100-continue` a backup
completes, a store that stalls (before answering, mid-upload, mid-body) ends the command
with exit 18 and one line naming the operation and object within the retry budget, and
backup and restore survive a proxy that fails one request in ten."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, restored_path, run_subprocess
from s3_harness import MiB, bucket_objects, mixed_tree, source_files

from fault_proxy import Fault, FaultProxy
from s3_server import S3Bucket

pytestmark = pytest.mark.s3

#: The I/O timeout and retry budget the stalled commands run with (BBACKUP_IO_TIMEOUT_SECONDS,
#: BBACKUP_RETRY_SECONDS), and the most a command may take before the test calls it hung.
IO_TIMEOUT = 1.0
RETRY_SECONDS = 3.0
GUARD = 45.0
#: Interpreter start, imports and opening the repository, on a busy machine.
STARTUP = 10.0


@pytest.fixture
def proxy(s3_bucket: S3Bucket) -> Iterator[FaultProxy]:
    with FaultProxy(s3_bucket.endpoint, seed=7) as proxy:
        yield proxy


@pytest.fixture
def repo_url(s3_bucket: S3Bucket, cli: Cli) -> str:
    """A repository initialised straight at moto (16 MiB packs)."""
    result = cli("init", "-r", s3_bucket.url)
    assert result.exit_code == 0, result
    return s3_bucket.url


def through_proxy(
    proxy: FaultProxy,
    *args: str | os.PathLike[str],
    io_timeout: float = IO_TIMEOUT,
    retry_seconds: float = RETRY_SECONDS,
) -> tuple[CliResult, float]:
    """Run bbackup in a subprocess that reaches S3 through the proxy; fail if it hangs."""
    env = {
        **os.environ,
        "BBACKUP_S3_ENDPOINT": proxy.url,
        "BBACKUP_IO_TIMEOUT_SECONDS": str(io_timeout),
        "BBACKUP_RETRY_SECONDS": str(retry_seconds),
    }
    started = time.monotonic()
    try:
        result = run_subprocess(*args, env=env, timeout=GUARD)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bbackup {args[0]} still waiting after {GUARD:g} s: it hangs")
    return result, time.monotonic() - started


def assert_stalled(
    result: CliResult,
    elapsed: float,
    proxy: FaultProxy,
    what: str,
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    """Exit 18 within the retry budget, one line naming the operation and the object."""
    assert result.exit_code == 18, result
    assert "Traceback" not in result.output, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    pattern = (
        rf"bbackup: error: {what}: S3 \w+ at {re.escape(proxy.url)} stalled: "
        rf"no data moved for {IO_TIMEOUT:g} s"
    )
    assert re.fullmatch(pattern, lines[0]), lines[0]
    # The last attempt starts within the budget and is cut after one I/O timeout.
    assert elapsed < STARTUP + retry_seconds + 2 * IO_TIMEOUT, elapsed


def test_backup_completes_behind_a_proxy_that_never_answers_expect_continue(
    tmp_path: Path, repo_url: str, proxy: FaultProxy, cli: Cli
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(8 * MiB))
    proxy.inject(Fault.IGNORE_EXPECT, times=None)

    result, _elapsed = through_proxy(proxy, "backup", "-r", repo_url, src)

    assert result.exit_code == 0, result
    assert proxy.expect_continue == 0
    assert proxy.requests["PUT"] >= 3  # the data pack, the index segment, the snapshot
    # Connections outlive requests: fewer connections than requests (how many of the
    # PUTs went out at once, each on its own connection, depends on timing).
    assert proxy.connections < sum(proxy.requests.values()), (proxy.connections, proxy.requests)
    restored = cli("restore", "latest", "-r", repo_url, "--target", tmp_path / "restore")
    assert restored.exit_code == 0, restored
    assert source_files(restored_path(tmp_path / "restore", src)) == source_files(src)


def test_slow_upload_that_keeps_moving_is_not_cut(
    tmp_path: Path, s3_bucket: S3Bucket, repo_url: str, proxy: FaultProxy
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(9 * MiB))
    # 1.5 MiB/s: the pack takes more than two I/O timeouts, but moves a block every 0.2 s.
    # The timeout is longer than the other tests' because after the last block moto (in
    # this busy test process) must take in and answer the whole pack within it.
    io_timeout = 2.5
    proxy.throttle = 3 * MiB // 2
    proxy.inject(Fault.THROTTLE, method="PUT", path="/data/", times=None)

    result, elapsed = through_proxy(proxy, "backup", "-r", repo_url, src, io_timeout=io_timeout)

    assert result.exit_code == 0, result
    assert proxy.injected[Fault.THROTTLE] == 1  # not cut, so not retried
    assert elapsed > 2 * io_timeout
    assert sum(e["Size"] for e in bucket_objects(s3_bucket, "repo/data/")) > 9 * MiB


def test_store_that_never_answers_ends_backup_with_exit_18(
    tmp_path: Path, repo_url: str, proxy: FaultProxy
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file.txt").write_text("never uploaded\n")
    proxy.inject(Fault.STALL, times=None)
    # The first call's budget also pays for making the S3 client (seconds on a busy
    # machine), so 3 s could run out before a second attempt is due.
    retry_seconds = 2 * RETRY_SECONDS

    result, elapsed = through_proxy(
        proxy, "backup", "-r", repo_url, tmp_path / "src", retry_seconds=retry_seconds
    )

    assert_stalled(result, elapsed, proxy, r"\S+", retry_seconds)
    assert proxy.injected[Fault.STALL] >= 2  # retried before giving up


def test_store_that_stops_reading_an_upload_ends_backup_with_exit_18(
    tmp_path: Path, s3_bucket: S3Bucket, repo_url: str, proxy: FaultProxy
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(12 * MiB))
    proxy.inject(Fault.STALL, method="PUT", path="/data/", times=None)

    result, elapsed = through_proxy(proxy, "backup", "-r", repo_url, src)

    assert_stalled(result, elapsed, proxy, r"data/[0-9a-f]{2}/[0-9a-f]{64}")
    assert "PutObject" in result.stderr
    assert bucket_objects(s3_bucket, "repo/data/") == []
    assert bucket_objects(s3_bucket, "repo/snapshots/") == []


def test_store_that_stalls_mid_body_ends_restore_with_exit_18(
    tmp_path: Path, repo_url: str, proxy: FaultProxy, cli: Cli
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(3 * MiB))
    assert cli("backup", "-r", repo_url, src).exit_code == 0
    proxy.inject(Fault.STALL_BODY, method="GET", path="/data/", times=None)

    result, elapsed = through_proxy(
        proxy, "restore", "latest", "-r", repo_url, "--target", tmp_path / "restore"
    )

    assert_stalled(result, elapsed, proxy, r"data/[0-9a-f]{2}/[0-9a-f]{64}")
    assert "GetObject" in result.stderr
    assert proxy.injected[Fault.STALL_BODY] >= 2


def test_backup_and_restore_survive_one_failed_request_in_ten(
    tmp_path: Path, s3_bucket: S3Bucket, repo_url: str, proxy: FaultProxy
) -> None:
    src = mixed_tree(tmp_path / "src", big_files=3, big_size=3 * MiB, small_files=30)
    proxy.rates = {
        Fault.SLOWDOWN: 0.02,
        Fault.INTERNAL_ERROR: 0.02,
        Fault.RESET_REQUEST: 0.02,
        Fault.RESET_RESPONSE: 0.02,
        Fault.TRUNCATE: 0.02,
        Fault.LATENCY: 0.1,
    }
    # Each kind at least once, whatever the draw: on the first data pack and index
    # segment up, and on the first data pack, index segment and snapshot down.
    proxy.inject(Fault.RESET_REQUEST, method="PUT", path="/data/")
    proxy.inject(Fault.SLOWDOWN, method="PUT", path="/index/")
    proxy.inject(Fault.INTERNAL_ERROR, method="PUT", path="/snapshots/")
    proxy.inject(Fault.TRUNCATE, method="GET", path="/data/")
    proxy.inject(Fault.RESET_RESPONSE, method="GET", path="/data/")
    proxy.inject(Fault.STALL, method="GET", path="/snapshots/")

    backup, _ = through_proxy(proxy, "backup", "-r", repo_url, src, io_timeout=3, retry_seconds=60)
    restore, _ = through_proxy(
        proxy,
        "restore",
        "latest",
        "-r",
        repo_url,
        "--target",
        tmp_path / "restore",
        "--no-cache",
        io_timeout=3,
        retry_seconds=60,
    )

    assert backup.exit_code == 0, backup
    assert restore.exit_code == 0, restore
    assert source_files(restored_path(tmp_path / "restore", src)) == source_files(src)
    kinds = {
        Fault.SLOWDOWN,
        Fault.INTERNAL_ERROR,
        Fault.RESET_REQUEST,
        Fault.RESET_RESPONSE,
        Fault.TRUNCATE,
        Fault.STALL,
    }
    assert kinds <= set(proxy.injected), proxy.injected
    assert bucket_objects(s3_bucket, "repo/locks/") == []


@pytest.mark.parametrize("variable", ["BBACKUP_IO_TIMEOUT_SECONDS", "BBACKUP_RETRY_SECONDS"])
@pytest.mark.parametrize("value", ["soon", "0"])
def test_bad_timeout_setting_exits_2_naming_it(
    s3_bucket: S3Bucket, cli: Cli, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    result = cli("snapshots", "-r", s3_bucket.url)

    assert result.exit_code == 2, result
    assert result.stderr.strip() == (
        f"bbackup: error: {variable}={value!r} is not a number of seconds above 0"
    )
