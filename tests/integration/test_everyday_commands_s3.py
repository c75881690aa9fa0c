"""diff, find, tag, rewrite and cat against S3 (a moto server over real HTTP): the
same results as on a local repository, with nothing left behind but the new snapshots
(`check` after tag and rewrite runs on local repositories: test_tag_rewrite.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree
from history_harness import make_history, ok

from s3_server import S3Bucket

pytestmark = pytest.mark.s3


def test_everyday_commands_on_s3(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, s3_bucket: S3Bucket
) -> None:
    url = s3_bucket.url
    ok(cli("init", "-r", url))
    history = make_history(tmp_path, url, cli, make_tree)

    diff = ok(cli("diff", "-r", url, "--json", history.first, history.second))
    assert [e["modifier"] for e in diff.events() if e["event"] == "change"] == list("M+-++")
    found = ok(cli("find", "-r", url, "--json", "notes.txt"))
    assert [e["snapshot"] for e in found.events()] == [history.first]

    [tagged] = ok(cli("tag", "-r", url, "--json", "latest", "--add", "s3")).event("tag")["changed"]
    rewritten = ok(cli("rewrite", "-r", url, "--json", "-e", ".env", "--forget"))
    new_ids = sorted(r["new"] for r in rewritten.event("rewrite")["rewritten"])

    assert sorted(s3_bucket.keys("repo/snapshots/")) == [f"repo/snapshots/{i}" for i in new_ids]
    assert s3_bucket.keys("repo/locks/") == []
    latest = json.loads(ok(cli("cat", "-r", url, "snapshot", new_ids[0])).stdout)
    assert latest["summary"]["original"] in (history.first, history.second)
    assert tagged["old"] == history.second
