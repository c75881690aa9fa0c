"""Deduplication: data the repository already holds is never stored twice."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path, tree_size

KiB = 1024
MiB = 1024 * KiB
#: What re-backing up unchanged data may add: new tree blobs, an index segment, a snapshot.
NEARLY_NOTHING = 256 * KiB


def backup_summary(cli: Cli, repo: Path, *args: str | os.PathLike[str]) -> dict[str, int]:
    result = cli("backup", "-r", repo, "--json", *args)
    assert result.exit_code == 0, result
    return result.event("summary")


def test_backing_up_unchanged_data_again_adds_almost_nothing(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(3 * MiB), "a.txt": "alpha\n" * 1000, "sub": {"b.txt": "beta\n"}},
    )
    first = backup_summary(cli, repo, src)
    assert first["bytes_added"] >= 3 * MiB
    size_after_first = tree_size(repo)

    second = backup_summary(cli, repo, src)

    assert second["bytes_added"] < NEARLY_NOTHING
    assert tree_size(repo) - size_after_first < NEARLY_NOTHING


def test_identical_content_under_two_names_is_stored_once(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    data = os.urandom(3 * MiB)
    src = make_tree(tmp_path / "src", {"one.bin": data, "copy": {"two.bin": data}})

    summary = backup_summary(cli, repo, src)

    assert summary["total_bytes"] == 6 * MiB
    assert summary["bytes_added"] < 3 * MiB + NEARLY_NOTHING
    assert tree_size(repo) < 3 * MiB + NEARLY_NOTHING


def test_full_backup_rereads_every_file_but_adds_almost_nothing(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(3 * MiB), "a.txt": "alpha\n" * 1000, "sub": {"b.txt": "beta\n"}},
    )
    total = tree_size(src)
    backup_summary(cli, repo, src)
    size_before = tree_size(repo)

    full = backup_summary(cli, repo, "--type", "full", src)

    assert full["type"] == "full"
    # Every file is read again, and reported as what it is: unmodified since the last one.
    assert (full["files_new"], full["files_changed"], full["files_unchanged"]) == (0, 0, 3)
    assert full["bytes_read"] == full["total_bytes"] == total
    assert full["bytes_added"] < NEARLY_NOTHING
    assert tree_size(repo) - size_before < NEARLY_NOTHING


@pytest.mark.parametrize("edit", ["overwrite", "insert"])
def test_one_byte_edit_in_a_large_file_stores_only_the_chunks_around_it(
    tmp_path: Path, repo: Path, cli: Cli, edit: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    data = os.urandom(50 * MiB)
    big.write_bytes(data)
    backup_summary(cli, repo, src)
    size_before = tree_size(repo)

    middle = 25 * MiB
    if edit == "overwrite":
        with big.open("r+b") as f:
            f.seek(middle)
            f.write(bytes([data[middle] ^ 0xFF]))
    else:  # shifts everything after it: only content-defined boundaries survive this
        big.write_bytes(data[:middle] + b"!" + data[middle:])
    second = backup_summary(cli, repo, src)

    # Chunks average 1 MiB (max 8 MiB): one edit touches one chunk, maybe its neighbour.
    assert second["files_changed"] == 1
    assert second["bytes_added"] <= 12 * MiB
    assert tree_size(repo) - size_before <= 12 * MiB
    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, big).read_bytes()
    assert hashlib.sha256(restored).digest() == hashlib.sha256(big.read_bytes()).digest()
