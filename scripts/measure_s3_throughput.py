"""Measure backup and restore throughput against a local S3 endpoint (moto over HTTP).

    python scripts/measure_s3_throughput.py [--scale 1.0] [--connections N]

Starts moto on 127.0.0.1 (tests/s3_server.py), writes a source tree (at scale 1: four
100 MB files of random bytes and 2000 files of 50 KB, 500 MB in all), then runs
`bbackup init`, `bbackup backup --json` and `bbackup restore --json` as subprocesses and
prints MB/s (source bytes / wall seconds) and the request counts of each. The numbers are
moto's as much as bbackup's: moto is a single-process Python server sharing this machine.
Needs the dev extras (moto[server], boto3).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
MB = 1_000_000
PASSWORD = "throughput"


def write_tree(root: Path, scale: float) -> int:
    """The source tree; returns its size in bytes."""
    big_size = int(100 * MB * scale)
    small_count = int(2000 * scale)
    total = 0
    for i in range(4):
        with open(root / f"big-{i}.bin", "wb") as out:
            remaining = big_size
            while remaining:
                block = os.urandom(min(remaining, 8 * MB))
                out.write(block)
                remaining -= len(block)
        total += big_size
    for i in range(small_count):
        sub = root / f"small-{i // 200:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"file-{i:04d}.dat").write_bytes(os.urandom(50_000))
        total += 50_000
    return total


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def bbackup(env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    """Run one command; returns (wall seconds, its JSON summary or {})."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bbackup", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bbackup {args[0]} failed ({proc.returncode}):\n{proc.stderr}")
    summary: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "summary":
            summary = json.loads(line)
    return elapsed, summary


def report(label: str, source_bytes: int, seconds: float, summary: dict[str, Any]) -> None:
    rate = source_bytes / MB / seconds
    print(f"{label}: {source_bytes / MB:.0f} MB in {seconds:.1f} s = {rate:.1f} MB/s")
    if summary.get("requests"):
        print(f"  requests: {json.dumps(summary['requests'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="tree size factor (1 = 500 MB)")
    parser.add_argument("--connections", type=int, help="bbackup --connections (default: 16)")
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from s3_server import TEST_CREDENTIALS, MotoEndpoint

    endpoint = MotoEndpoint()
    bucket = endpoint.create_bucket()
    try:
        with tempfile.TemporaryDirectory(prefix="bb-throughput-") as tmp:
            work = Path(tmp)
            src, target = work / "src", work / "restore"
            src.mkdir()
            source_bytes = write_tree(src, args.scale)
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(work / "home"),
                **TEST_CREDENTIALS,
                "BBACKUP_S3_ENDPOINT": endpoint.url,
                "BBACKUP_REPOSITORY": f"s3://{bucket}/repo",
                "BBACKUP_PASSWORD": PASSWORD,
            }
            extra = ["--connections", str(args.connections)] if args.connections else []
            mb = source_bytes / MB
            print(f"moto at {endpoint.url}, source {mb:.0f} MB, {os.cpu_count()} CPUs")
            bbackup(env, "init")
            seconds, summary = bbackup(env, "backup", "--json", *extra, str(src))
            report("backup", source_bytes, seconds, summary)
            print(f"  packs: {summary.get('packs_written')}, stored: {summary.get('bytes_stored')}")
            seconds, summary = bbackup(
                env, "restore", "latest", "--json", "--target", str(target), *extra
            )
            report("restore", source_bytes, seconds, summary)
            restored = target / str(src).lstrip("/")
            same = tree_digest(restored) == tree_digest(src)
            print(f"  restored tree identical: {same}")
            return 0 if same else 1
    finally:
        endpoint.remove_bucket(bucket)
        endpoint.stop()


if __name__ == "__main__":
    sys.exit(main())
