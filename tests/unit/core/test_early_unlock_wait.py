"""Whether the CLI waits for the key derivation it started early before loading the rest:
only where memory is short, so that Argon2's 64 MiB and the loaded program do not add up
(cli/early.py). The derivation it hands back is the one the command then takes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bbackup.cli import early
from bbackup.cli.early import memory_is_short, unlock_early
from bbackup.crypto import kdf
from bbackup.crypto.kdf import Argon2idParams
from bbackup.crypto.keys import MasterKey, open_key_file, seal_key_file

LINUX = os.path.exists("/proc/meminfo")


@pytest.fixture(autouse=True)
def no_guesses_left_over() -> None:
    kdf._ahead.clear()


def unlock_local(tmp_path: Path) -> threading.Thread | None:
    """unlock_early on a local repository with one key file; checks that the key then
    opens it, and returns what unlock_early handed back."""
    keys = tmp_path / "repo" / "keys"
    keys.mkdir(parents=True)
    master = MasterKey.generate()
    stored = seal_key_file(master, "pw", Argon2idParams(t=1, m=32, p=4))
    (keys / "k1").write_bytes(stored)
    kdf._ahead.clear()
    waited = unlock_early(["snapshots", "-r", str(tmp_path / "repo")], {"BBACKUP_PASSWORD": "pw"})
    assert open_key_file(stored, "pw") == master
    return waited


@pytest.mark.skipif(not LINUX, reason="reads /proc/meminfo")
def test_memory_is_short_below_the_limit_only() -> None:
    assert memory_is_short(limit=2**62)
    assert not memory_is_short(limit=0)


@pytest.mark.skipif(not LINUX, reason="reads /proc/meminfo")
def test_the_derivation_is_waited_for_where_memory_is_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(early, "SHORT_OF_MEMORY", 2**62)

    waited = unlock_local(tmp_path)

    assert waited is not None
    waited.join(timeout=30)
    assert not waited.is_alive()


def test_the_program_loads_alongside_the_derivation_where_memory_is_plenty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(early, "SHORT_OF_MEMORY", 0)

    assert unlock_local(tmp_path) is None


def test_nothing_is_waited_for_when_nothing_was_started(tmp_path: Path) -> None:
    env = {"BBACKUP_PASSWORD": "pw"}
    assert unlock_early(["snapshots", "-r", str(tmp_path / "none")], env) is None
    assert unlock_early(["--help"], env) is None
