"""A backup killed after uploading packs but before its snapshot leaves a sound repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path

MiB = 1024 * 1024

# Runs the real CLI, but dies by SIGKILL the moment it would write the index segment
# (packs stored, not indexed) or the snapshot (packs and index stored, no commit point).
KILLED_BACKUP = """
import os, signal, sys

import bbackup.ops.backup
import bbackup.repository.writer


async def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if sys.argv[1] == "index":
    bbackup.repository.writer.BlobWriter.write_segment = die
else:
    bbackup.ops.backup.save_snapshot = die
from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[2:]]
main()
"""


def stored(repo: Path, directory: str) -> list[Path]:
    root = repo / directory
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("killed_before", ["index", "snapshot"])
def test_backup_killed_after_uploading_packs_leaves_a_repository_check_accepts(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, killed_before: str
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(3 * MiB), "a.txt": "alpha\n", "sub": {"b.txt": "beta\n"}},
    )
    script = tmp_path / "killed_backup.py"
    script.write_text(KILLED_BACKUP)

    killed = subprocess.run(
        [sys.executable, str(script), killed_before, "backup", "-r", str(repo), str(src)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert killed.returncode == -9, killed.stderr
    assert stored(repo, "data"), "the killed backup uploaded no packs"
    assert stored(repo, "snapshots") == []
    assert bool(stored(repo, "index")) == (killed_before == "snapshot")
    check = cli("check", "-r", repo)
    assert check.exit_code == 0, check

    resumed = cli("backup", "-r", repo, "--json", src)
    assert resumed.exit_code == 0, resumed
    if killed_before == "snapshot":
        # The killed run's packs and index segment are reused, not uploaded again.
        assert resumed.event("summary")["bytes_added"] < 256 * 1024
    assert len(stored(repo, "snapshots")) == 1
    assert cli("check", "-r", repo, "--read-data").exit_code == 0

    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, src)
    for path in src.rglob("*"):
        if path.is_file():
            assert (restored / path.relative_to(src)).read_bytes() == path.read_bytes(), path
