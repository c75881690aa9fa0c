"""Restoring from packs in GLACIER on moto over HTTP: only the packs the selected files need
are restored, `--no-wait` exits 19 with what it requested, a restore interrupted while
waiting requests nothing again when re-run, and `--dry-run` prints the estimate and asks
for nothing.

moto answers a restore request at once by default. To hold restores "in progress" (as
AWS does for hours) the tests use moto's state manager for `s3::keyrestore`: a status
steps (none → IN_PROGRESS → RESTORED) when it is read after at least `times` reads of the
object, so `times=1` makes each HEAD step a restore once and a huge `times` holds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cli_harness import Cli, MakeTree, restored_path
from s3_harness import MiB, bucket_objects, server_requests, source_files

from s3_server import S3Bucket

pytestmark = pytest.mark.s3

HOLD = 10**9


def set_restore_progression(endpoint: str, times: int | None) -> None:
    """Make moto's archive restores step only after `times` reads (None: at once again)."""
    if times is None:
        path, body = "unset-transition", {"model_name": "s3::keyrestore"}
    else:
        transition = {"progression": "manual", "times": times}
        path, body = "set-transition", {"model_name": "s3::keyrestore", "transition": transition}
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@pytest.fixture
def restore_progression(s3_bucket: S3Bucket) -> Iterator[None]:
    """moto's restore progression is server-wide: put it back whatever happens."""
    try:
        yield
    finally:
        set_restore_progression(s3_bucket.endpoint, None)


@pytest.fixture
def new_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restore runs with an empty cache, as on a machine that never saw the repository."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "new-machine-cache"))
    monkeypatch.setenv("BBACKUP_THAW_POLL_SECONDS", "0.05")


def data_keys(bucket: S3Bucket) -> list[str]:
    return [e["Key"] for e in bucket_objects(bucket, "repo/data/")]


def requested_restores(requests: list[tuple[str, str]], bucket: S3Bucket) -> list[str]:
    """Object paths of RestoreObject requests (the only POSTs bbackup sends to a key)."""
    prefix = f"/{bucket.bucket}/repo/data/"
    return [path for method, path in requests if method == "POST" and path.startswith(prefix)]


def data_gets(requests: list[tuple[str, str]], bucket: S3Bucket) -> list[str]:
    prefix = f"/{bucket.bucket}/repo/data/"
    return [path for method, path in requests if method == "GET" and path.startswith(prefix)]


def backup_in_glacier(cli: Cli, url: str, *paths: Path) -> None:
    result = cli("backup", "-r", url, "--storage-class", "GLACIER", *paths)
    assert result.exit_code == 0, result


def test_restore_thaws_only_the_packs_the_included_files_need(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, new_machine: None
) -> None:
    src = make_tree(tmp_path / "src", {"old": {"a.bin": os.urandom(MiB)}})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    backup_in_glacier(cli, url, src)
    old_packs = set(data_keys(s3_bucket))
    make_tree(src / "new", {"b.bin": os.urandom(MiB), "c.txt": "see\n"})
    backup_in_glacier(cli, url, src)
    new_packs = set(data_keys(s3_bucket)) - old_packs
    assert old_packs and new_packs
    with pytest.raises(ClientError, match="InvalidObjectState"):
        s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=sorted(new_packs)[0])
    target = tmp_path / "restore"

    with server_requests() as requests:
        result = cli(
            "restore", "latest", "-r", url, "--target", target, "--include", str(src / "new")
        )

    assert result.exit_code == 0, result
    assert source_files(restored_path(target, src)) == {
        "new/b.bin": (src / "new" / "b.bin").read_bytes(),
        "new/c.txt": b"see\n",
    }
    wanted = {f"/{s3_bucket.bucket}/{key}" for key in new_packs}
    assert sorted(requested_restores(requests, s3_bucket)) == sorted(wanted)
    assert set(data_gets(requests, s3_bucket)) == wanted
    assert "waiting for 1 archived packs" in result.stderr


def test_no_wait_exits_19_and_an_interrupted_wait_requests_nothing_again(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    new_machine: None,
    restore_progression: None,
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(MiB), "b.txt": "bee\n"})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    backup_in_glacier(cli, url, src)
    packs = data_keys(s3_bucket)
    target = tmp_path / "restore"
    set_restore_progression(s3_bucket.endpoint, HOLD)

    with server_requests() as requests:
        first = cli("restore", "latest", "-r", url, "--target", target, "--no-wait")

    assert first.exit_code == 19, first
    assert f"requested restores of {len(packs)} archived packs" in first.stderr
    assert "run the same command again" in first.stderr
    assert len(requested_restores(requests, s3_bucket)) == len(packs)
    # The restore read first and stopped at the first archived pack: whatever it wrote
    # (directories, files of hot packs) the re-run completes; nothing archived was read.
    restored = restored_path(target, src) / "a.bin"
    assert not restored.exists() or restored.read_bytes() != (src / "a.bin").read_bytes()
    # The archive starts working on the requests (one look steps each restore into
    # progress), and holds them there as AWS does for hours.
    set_restore_progression(s3_bucket.endpoint, 1)
    for key in packs:
        head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
        assert head["Restore"] == 'ongoing-request="true"'
    set_restore_progression(s3_bucket.endpoint, HOLD)

    with server_requests() as requests:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "bbackup", "restore", "latest", "-r", url, "-t", str(target)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        looks = []
        timer = threading.Timer(30, waiting.kill)
        timer.start()
        try:
            assert waiting.stderr is not None
            for line in waiting.stderr:
                looks.append(line)
                if len([x for x in looks if "next look in" in x]) >= 3:
                    waiting.send_signal(signal.SIGINT)
                    break
            rest = waiting.communicate()
        finally:
            timer.cancel()
        assert waiting.returncode == 130, (looks, rest)
        assert any(f"0/{len(packs)} packs ready" in line for line in looks), looks
        # The archive finishes; the re-run finds the copies ready and reads them.
        set_restore_progression(s3_bucket.endpoint, 1)
        again = cli("restore", "latest", "-r", url, "--target", target)

    assert again.exit_code == 0, again
    assert source_files(restored_path(target, src)) == source_files(src)
    assert requested_restores(requests, s3_bucket) == []


def test_dry_run_estimate_equals_the_hand_calculation_from_the_price_table(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, new_machine: None
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(5 * MiB), "b.txt": "bee\n"})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    backup_in_glacier(cli, url, src)
    sizes = [e["Size"] for e in bucket_objects(s3_bucket, "repo/data/")]
    target = tmp_path / "restore"

    with server_requests() as requests:
        result = cli(
            "restore", "latest", "-r", url, "-t", target, "--dry-run", "--json",
            "--restore-tier", "standard", "--restore-days", "7",
        )  # fmt: skip

    assert result.exit_code == 0, result
    assert requested_restores(requests, s3_bucket) == []
    assert data_gets(requests, s3_bucket) == []
    assert not target.exists()
    estimate = result.event("thaw_estimate")
    gb = sum(sizes) / 2**30
    n = len(sizes)
    # AWS us-east-1, GLACIER Flexible Retrieval, standard tier: $0.01/GB retrieved,
    # $0.05 per 1000 restore requests, a GET each ($0.0004/1000), the restored copy at
    # STANDARD's $0.023/GB-month for 7 days, and 90 days minimum at $0.0036/GB-month.
    (glacier,) = estimate["classes"]
    assert glacier["storage_class"] == "GLACIER"
    assert glacier["objects"] == glacier["to_request"] == n
    assert glacier["bytes"] == sum(sizes)
    assert glacier["retrieval_usd"] == pytest.approx(gb * 0.01, abs=1e-6)
    assert glacier["request_usd"] == pytest.approx(n * (0.05 + 0.0004) / 1000, abs=1e-6)
    assert glacier["temporary_copy_usd"] == pytest.approx(gb * 0.023 * 7 / 30, abs=1e-6)
    assert glacier["early_deletion_usd"] == pytest.approx(gb * 0.0036 * 90 / 30, abs=1e-6)
    assert glacier["wait_hours"] == [3.0, 5.0]
    assert estimate["thaw_usd"] == pytest.approx(
        gb * 0.01 + n * 0.0504 / 1000 + gb * 0.023 * 7 / 30, abs=1e-5
    )
    assert estimate["transfer_usd"] == pytest.approx(gb * 0.09, abs=1e-6)
    assert set(estimate["tiers"]) == {"expedited", "standard", "bulk"}
    assert estimate["tiers"]["bulk"]["thaw_usd"] == pytest.approx(gb * 0.023 * 7 / 30, abs=1e-5)
    assert estimate["prices"]["taken"] == "2025-01-15"

    # A price file overrides the table, and every estimate names its prices.
    prices = Path(os.environ["XDG_CONFIG_HOME"]) / "bbackup" / "prices.toml"
    prices.parent.mkdir(parents=True)
    prices.write_text(
        '[prices]\nsource = "our contract"\ntaken = "2026-11-01"\n'
        "[prices.restore.GLACIER.bulk]\nper_gb = 0.5\nper_1000_requests = 1000\n"
    )
    ours = cli("restore", "latest", "-r", url, "-t", target, "--dry-run")
    assert ours.exit_code == 0, ours
    assert f"retrieval ${gb * 0.5:.4f}, requests ${n:.2f}," in ours.stdout
    assert "prices: our contract, taken 2026-11-01" in ours.stdout
    prices.write_text("[prices]\nsource = 1\n[prices.class.GLACIER]\nstorage = 2\n")
    bad = cli("restore", "latest", "-r", url, "-t", target, "--dry-run")
    assert bad.exit_code == 2, bad
    assert "unknown key 'storage'" in bad.stderr and "Traceback" not in bad.output


def test_instant_classes_are_read_directly_and_deep_archive_refuses_expedited(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, new_machine: None
) -> None:
    src = make_tree(tmp_path / "src", {"ir": {"a.bin": os.urandom(MiB)}})
    url = s3_bucket.url
    assert cli("init", "-r", url).exit_code == 0
    assert cli("backup", "-r", url, "--storage-class", "glacier_ir", src).exit_code == 0
    make_tree(src / "deep", {"b.bin": os.urandom(MiB)})
    assert cli("backup", "-r", url, "--storage-class", "DEEP_ARCHIVE", src).exit_code == 0
    classes = sorted(e.get("StorageClass") for e in bucket_objects(s3_bucket, "repo/data/"))
    assert classes == ["DEEP_ARCHIVE", "GLACIER_IR"]
    target = tmp_path / "restore"

    with server_requests() as requests:
        instant = cli("restore", "latest", "-r", url, "-t", target, "-i", str(src / "ir"))
        expedited = cli("restore", "latest", "-r", url, "-t", target, "--restore-tier", "expedited")

    assert instant.exit_code == 0, instant
    assert source_files(restored_path(target, src)) == {"ir/a.bin": (src / "ir/a.bin").read_bytes()}
    assert "archived" not in instant.output
    assert expedited.exit_code == 2, expedited
    assert "--restore-tier expedited is not offered for DEEP_ARCHIVE" in expedited.stderr
    assert requested_restores(requests, s3_bucket) == []


def test_a_restore_with_nothing_archived_reads_at_once_and_looks_at_no_pack(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, new_machine: None
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(MiB), "b.txt": "bee\n"})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    assert cli("backup", "-r", url, src).exit_code == 0
    target = tmp_path / "restore"

    with server_requests() as requests:
        result = cli("restore", "latest", "-r", url, "--target", target)

    assert result.exit_code == 0, result
    assert source_files(restored_path(target, src)) == source_files(src)
    prefix = f"/{s3_bucket.bucket}/repo/data/"
    looks = [(m, p) for m, p in requests if p.startswith(prefix) and m != "GET"]
    assert looks == [], "a restore of hot packs sent more than its reads"
    assert "archived" not in result.output


def test_packs_a_lifecycle_rule_archived_are_thawed_when_the_first_read_meets_one(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, new_machine: None
) -> None:
    src = make_tree(tmp_path / "src", {"old": {"a.bin": os.urandom(MiB)}})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    assert cli("backup", "-r", url, src).exit_code == 0
    old_packs = data_keys(s3_bucket)
    make_tree(src / "new", {"b.bin": os.urandom(MiB)})
    assert cli("backup", "-r", url, src).exit_code == 0
    # A lifecycle transition, as the bucket's rules would make it after 90 days: the
    # repository records nothing of it, so the restore learns it from its first read.
    for key in old_packs:
        s3_bucket.client.copy_object(
            Bucket=s3_bucket.bucket,
            Key=key,
            CopySource={"Bucket": s3_bucket.bucket, "Key": key},
            StorageClass="GLACIER",
        )
    target = tmp_path / "restore"

    with server_requests() as requests:
        result = cli("restore", "latest", "-r", url, "--target", target, "--json")

    assert result.exit_code == 0, result
    assert source_files(restored_path(target, src)) == source_files(src)
    wanted = sorted(f"/{s3_bucket.bucket}/{key}" for key in old_packs)
    assert sorted(requested_restores(requests, s3_bucket)) == wanted
    events = [e["event"] for e in result.events()]
    assert events.index("thaw_estimate") < events.index("thaw_waiting")
    (glacier,) = [c for c in result.event("thaw_estimate")["classes"] if c["to_request"]]
    assert (glacier["storage_class"], glacier["to_request"]) == ("GLACIER", len(old_packs))
    # The estimate came before any restore request: the first look at a pack is a read.
    prefix = f"/{s3_bucket.bucket}/repo/data/"
    first = next(m for m, p in requests if p.startswith(prefix))
    assert first == "GET"
