"""A backup killed by SIGKILL after storing its packs but before indexing them: what the
resume tests start from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The real CLI, killed when it would write its first index segment: every pack of the
# backup is stored, none is indexed, and there is no snapshot.
KILLED_BEFORE_INDEX = """
import os, signal, sys

import bbackup.repository.writer


async def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


bbackup.repository.writer.BlobWriter.write_segment = die
from bbackup.cli.app import main

sys.argv = ["bbackup", *sys.argv[1:]]
main()
"""


def stored(repo: Path, *directories: str) -> list[Path]:
    """The objects under `directories` of a local repository."""
    found: list[Path] = []
    for directory in directories:
        root = repo / directory
        found += [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return sorted(found)


def kill_backup_before_index(scratch: Path, repo: Path, src: Path) -> None:
    """Run `bbackup backup` of `src` and kill it once its packs are stored."""
    script = scratch / "killed_backup.py"
    script.write_text(KILLED_BEFORE_INDEX)
    killed = subprocess.run(
        [sys.executable, str(script), "backup", "-r", str(repo), str(src)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
