"""Issue #13 D: damage `check --read-data` finds is not inherited. Check records it in the
repository, so a full backup of the same source on any host uploads the damaged blob
again instead of deduplicating against it, and the new snapshot restores byte for byte;
plain `check` keeps naming the packs until `repair packs` has dealt with them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, Spec, restored_path
from damaged_repo import data_packs, make_damaged_repo, ok, source_files

from bbackup.errors import AccessDenied
from bbackup.ops.check import check_repository
from bbackup.ops.check_read_data import ReadDataSubset
from bbackup.ops.check_report import CheckReport
from bbackup.repository import open_repository
from bbackup.storage import open_storage
from bbackup.storage.fault import FaultyStorage

MiB = 1024 * 1024


def records(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "damaged").glob("*")) if (repo / "damaged").is_dir() else []


def restores_whole(cli: Cli, repo: Path, snapshot: str, src: Path, target: Path) -> bool:
    restored = cli("restore", "-r", repo, snapshot, "--target", target)
    return restored.exit_code == 0 and source_files(restored_path(target, src)) == source_files(src)


@pytest.fixture
def damaged(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> tuple[Path, Path, str]:
    """(repository, source, the damaged pack's object name)."""
    tree: Spec = {
        "big.bin": os.urandom(5 * MiB),
        # Enough besides for a second data pack (a pack may run past its 4 MiB target).
        "other.bin": os.urandom(3 * MiB),
        "a.txt": "alpha\n",
        "d": {"y.bin": os.urandom(MiB)},
    }
    made = make_damaged_repo(tmp_path, cli, make_tree, tree)
    return made.repo, made.src, made.damaged


def test_a_full_backup_after_check_finds_damage_uploads_the_blob_again_and_restores(
    tmp_path: Path, cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    repo, src, pack = damaged
    ok(cli("check", "-r", repo))  # same size, same header: only reading the data tells

    checked = cli("check", "-r", repo, "--read-data")
    assert checked.exit_code == 13, checked
    assert pack in checked.stderr and "bbackup repair packs" in checked.stderr
    [record] = records(repo)
    assert f"damaged/{record.name}" in checked.stdout

    # Plain check now names the pack too (and a second check records nothing new).
    plain = cli("check", "-r", repo, "--json")
    assert plain.exit_code == 13, plain
    report = plain.event("check")
    assert report["recorded_damage"] == [pack] and report["damage_record"] is None
    [line] = [e for e in report["errors"] if "recorded as damaged" in e]
    assert pack in line and "bbackup repair packs" in line
    assert records(repo) == [record]

    # Another host, with a cache of its own, backs up the same source in full.
    summary = ok(
        cli(
            "backup", "-r", repo, "--cache-dir", tmp_path / "other", "--type", "full", "--json", src
        )
    ).event("summary")
    assert summary["bytes_added"] > 0  # the damaged blob, uploaded again
    assert restores_whole(cli, repo, summary["snapshot_id"], src, tmp_path / "new")

    # Repair drops the damaged pack and the record; everything reads back intact.
    repaired = ok(cli("repair", "packs", "-r", repo, "--json")).event("repair_packs")
    assert list(repaired["damaged_packs"]) == [pack]
    assert repaired["blobs_lost"] == []  # the backup re-uploaded the only damaged blob
    assert records(repo) == []
    ok(cli("check", "-r", repo, "--read-data"))


def test_a_second_host_sees_the_record_and_an_incremental_backup_reads_the_file_again(
    tmp_path: Path, cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    repo, src, pack = damaged
    assert cli("check", "-r", repo, "--read-data").exit_code == 13
    # The same host and paths: an incremental backup whose parent has the damaged blob.
    other_cache = tmp_path / "host-2"
    backup = ok(cli("backup", "-r", repo, "--cache-dir", other_cache, "--json", src))
    assert f"1 pack is recorded as damaged ({pack})" in backup.stderr
    summary = backup.event("summary")
    assert summary["parent"] is not None and summary["bytes_added"] > 0
    assert restores_whole(cli, repo, summary["snapshot_id"], src, tmp_path / "new")
    # The old snapshot reads its blob from the good copy now as well.
    [old] = [
        s["id"]
        for s in ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()
        if s["id"] != summary["snapshot_id"]
    ]
    assert restores_whole(cli, repo, old, src, tmp_path / "old")


def test_without_the_record_a_full_backup_inherits_the_damage(
    tmp_path: Path, cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    """What the record prevents: without it the backup deduplicates against the damaged
    blob, exits 0 and writes a snapshot that does not restore."""
    repo, src, _pack = damaged
    packs = data_packs(repo)
    summary = ok(cli("backup", "-r", repo, "--type", "full", "--json", src)).event("summary")
    assert data_packs(repo) == packs  # no file content uploaded: all deduplicated
    assert not restores_whole(cli, repo, summary["snapshot_id"], src, tmp_path / "new")


def test_check_that_cannot_write_still_reports_the_damage(
    cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    repo, _src, pack = damaged

    async def check_read_only() -> CheckReport:
        stack = open_storage(str(repo))
        # The store refuses writes under damaged/, as one behind a read-only credential.
        refusing = FaultyStorage(
            stack.storage,
            fail_rate=1.0,
            only=lambda name: name.startswith("damaged/") and name != "damaged/",
            error=AccessDenied,
        )
        try:
            opened = await open_repository(
                dataclasses.replace(stack, storage=refusing), PASSWORD, use_cache=False
            )
            return await check_repository(opened, read_data=ReadDataSubset())
        finally:
            await stack.storage.aclose()

    report = asyncio.run(check_read_only())

    assert not report.ok and any(e.startswith(pack) for e in report.errors)
    [line] = [w for w in report.warnings if "could not record" in w]
    assert "repair packs" in line
    assert report.damage_record is None and records(repo) == []


def test_a_restore_that_meets_the_damaged_blob_records_it_too(
    tmp_path: Path, cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    repo, src, pack = damaged
    [old] = ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()

    restored = cli("restore", "-r", repo, old["id"], "--target", tmp_path / "out")
    assert restored.exit_code == 13, restored
    assert f"{pack}: damaged, recorded in damaged/" in restored.stderr
    assert len(records(repo)) == 1

    summary = ok(cli("backup", "-r", repo, "--type", "full", "--json", src)).event("summary")
    assert summary["bytes_added"] > 0
    assert restores_whole(cli, repo, summary["snapshot_id"], src, tmp_path / "new")
    plain = cli("check", "-r", repo)
    assert plain.exit_code == 13 and "recorded as damaged" in plain.stderr, plain


def test_prune_keeps_the_good_copy_and_drops_the_damaged_pack(
    tmp_path: Path, cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    repo, src, pack = damaged
    [old] = ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()
    assert cli("check", "-r", repo, "--read-data").exit_code == 13
    new = ok(cli("backup", "-r", repo, "--type", "full", "--json", src)).event("summary")

    # Repacking the damaged pack copies its intact blobs only: the damaged one is read
    # from its good copy, so both snapshots keep every blob.
    [record] = records(repo)
    pruned = ok(cli("prune", "-r", repo, "--grace", "0s", "--json")).event("prune")
    assert not (repo / pack).exists()
    # The damaged pack is gone, so its record is moot and goes with it.
    assert pruned["damage_records_removed"] == [f"damaged/{record.name}"]
    assert records(repo) == []

    ok(cli("check", "-r", repo, "--read-data"))
    assert restores_whole(cli, repo, new["snapshot_id"], src, tmp_path / "new")
    assert restores_whole(cli, repo, old["id"], src, tmp_path / "old")


def test_repair_of_another_pack_leaves_the_record_and_a_dry_run_changes_nothing(
    cli: Cli, damaged: tuple[Path, Path, str]
) -> None:
    repo, _src, pack = damaged
    assert cli("check", "-r", repo, "--read-data").exit_code == 13
    [record] = records(repo)
    intact = next(p for p in data_packs(repo) if p.relative_to(repo).as_posix() != pack)

    other = ok(cli("repair", "packs", "-r", repo, "--pack", intact.name, "--json"))
    assert other.event("repair_packs")["records_removed"] == []
    dry = ok(cli("repair", "packs", "-r", repo, "--dry-run", "--json"))
    assert dry.event("repair_packs")["records_removed"] == []
    assert records(repo) == [record]

    named = ok(cli("repair", "packs", "-r", repo, "--pack", pack, "--json"))
    assert named.event("repair_packs")["records_removed"] == [f"damaged/{record.name}"]
    assert records(repo) == []
