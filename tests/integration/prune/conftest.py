"""Fixtures for the prune tests: a local repository with a history of snapshots whose
data does not overlap, so forgetting snapshots leaves whole packs unused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli
from prune_harness import History, MiB, backup_at, replace_tree


@pytest.fixture
def four_snapshots(tmp_path: Path, repo: Path, cli: Cli) -> History:
    """Four daily snapshots; each adds a distinct 2 MiB random file and drops the previous one."""
    history = History(repo, tmp_path / "src")
    for day in range(1, 5):
        files = {f"day-{day}.bin": os.urandom(2 * MiB)}
        replace_tree(history.src, files)
        snapshot_id = backup_at(cli, repo, history.src, f"2026-01-0{day}T02:00:00+00:00")
        history.ids.append(snapshot_id)
        history.files[snapshot_id] = files
    return history
