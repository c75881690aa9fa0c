"""Unwrapping key files ahead of time: the CLI starts the key derivation before it has
loaded, and opening the repository takes that result when its inputs are the same."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bbackup.cache_paths import unlock_hint
from bbackup.cli.early import unlock_early
from bbackup.crypto import kdf
from bbackup.crypto.kdf import Argon2idParams, derive_ahead
from bbackup.crypto.keys import MasterKey, open_key_file, seal_key_file
from bbackup.errors import WrongPassword

FAST_ARGON2 = Argon2idParams(t=1, m=32, p=4)


@pytest.fixture(autouse=True)
def no_guesses_left_over() -> None:
    kdf._ahead.clear()


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The salts of every Argon2id derivation made from now on."""
    made: list[bytes] = []
    derive = kdf._argon2

    def counted(params: Argon2idParams, password: bytes, salt: bytes) -> bytes:
        made.append(salt)
        return derive(params, password, salt)

    monkeypatch.setattr(kdf, "_argon2", counted)
    return made


def test_a_key_unwrapped_in_the_background_is_not_derived_again(
    derivations: list[bytes],
) -> None:
    master = MasterKey.generate()
    stored = seal_key_file(master, "pw", FAST_ARGON2)
    derivations.clear()

    derive_ahead([stored], "pw")

    assert open_key_file(stored, "pw") == master
    assert len(derivations) == 1


def test_a_wrong_password_fails_the_same_way_when_guessed_early(
    derivations: list[bytes],
) -> None:
    stored = seal_key_file(MasterKey.generate(), "pw", FAST_ARGON2)
    derivations.clear()

    derive_ahead([stored], "not pw")

    with pytest.raises(WrongPassword):
        open_key_file(stored, "not pw")
    assert len(derivations) == 1


def test_another_password_than_the_guess_is_derived_as_usual(derivations: list[bytes]) -> None:
    master = MasterKey.generate()
    stored = seal_key_file(master, "pw", FAST_ARGON2)

    derive_ahead([stored], "a guess")

    assert open_key_file(stored, "pw") == master
    with pytest.raises(WrongPassword):
        open_key_file(stored, "a guess")  # the guess itself, once it is asked for


def test_background_unwrapping_stops_at_the_first_key_that_opens(
    derivations: list[bytes],
) -> None:
    master = MasterKey.generate()
    first, second = (seal_key_file(master, "pw", FAST_ARGON2) for _ in range(2))
    derivations.clear()

    derive_ahead([first, second], "pw")

    assert open_key_file(first, "pw") == master
    assert open_key_file(second, "pw") == master  # cancelled in the background: derived now
    assert len(derivations) == 2


def local_key_file(tmp_path: Path, master: MasterKey, password: str) -> bytes:
    """A key file for `master` in the repository tmp_path/repo; its bytes."""
    keys = tmp_path / "repo" / "keys"
    keys.mkdir(parents=True)
    stored = seal_key_file(master, password, FAST_ARGON2)
    (keys / "k1").write_bytes(stored)
    return stored


@pytest.mark.parametrize(
    "spelling", ["-r {repo}", "--repo {repo}", "--repo={repo}", "--repo file://{repo}"]
)
def test_the_cli_guesses_a_local_repository_from_the_command_line(
    tmp_path: Path, derivations: list[bytes], spelling: str
) -> None:
    master = MasterKey.generate()
    stored = local_key_file(tmp_path, master, "pw")
    derivations.clear()
    repo_args = spelling.format(repo=tmp_path / "repo").split()

    unlock_early(["snapshots", *repo_args, "--json"], {"BBACKUP_PASSWORD": "pw"})

    assert open_key_file(stored, "pw") == master
    assert len(derivations) == 1


def test_the_cli_reads_a_password_file_but_never_runs_a_password_command(
    tmp_path: Path, derivations: list[bytes]
) -> None:
    master = MasterKey.generate()
    stored = local_key_file(tmp_path, master, "from file")
    (tmp_path / "pw").write_text("from file\n")
    marker = tmp_path / "command-ran"
    derivations.clear()

    unlock_early(
        ["backup", "-r", str(tmp_path / "repo"), "--password-command", f"touch {marker}"],
        {k: v for k, v in os.environ.items() if not k.startswith("BBACKUP_PASSWORD")},
    )
    unlock_early(
        ["snapshots", "-r", str(tmp_path / "repo")], {"BBACKUP_PASSWORD_FILE": str(tmp_path / "pw")}
    )

    assert not marker.exists()
    assert open_key_file(stored, "from file") == master
    assert len(derivations) == 1


def remembered_key_file(cache: Path, location: str, master: MasterKey, password: str) -> bytes:
    """A key file for `master`, remembered in the cache `cache` for `location`."""
    stored = seal_key_file(master, password, FAST_ARGON2)
    hint = Path(unlock_hint(cache, location))
    hint.parent.mkdir(parents=True)
    hint.write_bytes(stored)
    return stored


def test_the_cli_derives_a_remote_repositorys_key_from_the_copy_it_remembers(
    tmp_path: Path, derivations: list[bytes]
) -> None:
    # An S3 repository's key files need the S3 client to read; the key file that opened
    # the repository last time is in the cache, and its key is derived while that loads.
    master = MasterKey.generate()
    env = {"BBACKUP_PASSWORD": "pw", "BBACKUP_CACHE_DIR": str(tmp_path / "cache")}
    stored = remembered_key_file(tmp_path / "cache", "s3://bucket/prefix", master, "pw")
    derivations.clear()

    unlock_early(["backup", "-r", "s3://bucket/prefix", "/src"], env)

    assert open_key_file(stored, "pw") == master  # the file fetched from S3, same bytes
    assert len(derivations) == 1


def test_a_remembered_copy_is_ignored_with_no_cache_or_for_another_repository(
    tmp_path: Path, derivations: list[bytes]
) -> None:
    env = {"BBACKUP_PASSWORD": "pw", "BBACKUP_CACHE_DIR": str(tmp_path / "cache")}
    remembered_key_file(tmp_path / "cache", "s3://bucket/prefix", MasterKey.generate(), "pw")
    derivations.clear()

    unlock_early(["snapshots", "-r", "s3://bucket/prefix", "--no-cache"], env)
    unlock_early(["snapshots", "-r", "s3://bucket/other"], env)

    assert kdf._ahead == {}
    assert derivations == []


@pytest.mark.parametrize(
    ("args", "env", "root"),
    [
        (["--cache-dir", "{tmp}/c1"], {"BBACKUP_CACHE_DIR": "{tmp}/c2"}, "{tmp}/c1"),
        ([], {"BBACKUP_CACHE_DIR": "{tmp}/c2"}, "{tmp}/c2"),
        ([], {"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/bbackup"),
        ([], {"HOME": "{tmp}/home"}, "{tmp}/home/.cache/bbackup"),
    ],
)
def test_the_remembered_copy_is_read_from_the_cache_the_command_uses(
    tmp_path: Path,
    derivations: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    root: str,
) -> None:
    # --cache-dir, then BBACKUP_CACHE_DIR, then $XDG_CACHE_HOME/bbackup, then ~/.cache.
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    master = MasterKey.generate()
    stored = remembered_key_file(Path(root.format(tmp=tmp_path)), "s3://b/p", master, "pw")
    derivations.clear()

    argv = ["snapshots", "-r", "s3://b/p", *(a.format(tmp=tmp_path) for a in args)]
    unlock_early(argv, {"BBACKUP_PASSWORD": "pw", **env})

    assert open_key_file(stored, "pw") == master
    assert len(derivations) == 1


def test_the_early_derivation_can_be_switched_off(tmp_path: Path, derivations: list[bytes]) -> None:
    local_key_file(tmp_path, MasterKey.generate(), "pw")
    derivations.clear()

    unlock_early(
        ["snapshots", "-r", str(tmp_path / "repo")],
        {"BBACKUP_PASSWORD": "pw", "BBACKUP_NO_EARLY_UNLOCK": "1"},
    )

    assert kdf._ahead == {}
    assert derivations == []


@pytest.mark.parametrize(
    "argv",
    [
        ["init", "-r", "{repo}"],
        ["snapshots", "-r", "{repo}", "--help"],
        ["snapshots", "-r", "s3://bucket/prefix"],
        ["snapshots", "-r", "{repo}/missing"],
        [],
    ],
)
def test_the_cli_guesses_nothing_where_it_cannot_or_should_not(
    tmp_path: Path, derivations: list[bytes], argv: list[str]
) -> None:
    local_key_file(tmp_path, MasterKey.generate(), "pw")
    derivations.clear()

    unlock_early([a.format(repo=tmp_path / "repo") for a in argv], {"BBACKUP_PASSWORD": "pw"})

    assert kdf._ahead == {}  # nothing started, nothing waiting
    assert derivations == []


def test_two_derivations_at_once_both_finish() -> None:
    # OpenSSL's Argon2 threads come from one pool; two derivations started together
    # used to take half of it each and wait for the rest forever.
    params = Argon2idParams(t=2, m=8 * 1024, p=4)
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(params.derive(b"pw", bytes(16 + i))))
        for i in range(3)
    ]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 3
