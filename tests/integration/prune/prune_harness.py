"""Plain helpers the prune tests share: back up at a given time, restore and read back,
and look at what a repository holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli_harness import Cli, CliResult, restored_path

MiB = 1024 * 1024


@dataclass
class History:
    """Snapshots of one source in time order, and the files each one holds."""

    repo: Path
    src: Path
    ids: list[str] = field(default_factory=list)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


def backup_at(cli: Cli, repo: str | Path, src: Path, when: str, *extra: str) -> str:
    """Back up `src` recording time `when`; return the new snapshot's ID."""
    result = ok(cli("backup", "-r", repo, "--json", "--time", when, *extra, src))
    snapshot_id: str = result.event("summary")["snapshot_id"]
    return snapshot_id


def snapshot_ids(cli: Cli, repo: str | Path) -> set[str]:
    snapshots: list[dict[str, Any]] = ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()
    return {s["id"] for s in snapshots}


def read_files(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, by path relative to it."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def restore_files(
    cli: Cli, repo: str | Path, snapshot_id: str, target: Path, src: Path
) -> dict[str, bytes]:
    """Restore one snapshot into a fresh `target` and read back the files of `src`."""
    ok(cli("restore", snapshot_id, "-r", repo, "--target", target))
    return read_files(restored_path(target, src))


def stored_packs(repo: Path) -> set[str]:
    """Names of the pack objects of a local repository."""
    return {
        p.relative_to(repo).as_posix()
        for directory in ("data", "tree")
        if (repo / directory).exists()
        for p in (repo / directory).rglob("*")
        if p.is_file()
    }


def replace_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Make `root` hold exactly `files` (flat names), removing anything else."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        path = root / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    return root


# `bbackup prune` that, once it has planned (the first time), runs a whole
# `bbackup backup` given as argv[1] (a JSON list of arguments) before carrying on.
PRUNE_WITH_BACKUP_AFTER_PLAN = """
import json, subprocess, sys

import bbackup.ops.prune

backup_args = json.loads(sys.argv[1])
plan_prune = bbackup.ops.prune.plan_prune
ran = []


def plan_then_backup(inp):
    plan = plan_prune(inp)
    if not ran:
        ran.append(True)
        done = subprocess.run([sys.executable, "-m", "bbackup", *backup_args])
        assert done.returncode == 0, done
    return plan


bbackup.ops.prune.plan_prune = plan_then_backup
from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[2:]]
main()
"""
