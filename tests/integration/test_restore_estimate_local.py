"""`restore --dry-run` on a local repository: it names the packs the restore would read,
says there is nothing to thaw or pay, what it would write and download, and writes
nothing."""

from __future__ import annotations

import os
from pathlib import Path

from cli_harness import Cli, MakeTree


def test_dry_run_on_a_local_repository_reads_nothing_and_writes_nothing(
    tmp_path: Path, cli: Cli, repo: Path, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(100_000), "b.txt": "bee\n"})
    assert cli("backup", "-r", repo, src).exit_code == 0
    target = tmp_path / "restore"

    result = cli("restore", "latest", "-r", repo, "-t", target, "--dry-run", "--json")

    assert result.exit_code == 0, result
    estimate = result.event("thaw_estimate")
    (standard,) = estimate["classes"]
    assert standard["storage_class"] == "STANDARD"
    assert standard["objects"] == len(list((repo / "data").rglob("*/*")))
    assert standard["to_request"] == 0 and estimate["wait_hours"] is None
    assert not target.exists()
    # The same dry run also says what the restore would write and download.
    summary = result.event("summary")
    assert summary["dry_run"] is True and summary["files"] == 2
    assert summary["bytes_to_download"] > 100_000
