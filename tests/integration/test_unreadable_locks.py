"""An object under locks/ that is not a readable lock is named by every command that lists
locks, never blocks or crashes one, and `unlock` removes it."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import msgpack
import pytest
from cli_harness import PASSWORD, Cli, MakeTree

from bbackup.repository import open_repository
from bbackup.storage import open_storage


def garbage_lock(repo: Path) -> str:
    """Random bytes under a name like a lock's: it does not decrypt."""
    data = os.urandom(200)
    name = f"locks/{hashlib.sha256(data).hexdigest()}"
    (repo / "locks").mkdir(exist_ok=True)
    (repo / name).write_bytes(data)
    return name


def sealed_lock(repo: Path, payload: bytes) -> str:
    """A document that decrypts as a lock but does not say what a lock says."""

    async def store() -> str:
        stack = open_storage(str(repo))
        try:
            opened = await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
            return await opened.save_document("locks", "lock", payload)
        finally:
            await stack.storage.aclose()

    return asyncio.run(store())


@pytest.fixture
def source(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(tmp_path / "src", {"a.txt": "alpha\n"})


@pytest.fixture
def unreadable(repo: Path) -> list[str]:
    return sorted(
        [
            garbage_lock(repo),
            sealed_lock(repo, msgpack.packb([1, 2, 3])),
            sealed_lock(repo, msgpack.packb({"host": "h", "pid": "not a number"})),
            sealed_lock(repo, b"\xc1 not msgpack"),
        ]
    )


def warned_names(output: str) -> list[str]:
    """The objects named in warnings that say `unlock` removes them."""
    return sorted(
        line.split("warning: ", 1)[1].split(":", 1)[0]
        for line in output.splitlines()
        if "ignored; `bbackup unlock` removes it" in line
    )


def test_backup_names_each_unreadable_lock_once_and_succeeds(
    repo: Path, cli: Cli, source: Path, unreadable: list[str]
) -> None:
    backup = cli("backup", "-r", repo, source)

    assert backup.exit_code == 0, backup
    assert warned_names(backup.stderr) == unreadable


def test_forget_and_prune_name_each_unreadable_lock_once_and_run(
    repo: Path, cli: Cli, source: Path, unreadable: list[str]
) -> None:
    assert cli("backup", "-r", repo, source).exit_code == 0
    assert cli("backup", "-r", repo, source).exit_code == 0

    forget = cli("forget", "-r", repo, "--keep-last", "1", "--prune")
    prune = cli("prune", "-r", repo)

    assert forget.exit_code == 0, forget
    assert warned_names(forget.stderr) == unreadable
    assert prune.exit_code == 0, prune
    assert warned_names(prune.stderr) == unreadable


def test_unlock_removes_unreadable_locks_and_says_so(
    repo: Path, cli: Cli, source: Path, unreadable: list[str]
) -> None:
    unlock = cli("unlock", "-r", repo)

    assert unlock.exit_code == 0, unlock
    for name in unreadable:
        assert f"removed {name}: not a readable lock" in unlock.stdout
    assert "warning" not in unlock.stderr
    assert f"removed {len(unreadable)} locks" in unlock.stdout
    assert list((repo / "locks").iterdir()) == []
    backup = cli("backup", "-r", repo, source)
    assert backup.exit_code == 0, backup
    assert "warning" not in backup.stderr


def test_unlock_remove_all_removes_unreadable_locks_too(
    repo: Path, cli: Cli, unreadable: list[str]
) -> None:
    unlock = cli("unlock", "-r", repo, "--remove-all", "--json")

    assert unlock.exit_code == 0, unlock
    event = unlock.event("unlock")
    assert event["removed"] == len(unreadable)
    assert sorted(event["unreadable"]) == unreadable
    assert list((repo / "locks").iterdir()) == []
