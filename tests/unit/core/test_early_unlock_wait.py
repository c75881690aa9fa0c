"""Whether the CLI waits for the key derivation it started early before loading the rest:
only where the derivation keeps every core busy, so that the peak memory is Argon2's alone
and no time is lost (cli/early.py). The derivation it hands back is the one the command
then takes, done once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bbackup.cli.early import unlock_early
from bbackup.crypto import kdf
from bbackup.crypto.kdf import Argon2idParams, KdfParams, ScryptParams
from bbackup.crypto.keys import MasterKey, open_key_file, seal_key_file

CORES = len(os.sched_getaffinity(0))


@pytest.fixture(autouse=True)
def no_guesses_left_over() -> None:
    kdf._ahead.clear()


def unlock_local(tmp_path: Path, params: KdfParams) -> tuple[threading.Thread | None, bytes]:
    """unlock_early on a local repository with one key file sealed with `params`."""
    keys = tmp_path / "repo" / "keys"
    keys.mkdir(parents=True)
    master = MasterKey.generate()
    stored = seal_key_file(master, "pw", params)
    (keys / "k1").write_bytes(stored)
    kdf._ahead.clear()
    waited = unlock_early(["snapshots", "-r", str(tmp_path / "repo")], {"BBACKUP_PASSWORD": "pw"})
    assert open_key_file(stored, "pw") == master
    return waited, stored


@pytest.mark.parametrize("lanes", [1, 4, 64])
def test_argon2_is_waited_for_when_its_lanes_fill_every_core(tmp_path: Path, lanes: int) -> None:
    waited, _ = unlock_local(tmp_path, Argon2idParams(t=1, m=8 * lanes, p=lanes))

    assert (waited is not None) == (lanes >= CORES)
    if waited is not None:
        waited.join(timeout=30)
        assert not waited.is_alive()


def test_scrypt_runs_on_one_core_and_is_waited_for_only_on_one(tmp_path: Path) -> None:
    waited, _ = unlock_local(tmp_path, ScryptParams(n=2**4, r=1, p=1))

    assert (waited is not None) == (CORES == 1)


def test_nothing_is_waited_for_when_nothing_was_started(tmp_path: Path) -> None:
    assert (
        unlock_early(["snapshots", "-r", str(tmp_path / "none")], {"BBACKUP_PASSWORD": "pw"})
        is None
    )
    assert unlock_early(["--help"], {"BBACKUP_PASSWORD": "pw"}) is None
