"""prune --grace 0s beside a backup that adopts the packs a killed backup left: whichever
runs first, the packs the backup's snapshot uses stay, and it restores byte for byte.
Each interleaving is pinned by running one command inside a hook of the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree
from interrupted_harness import kill_backup_before_index, stored
from prune_harness import PRUNE_WITH_BACKUP_AFTER_PLAN, MiB, ok, read_files, restore_files

# `bbackup backup` that runs a whole `bbackup prune` (argv[1], a JSON list of arguments)
# at the point argv[2] names: "before-adopting" (its lock is stored, the index loaded and
# the packs listed) or "after-adopting" (the adopted packs' segment is stored).
BACKUP_WITH_PRUNE = """
import json, subprocess, sys

import bbackup.ops.backup

prune_args = json.loads(sys.argv[1])
when = sys.argv[2]
adopt_packs = bbackup.ops.backup.adopt_packs


def prune():
    done = subprocess.run([sys.executable, "-m", "bbackup", *prune_args])
    assert done.returncode == 0, done


async def adopt_beside_a_prune(*args, **kwargs):
    if when == "before-adopting":
        prune()
    adoption = await adopt_packs(*args, **kwargs)
    if when == "after-adopting":
        prune()
    return adoption


bbackup.ops.backup.adopt_packs = adopt_beside_a_prune
from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[3:]]
main()
"""


@pytest.fixture
def interrupted(tmp_path: Path, repo: Path, make_tree: MakeTree) -> Path:
    """A source whose backup into `repo` was killed after storing its packs."""
    src = make_tree(
        tmp_path / "src", {"big.bin": os.urandom(3 * MiB), "sub": {"small.txt": "small\n"}}
    )
    kill_backup_before_index(tmp_path, repo, src)
    assert stored(repo, "data") and not stored(repo, "index")
    # Killed two hours ago: well before any lock a later command takes.
    two_hours_ago = time.time() - 7200
    for pack in stored(repo, "data", "tree"):
        os.utime(pack, (two_hours_ago, two_hours_ago))
    return src


def run_script(scratch: Path, text: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    script = scratch / "script.py"
    script.write_text(text)
    return subprocess.run(
        [sys.executable, script, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def summary_of(stdout: str) -> dict[str, object]:
    summary: dict[str, object] = [
        json.loads(ln) for ln in stdout.splitlines() if '"summary"' in ln
    ][-1]
    return summary


def latest_restores(cli: Cli, repo: Path, src: Path, target: Path) -> None:
    ok(cli("check", "-r", repo, "--read-data"))
    assert restore_files(cli, repo, "latest", target, src) == read_files(src)


def test_prune_that_starts_while_a_backup_is_about_to_adopt_keeps_the_packs(
    tmp_path: Path, repo: Path, cli: Cli, interrupted: Path
) -> None:
    # The prune sees the backup's lock but not yet the adopted packs' segment: it must not
    # delete them as unindexed, or the backup's snapshot would reference deleted packs.
    left = stored(repo, "data", "tree")
    prune = json.dumps(["prune", "-r", str(repo), "--grace", "0s"])

    backup = run_script(
        tmp_path,
        BACKUP_WITH_PRUNE,
        prune,
        "before-adopting",
        "backup",
        "-r",
        repo,
        "--json",
        interrupted,
    )

    assert backup.returncode == 0, backup.stderr
    assert summary_of(backup.stdout)["packs_adopted"] == len(left)
    assert set(left) <= set(stored(repo, "data", "tree"))
    latest_restores(cli, repo, interrupted, tmp_path / "restore")


def test_prune_that_marks_adopted_packs_unmarks_them_once_the_snapshot_uses_them(
    tmp_path: Path, repo: Path, cli: Cli, interrupted: Path
) -> None:
    # The prune reads the adopted packs' segment before the backup commits: they are
    # indexed and unused, so it marks them; the backup's lock keeps them; the next prune
    # finds a snapshot using them again and unmarks them.
    left = stored(repo, "data", "tree")
    prune = json.dumps(["prune", "-r", str(repo), "--grace", "0s"])

    backup = run_script(
        tmp_path,
        BACKUP_WITH_PRUNE,
        prune,
        "after-adopting",
        "backup",
        "-r",
        repo,
        "--json",
        interrupted,
    )

    assert backup.returncode == 0, backup.stderr
    assert summary_of(backup.stdout)["packs_adopted"] == len(left)
    report = ok(cli("prune", "-r", repo, "--grace", "0s", "--json")).event("prune")
    assert report["packs"]["unmark"]["packs"] == len(left)
    assert report["bytes_reclaimed"] == 0
    assert set(left) <= set(stored(repo, "data", "tree"))
    latest_restores(cli, repo, interrupted, tmp_path / "restore")


def test_backup_does_not_adopt_while_a_prune_that_planned_without_it_runs(
    tmp_path: Path, repo: Path, cli: Cli, interrupted: Path
) -> None:
    # The prune planned to delete the unindexed packs before the backup's lock existed;
    # adopting them now would make the snapshot reference packs about to be deleted.
    backup = json.dumps(["backup", "-r", str(repo), "--json", str(interrupted)])

    prune = run_script(
        tmp_path, PRUNE_WITH_BACKUP_AFTER_PLAN, backup, "prune", "-r", repo, "--grace", "0s"
    )

    assert prune.returncode == 0, prune.stderr
    latest_restores(cli, repo, interrupted, tmp_path / "restore")
    assert "are not adopted: a prune is running" in prune.stderr
