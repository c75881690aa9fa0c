"""A backup killed after uploading packs is resumed by the next one: it adopts the packs
(reading only their headers) instead of uploading the same data again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path
from interrupted_harness import kill_backup_before_index, stored

MiB = 1024 * 1024


def assert_restores(cli: Cli, repo: Path, src: Path, target: Path) -> None:
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, src)
    for path in src.rglob("*"):
        if path.is_file():
            assert (restored / path.relative_to(src)).read_bytes() == path.read_bytes(), path


@pytest.fixture
def small_packs(tmp_path: Path, cli: Cli) -> Path:
    """A repository with 4 MiB packs, so a few MiB of data make several packs."""
    path = tmp_path / "repo"
    assert cli("init", "-r", path, "--pack-size", "4").exit_code == 0
    return path


@pytest.fixture
def interrupted(tmp_path: Path, small_packs: Path, make_tree: MakeTree) -> tuple[Path, Path]:
    """(repository, source) after a backup of the source was killed before its index."""
    src = make_tree(
        tmp_path / "src",
        {
            "one.bin": os.urandom(6 * MiB),
            "two.bin": os.urandom(5 * MiB),
            "a.txt": "alpha\n",
            "sub": {"b.txt": "beta\n"},
        },
    )
    kill_backup_before_index(tmp_path, small_packs, src)
    assert len(stored(small_packs, "data")) >= 2
    assert stored(small_packs, "index") == []
    assert stored(small_packs, "snapshots") == []
    return small_packs, src


def test_next_backup_adopts_the_packs_of_a_killed_one_and_uploads_almost_nothing(
    tmp_path: Path, cli: Cli, interrupted: tuple[Path, Path]
) -> None:
    repo, src = interrupted
    left = stored(repo, "data", "tree")
    left_bytes = sum(p.stat().st_size for p in left)

    resumed = cli("backup", "-r", repo, "--json", src)

    assert resumed.exit_code == 0, resumed
    summary = resumed.event("summary")
    assert summary["bytes_added"] < 64 * 1024
    assert summary["packs_adopted"] == len(left)
    assert summary["bytes_adopted"] == left_bytes
    # Nothing as large as a pack went up: one tree pack at most, an index segment for the
    # adopted packs, one for anything new, the snapshot and the lock.
    assert summary["requests"]["bytes_up"] < 256 * 1024
    assert summary["requests"]["PUT"] <= 6
    assert sorted(stored(repo, "data")) == sorted(p for p in left if "/data/" in str(p))
    check = cli("check", "-r", repo, "--read-data")
    assert check.exit_code == 0, check
    assert "not in any index" not in check.output
    assert_restores(cli, repo, src, tmp_path / "restore")


def test_human_output_says_the_backup_resumed(cli: Cli, interrupted: tuple[Path, Path]) -> None:
    repo, src = interrupted
    resumed = cli("backup", "-r", repo, src)
    assert resumed.exit_code == 0, resumed
    assert "Resumed: adopted" in resumed.stdout
    assert "left by an interrupted backup" in resumed.stdout


def test_a_pack_with_a_damaged_header_is_skipped_with_a_warning_and_uploaded_again(
    tmp_path: Path, cli: Cli, interrupted: tuple[Path, Path]
) -> None:
    repo, src = interrupted
    left = stored(repo, "data", "tree")
    damaged = stored(repo, "data")[0]
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF  # inside the sealed header
    damaged.write_bytes(bytes(data))

    resumed = cli("backup", "-r", repo, "--json", src)

    assert resumed.exit_code == 0, resumed
    assert f"{damaged.relative_to(repo)}: not in any index and its header is unreadable" in (
        resumed.stderr
    )
    summary = resumed.event("summary")
    assert summary["packs_adopted"] == len(left) - 1
    assert summary["bytes_added"] > 0  # the damaged pack's blobs, uploaded again
    assert cli("check", "-r", repo, "--read-data").exit_code == 0
    assert_restores(cli, repo, src, tmp_path / "restore")


def test_check_sums_up_unindexed_packs_in_one_line(
    cli: Cli, interrupted: tuple[Path, Path]
) -> None:
    repo, _ = interrupted
    left = stored(repo, "data", "tree")

    check = cli("check", "-r", repo)

    assert check.exit_code == 0, check
    lines = [line for line in check.output.splitlines() if "not in any index" in line]
    assert len(lines) == 1, check.output
    assert f"{len(left)} packs (" in lines[0]
    assert "the next backup adopts them, or prune removes them after the grace period" in lines[0]
    as_json = cli("check", "-r", repo, "--json")
    report = as_json.event("check")
    assert sorted(report["unindexed_packs"]) == sorted(str(p.relative_to(repo)) for p in left)


def test_prune_says_how_much_it_will_delete_and_when(
    cli: Cli, interrupted: tuple[Path, Path]
) -> None:
    repo, _ = interrupted
    left = stored(repo, "data", "tree")

    pruned = cli("prune", "-r", repo)

    assert pruned.exit_code == 0, pruned
    assert "reclaimed 0 B" in pruned.stdout
    assert f"in {len(left)} packs will be deleted by a prune after 20" in pruned.stdout
    assert "(grace 24h)" in pruned.stdout
    report = cli("prune", "-r", repo, "--json", "--dry-run").event("prune")
    assert report["pending"]["packs"] == len(left)
    assert report["pending"]["bytes"] == sum(p.stat().st_size for p in left)
    assert report["pending"]["grace_seconds"] == 24 * 3600


def test_an_adopted_pack_that_a_snapshot_uses_is_kept_by_prune(
    tmp_path: Path, cli: Cli, interrupted: tuple[Path, Path]
) -> None:
    repo, src = interrupted
    assert cli("backup", "-r", repo, src).exit_code == 0
    data_packs = stored(repo, "data")

    pruned = cli("prune", "-r", repo, "--grace", "0s", "--json")

    assert pruned.exit_code == 0, pruned
    # (The killed run's tree pack may be repacked: the directories above the source,
    # recorded in the snapshot's top trees, may have changed since.)
    assert stored(repo, "data") == data_packs
    assert_restores(cli, repo, src, tmp_path / "restore")
