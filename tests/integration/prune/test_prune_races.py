"""prune --grace 0s and a backup that overlap in the two ways a scheduler makes likely: a
prune runs while a backup is opening the repository, and a backup runs from start to
commit while a prune is between planning and deleting. Both are pinned deterministically
by running one inside a hook of the other; the user-visible outcome is that the backup's
snapshot restores and the repository checks clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import Cli
from prune_harness import (
    PRUNE_WITH_BACKUP_AFTER_PLAN,
    MiB,
    backup_at,
    ok,
    read_files,
    replace_tree,
    restore_files,
)

# `bbackup backup` that, just before it takes its repository lock (after it opened the
# repository), runs a whole `bbackup prune` given as argv[1] (a JSON list of arguments).
BACKUP_WITH_PRUNE_BEFORE_LOCK = """
import json, subprocess, sys

import bbackup.ops.backup

prune_args = json.loads(sys.argv[1])
Lock = bbackup.ops.backup.RepositoryLock


class LockAfterAPrune(Lock):
    async def __aenter__(self):
        done = subprocess.run([sys.executable, "-m", "bbackup", *prune_args])
        assert done.returncode == 0, done
        return await super().__aenter__()


bbackup.ops.backup.RepositoryLock = LockAfterAPrune
from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[2:]]
main()
"""


@pytest.fixture
def forgotten_file(tmp_path: Path, repo: Path, cli: Cli) -> bytes:
    """A 2 MiB file whose only snapshot has been forgotten: its pack is unused."""
    content = os.urandom(2 * MiB)
    old = tmp_path / "old"
    backup_at(cli, repo, replace_tree(old, {"comes-back.bin": content}), "2026-04-01T00:00:00")
    backup_at(cli, repo, replace_tree(old, {"other.bin": os.urandom(MiB)}), "2026-04-02T00:00:00")
    ok(cli("forget", "-r", repo, "--keep-last", "1"))
    return content


def run_script(script: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def snapshot_of(stdout: str) -> str:
    summary = [json.loads(ln) for ln in stdout.splitlines() if '"summary"' in ln][-1]
    snapshot_id: str = summary["snapshot_id"]
    return snapshot_id


def test_prune_while_a_backup_opens_the_repository_leaves_the_backup_restorable(
    tmp_path: Path, repo: Path, cli: Cli, forgotten_file: bytes
) -> None:
    # The backup re-adds the forgotten file: deduplicating it against the pack the prune
    # deletes would leave a snapshot whose data is gone.
    src = replace_tree(tmp_path / "src", {"comes-back.bin": forgotten_file, "new.txt": b"x\n"})
    script = tmp_path / "backup_after_prune.py"
    script.write_text(BACKUP_WITH_PRUNE_BEFORE_LOCK)
    prune = json.dumps(["prune", "-r", str(repo), "--grace", "0s"])

    backup = run_script(script, prune, "backup", "-r", repo, "--json", src)

    assert backup.returncode == 0, backup.stderr
    ok(cli("check", "-r", repo, "--read-data"))
    restored = restore_files(cli, repo, snapshot_of(backup.stdout), tmp_path / "restore", src)
    assert restored == read_files(src)


def test_backup_committed_while_prune_runs_keeps_the_data_it_deduplicated(
    tmp_path: Path, repo: Path, cli: Cli, forgotten_file: bytes
) -> None:
    src = replace_tree(tmp_path / "src", {"comes-back.bin": forgotten_file, "new.txt": b"x\n"})
    script = tmp_path / "prune_around_backup.py"
    script.write_text(PRUNE_WITH_BACKUP_AFTER_PLAN)
    backup = json.dumps(["backup", "-r", str(repo), "--json", str(src)])

    prune = run_script(script, backup, "prune", "-r", repo, "--grace", "0s")

    assert prune.returncode == 0, prune.stderr
    ok(cli("check", "-r", repo, "--read-data"))
    [snapshot_id] = {
        s["id"]
        for s in ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()
        if s["paths"] == [str(src)]
    }
    restored = restore_files(cli, repo, snapshot_id, tmp_path / "restore", src)
    assert restored == read_files(src)
