"""A prune killed at any step leaves a repository that `check` accepts and that the next
prune finishes cleaning up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import Cli
from prune_harness import (
    History,
    MiB,
    backup_at,
    ok,
    replace_tree,
    restore_files,
    snapshot_ids,
    stored_packs,
)

# Runs the real CLI, but dies by SIGKILL at one step of prune:
# - after-repack: the repacked copies and their index segment are stored, the index is
#   not rewritten yet;
# - after-new-index: the rewritten index segment is stored, the segments it supersedes
#   are not deleted yet;
# - mid-deletion: on the second pack deletion.
KILLED_PRUNE = """
import os, signal, sys

import bbackup.ops.prune
from bbackup.repository.cache import CachingStorage

point = sys.argv[1]
pack_deletes = 0


def die():
    os.kill(os.getpid(), signal.SIGKILL)


async def killed_rewrite_index(*args, **kwargs):
    die()


original_delete = CachingStorage.delete


async def delete(self, name):
    global pack_deletes
    if point == "after-new-index" and name.startswith("index/"):
        die()
    if point == "mid-deletion" and name.startswith(("data/", "tree/")):
        pack_deletes += 1
        if pack_deletes == 2:
            die()
    await original_delete(self, name)


if point == "after-repack":
    bbackup.ops.prune._rewrite_index = killed_rewrite_index
CachingStorage.delete = delete

from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[2:]]
main()
"""


@pytest.fixture
def forgotten(tmp_path: Path, repo: Path, cli: Cli) -> History:
    """Four snapshots, the two oldest forgotten: one data pack wholly unused, one (a.bin
    + b.bin) half used, and the tree packs of the forgotten snapshots unused."""
    a = os.urandom(2 * MiB)
    d = os.urandom(MiB)
    states = [
        {"c.bin": os.urandom(MiB)},
        {"a.bin": a, "b.bin": os.urandom(2 * MiB)},
        {"a.bin": a, "d.bin": d},
        {"a.bin": a, "d.bin": d, "e.bin": os.urandom(MiB)},
    ]
    history = History(repo, tmp_path / "src")
    for day, files in enumerate(states, start=1):
        replace_tree(history.src, files)
        history.ids.append(backup_at(cli, repo, history.src, f"2026-02-0{day}T03:00:00+00:00"))
        history.files[history.ids[-1]] = files
    ok(cli("forget", "-r", repo, "--keep-last", "2"))
    return history


def index_segments(repo: Path) -> set[str]:
    return {p.name for p in (repo / "index").iterdir()}


def assert_sound(cli: Cli, history: History, target: Path) -> None:
    """check (structure and data) passes and every remaining snapshot restores exactly."""
    ok(cli("check", "-r", history.repo))
    ok(cli("check", "-r", history.repo, "--read-data"))
    remaining = history.ids[2:]
    assert snapshot_ids(cli, history.repo) == set(remaining)
    for n, snapshot_id in enumerate(remaining):
        restored = restore_files(cli, history.repo, snapshot_id, target / str(n), history.src)
        assert restored == history.files[snapshot_id]


@pytest.mark.parametrize("point", ["after-repack", "after-new-index", "mid-deletion"])
def test_prune_killed_mid_run_leaves_a_sound_repository_the_next_prune_cleans(
    tmp_path: Path, cli: Cli, forgotten: History, point: str
) -> None:
    repo = forgotten.repo
    plan = ok(cli("prune", "-r", repo, "--grace", "0s", "--dry-run", "--json")).event("prune")
    assert {d["action"] for d in plan["decisions"]} == {"delete", "repack"}, plan
    assert plan["packs"]["delete"]["packs"] >= 3
    packs_before, segments_before = stored_packs(repo), index_segments(repo)
    script = tmp_path / "killed_prune.py"
    script.write_text(KILLED_PRUNE)

    killed = subprocess.run(
        [
            sys.executable,
            str(script),
            point,
            "prune",
            "-r",
            str(repo),
            "--grace",
            "0s",
            "--connections",
            "1",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert killed.returncode == -9, killed.stderr
    # The kill happened where intended.
    if point == "after-repack":
        assert stored_packs(repo) > packs_before  # copies written, nothing deleted
        assert len(index_segments(repo)) == len(segments_before) + 1  # the copies' segment
    elif point == "after-new-index":
        assert stored_packs(repo) > packs_before
        assert segments_before < index_segments(repo)
    else:
        assert not segments_before & index_segments(repo)
        assert len(packs_before - stored_packs(repo)) == 1
    assert_sound(cli, forgotten, tmp_path / "after-kill")

    again = ok(cli("prune", "-r", repo, "--grace", "0s", "--json"))

    assert again.event("prune")["dry_run"] is False
    assert_sound(cli, forgotten, tmp_path / "after-second-prune")
    left = ok(cli("prune", "-r", repo, "--grace", "0s", "--dry-run", "--json")).event("prune")
    assert [d for d in left["decisions"] if d["action"] != "keep"] == [], left
    assert set(left["packs"]) == {"keep"}
    assert left["bytes_reclaimed"] == 0
