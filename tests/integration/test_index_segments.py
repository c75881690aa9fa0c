"""Index segments written by a backup: one for a short backup, several for a long one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, restored_path

import bbackup.repository.writer

KiB = 1024


def index_objects(repo: Path) -> list[Path]:
    return sorted((repo / "index").rglob("*"))


def small_packs_and_data(tmp_path: Path, cli: Cli) -> tuple[Path, Path]:
    """A repository of 4 MiB packs, and 20 MiB of random files for it (5+ packs)."""
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(os.urandom(2500 * KiB))
    return repo, src


def test_a_short_backup_of_many_packs_writes_one_index_segment(tmp_path: Path, cli: Cli) -> None:
    repo, src = small_packs_and_data(tmp_path, cli)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 0, result
    assert result.event("summary")["packs_written"] >= 4
    assert len(index_objects(repo)) == 1  # one PUT now, one GET for each later reader


def test_a_long_backup_writes_segments_as_it_goes_and_every_one_is_used(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bbackup.repository.writer, "SEGMENT_MAX_BLOBS", 2)
    repo, src = small_packs_and_data(tmp_path, cli)

    assert cli("backup", "-r", repo, src).exit_code == 0

    assert len(index_objects(repo)) >= 3
    assert cli("check", "-r", repo, "--read-data").exit_code == 0
    target = tmp_path / "out"
    assert cli("restore", "-r", repo, "latest", "--target", target).exit_code == 0
    for i in range(8):
        assert (restored_path(target, src) / f"f{i}").read_bytes() == (src / f"f{i}").read_bytes()
