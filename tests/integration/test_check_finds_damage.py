"""`check` finds damage: missing packs always, flipped bits with --read-data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree

MiB = 1024 * 1024


@pytest.fixture
def backed_up(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> Path:
    """A repository with small packs (4 MiB) holding one backup of ~10 MiB in several packs."""
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(10 * MiB), "small.txt": "small\n", "d": {"e.txt": "e\n"}},
    )
    result = cli("backup", "-r", repo, src)
    assert result.exit_code == 0, result
    return repo


def data_packs(repo: Path) -> list[Path]:
    packs = sorted(p for p in (repo / "data").glob("*/*") if not p.name.startswith("."))
    assert packs, "the backup stored no data packs"
    return packs


def flip_bit_in_middle(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))


def test_check_of_an_intact_repository_passes_with_and_without_read_data(
    backed_up: Path, cli: Cli
) -> None:
    plain = cli("check", "-r", backed_up, "--json")
    assert plain.exit_code == 0, plain
    report = cli("check", "-r", backed_up, "--read-data", "--json")
    assert report.exit_code == 0, report
    checked = report.event("check")
    assert checked["ok"] is True
    assert checked["packs_read"] == checked["packs"] >= len(data_packs(backed_up))


def test_read_data_finds_a_flipped_bit_and_names_the_pack(backed_up: Path, cli: Cli) -> None:
    damaged = data_packs(backed_up)[0]
    flip_bit_in_middle(damaged)

    plain = cli("check", "-r", backed_up)
    assert plain.exit_code == 0, plain  # same size: only reading the data can tell

    result = cli("check", "-r", backed_up, "--read-data")
    assert result.exit_code == 13, result
    assert damaged.name in result.output
    assert "Traceback" not in result.output
    undamaged = [p.name for p in data_packs(backed_up) if p != damaged]
    assert not any(name in result.output for name in undamaged), result


def test_read_data_finds_a_flipped_bit_in_a_tree_pack_despite_a_warm_local_cache(
    backed_up: Path, cli: Cli
) -> None:
    # The backup left good copies of the tree packs in the local cache: check must verify
    # what the repository holds, or a damaged off-site copy passes as healthy.
    damaged = sorted(p for p in (backed_up / "tree").glob("*/*") if not p.name.startswith("."))[0]
    flip_bit_in_middle(damaged)

    result = cli("check", "-r", backed_up, "--read-data")

    assert result.exit_code == 13, result
    assert damaged.name in result.output


def test_check_finds_a_damaged_snapshot_document_despite_a_warm_local_cache(
    backed_up: Path, cli: Cli
) -> None:
    [damaged] = list((backed_up / "snapshots").iterdir())
    flip_bit_in_middle(damaged)

    result = cli("check", "-r", backed_up)

    assert result.exit_code == 13, result
    assert damaged.name in result.output


def test_read_data_subsets_n_of_m_together_find_a_flipped_bit_exactly_once(
    backed_up: Path, cli: Cli
) -> None:
    flip_bit_in_middle(data_packs(backed_up)[0])
    # Each subset checks its own copy: the check that finds the damage records it in the
    # repository, and every later check reports that record (test_damage_record.py).
    copies = [backed_up.with_name(f"{backed_up.name}-{n}") for n in (1, 2)]
    for copy in copies:
        shutil.copytree(backed_up, copy)

    codes = [
        cli("check", "-r", copy, "--read-data-subset", f"{n}/2").exit_code
        for n, copy in zip((1, 2), copies, strict=True)
    ]

    assert sorted(codes) == [0, 13]


def test_restore_refuses_to_write_data_from_a_damaged_pack(
    tmp_path: Path, backed_up: Path, cli: Cli
) -> None:
    flip_bit_in_middle(data_packs(backed_up)[0])

    result = cli("restore", "latest", "-r", backed_up, "--target", tmp_path / "restore")

    assert result.exit_code == 13, result
    assert "Traceback" not in result.output


def test_check_finds_a_deleted_pack_and_names_it(backed_up: Path, cli: Cli) -> None:
    deleted = data_packs(backed_up)[-1]
    deleted.unlink()

    result = cli("check", "-r", backed_up)

    assert result.exit_code == 13, result
    assert deleted.name in result.output
    assert "Traceback" not in result.output


def test_check_finds_a_truncated_pack_without_reading_data(backed_up: Path, cli: Cli) -> None:
    truncated = data_packs(backed_up)[0]
    with truncated.open("r+b") as f:
        f.truncate(truncated.stat().st_size - 1)

    result = cli("check", "-r", backed_up)

    assert result.exit_code == 13, result
    assert truncated.name in result.output


def test_read_data_subset_accepts_percentages_and_groups(backed_up: Path, cli: Cli) -> None:
    def packs_read(subset: str) -> tuple[int, int]:
        result = cli("check", "-r", backed_up, "--read-data-subset", subset, "--json")
        assert result.exit_code == 0, result
        report = result.event("check")
        return report["packs_read"], report["packs"]

    read, total = packs_read("50%")
    assert total >= 3
    assert read == round(total / 2)
    assert packs_read("100%") == (total, total)
    assert packs_read("1/2")[0] + packs_read("2/2")[0] == total


@pytest.mark.parametrize("subset", ["0%", "101%", "3/2", "0/2", "half"])
def test_read_data_subset_rejects_nonsense_with_a_usage_error(
    backed_up: Path, cli: Cli, subset: str
) -> None:
    result = cli("check", "-r", backed_up, "--read-data-subset", subset)

    assert result.exit_code == 2, result
    assert "--read-data-subset" in result.stderr
