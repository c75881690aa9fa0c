"""Restoring on a new machine: another HOME, no cache, nothing but the repository URL,
credentials in the environment and the password (tests/integration/test_s3_end_to_end.py
covers dropping the cache on the same machine, in-process)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, restored_path, run_subprocess
from s3_harness import MiB, source_files

from s3_server import TEST_CREDENTIALS, S3Bucket

pytestmark = pytest.mark.s3


@pytest.mark.parametrize("cache", ["cache", "no-cache"])
def test_new_machine_restores_byte_identical_files_from_url_credentials_and_password(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket, cache: str
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"photo.raw": os.urandom(2 * MiB), "a.txt": "alpha\n", "deep": {"er": {"b": "beta\n"}}},
    )
    url = f"s3://{s3_bucket.bucket}/team/laptop"
    assert cli("init", "-r", url).exit_code == 0
    assert cli("backup", "-r", url, src).exit_code == 0
    new_home = tmp_path / "new-home"
    new_home.mkdir()
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
        "HOME": str(new_home),
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "BBACKUP_S3_ENDPOINT": s3_bucket.endpoint,
        "BBACKUP_PASSWORD": PASSWORD,
    }
    target = tmp_path / "restore"
    flags = ["--no-cache"] if cache == "no-cache" else []

    result = run_subprocess("restore", "latest", "--repo", url, "--target", target, *flags, env=env)

    assert result.exit_code == 0, result
    assert source_files(restored_path(target, src)) == source_files(src)
    cache_dir = new_home / ".cache" / "bbackup"
    if cache == "no-cache":
        assert not cache_dir.exists(), "--no-cache wrote a cache"
    else:
        assert any(cache_dir.rglob("snapshots/*")), "the new machine's cache was not filled"
