"""What `check` costs: every stored object is read once and whole (tree packs serve the
structure check and --read-data from one download), and --read-data holds few packs."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree

from bbackup.ops.check import check_repository
from bbackup.ops.check_read_data import ReadDataSubset
from bbackup.repository import open_repository
from bbackup.storage import open_storage

MiB = 1024 * 1024


@pytest.fixture
def two_backups(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> Path:
    """Two snapshots over several 4 MiB data packs, tree packs and index segments."""
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(10 * MiB), "d": {"e.txt": "e\n", "f": {"g.txt": "g\n"}}},
    )
    assert cli("backup", "-r", repo, src).exit_code == 0
    (src / "d" / "f" / "new.txt").write_text("added\n")
    (src / "more.bin").write_bytes(os.urandom(3 * MiB))
    assert cli("backup", "-r", repo, src).exit_code == 0
    return repo


def stored(repo: Path, *directories: str) -> list[Path]:
    """The repository's objects, or those under some top-level names; locks aside."""
    top = directories or tuple(p.name for p in repo.iterdir() if p.name != "locks")
    return [
        p
        for d in top
        for p in ([repo / d] if (repo / d).is_file() else (repo / d).rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]


def test_check_read_data_reads_every_object_once_and_whole(two_backups: Path, cli: Cli) -> None:
    objects = stored(two_backups)
    assert len(stored(two_backups, "tree")) >= 2 and len(stored(two_backups, "index")) >= 2

    result = cli("check", "-r", two_backups, "--read-data", "--json")

    assert result.exit_code == 0, result
    report = result.event("check")
    assert report["packs_read"] == report["packs"]
    assert report["requests"]["GET"] == len(objects)
    assert report["requests"]["bytes_down"] == sum(p.stat().st_size for p in objects)


def test_check_without_read_data_reads_each_tree_pack_once_and_no_data_pack(
    two_backups: Path, cli: Cli
) -> None:
    needed = stored(two_backups, "config", "keys", "index", "snapshots", "tree")

    result = cli("check", "-r", two_backups, "--json")

    assert result.exit_code == 0, result
    assert result.event("check")["requests"]["GET"] == len(needed)


def test_read_data_holds_at_most_two_packs_in_memory(
    tmp_path: Path, cli: Cli, make_tree: MakeTree
) -> None:
    # Files under the minimum chunk size are one blob each: what the verification of a
    # pack allocates besides the pack stays small, and the peak counts packs.
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    src = make_tree(tmp_path / "src", {f"{n}.bin": os.urandom(256 * 1024) for n in range(96)})
    assert cli("backup", "-r", repo, src).exit_code == 0
    packs = stored(repo, "data")
    largest = max(p.stat().st_size for p in packs)
    assert len(packs) >= 5

    async def check_traced() -> tuple[int, int]:
        stack = open_storage(str(repo))
        try:
            opened = await open_repository(stack, PASSWORD, use_cache=False)
            tracemalloc.start()
            try:
                report = await check_repository(opened, read_data=ReadDataSubset())
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert report.ok, report.errors
            return report.packs_read, peak
        finally:
            await stack.storage.aclose()

    packs_read, peak = asyncio.run(check_traced())

    assert packs_read >= len(packs)
    assert peak < 2.5 * largest, f"peak {peak / MiB:.1f} MiB, packs of {largest / MiB:.1f} MiB"
