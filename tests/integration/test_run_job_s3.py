"""A job whose repository is on S3: the config's `s3_endpoint` is where it goes (a moto
server over real HTTP), and the run's snapshot lands in the bucket."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def test_a_job_backs_up_to_the_s3_endpoint_of_its_config(
    tmp_path: Path,
    cli: Cli,
    make_tree: MakeTree,
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = make_tree(tmp_path / "src", {"a.txt": "alpha\n"})
    assert cli("init", "-r", s3_bucket.url).exit_code == 0
    # Only the config says where the endpoint is.
    monkeypatch.delenv("BBACKUP_S3_ENDPOINT")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""[repositories.offsite]
url = "{s3_bucket.url}"
s3_endpoint = "{s3_bucket.endpoint}"

[jobs.docs]
repository = "offsite"
sources = ["{source}"]
full_every = "monthly"
"""
    )
    result = cli("run", "docs", "--config", config, "--json")
    assert result.exit_code == 0, result
    summary = result.event("summary")
    assert summary["result"] == "success" and summary["backup_type"] == "full"
    assert f"repo/snapshots/{summary['snapshot_id']}" in s3_bucket.keys("repo/snapshots/")
