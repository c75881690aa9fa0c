"""A drill stopped with Ctrl-C while it restores (the store stalls on a data pack) exits 130
and leaves no scratch directory behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree

from fault_proxy import Fault, FaultProxy
from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def test_ctrl_c_during_a_drill_removes_its_scratch_directory(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, isolated_env: Path
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(200 * 1024), "b.txt": "bee\n"})
    url = s3_bucket.url
    assert cli("init", "-r", url, "--pack-size", "4").exit_code == 0
    assert cli("backup", "-r", url, src).exit_code == 0
    cache = isolated_env / ".cache" / "bbackup"

    with FaultProxy(s3_bucket.endpoint) as proxy:
        proxy.inject(Fault.STALL, method="GET", path="/repo/data/", times=None)
        drill = subprocess.Popen(
            [sys.executable, "-m", "bbackup", "drill", "-r", url, "--sample", "100%"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "BBACKUP_S3_ENDPOINT": proxy.url},
        )
        try:
            deadline = time.monotonic() + 30
            while not list(cache.glob("drill-*")) or not proxy.injected[Fault.STALL]:
                assert drill.poll() is None, drill.communicate()
                assert time.monotonic() < deadline, "the drill never started restoring"
                time.sleep(0.02)
            drill.send_signal(signal.SIGINT)
            _, stderr = drill.communicate(timeout=30)
        finally:
            if drill.poll() is None:
                drill.kill()
    assert drill.returncode == 130, stderr
    assert list(cache.glob("drill-*")) == []
