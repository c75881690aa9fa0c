"""A damaged key file is named and skipped: it never locks out another password, and it is
never reported as a wrong password."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult

SECOND = "second password"


def damaged_first(repo: Path, content: bytes) -> str:
    """Store `content` as a key file under a name (its SHA-256, as for any key file) that
    sorts before every other key file; return that name. The content is varied by
    trailing spaces until its digest sorts first (the real key's random name may itself
    start with zeros, so no fixed prefix is enough)."""
    first = min(p.name for p in (repo / "keys").iterdir())
    for pad in range(1_000_000):
        data = content + b" " * pad
        digest = hashlib.sha256(data).hexdigest()
        if digest < first:
            (repo / "keys" / digest).write_bytes(data)
            return f"keys/{digest}"
    raise AssertionError("no digest sorts first")  # pragma: no cover


def flip_a_bit(path: Path) -> None:
    """Flip one bit inside the sealed master key: the file still parses as a key file."""
    document = json.loads(path.read_bytes())
    data = bytearray(path.read_bytes())
    at = data.index(document["data"].encode()) + 20
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def warnings(result: CliResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_a_malformed_key_file_sorted_first_does_not_lock_out_the_password(
    repo: Path, cli: Cli
) -> None:
    name = damaged_first(repo, b'{"version": 1, "kdf": "argon2id", "t": 3')

    result = cli("snapshots", "-r", repo)

    assert result.exit_code == 0, result
    assert warnings(result) == [
        f"warning: key file {name}: damaged (key file is malformed), skipped"
    ]


def test_a_key_file_with_impossible_parameters_is_damaged_not_a_crash(repo: Path, cli: Cli) -> None:
    [good] = (repo / "keys").iterdir()
    document = json.loads(good.read_bytes())
    name = damaged_first(repo, json.dumps({**document, "t": 0}).encode())

    result = cli("snapshots", "-r", repo)

    assert result.exit_code == 0, result
    [warning] = warnings(result)
    assert name in warning
    assert "out of range" in warning


def test_a_key_file_whose_bytes_do_not_match_its_name_is_skipped(repo: Path, cli: Cli) -> None:
    (repo / "keys" / ("0" * 64)).write_bytes(b"not a key file")

    result = cli("snapshots", "-r", repo)

    assert result.exit_code == 0, result
    assert warnings(result) == [
        f"warning: key file keys/{'0' * 64}: damaged (its content does not match its name "
        "(SHA-256)), skipped"
    ]


def test_a_bit_flipped_only_key_file_is_an_integrity_error_naming_it(repo: Path, cli: Cli) -> None:
    [key_file] = (repo / "keys").iterdir()
    flip_a_bit(key_file)

    result = cli("snapshots", "-r", repo)

    assert result.exit_code == 13, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("bbackup: error:")]
    assert len(errors) == 1, result
    assert f"keys/{key_file.name}" in errors[0]
    assert "password" not in result.stderr.lower()


@pytest.mark.parametrize("damaged", ["bit flip", "malformed"])
def test_a_wrong_password_is_still_a_wrong_password_beside_a_damaged_key(
    repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, damaged: str
) -> None:
    if damaged == "bit flip":
        monkeypatch.setenv("BBACKUP_NEW_PASSWORD", SECOND)
        assert cli("key", "add", "-r", repo).exit_code == 0
        flip_a_bit(min((repo / "keys").iterdir()))
    else:
        damaged_first(repo, b"[]")
    monkeypatch.setenv("BBACKUP_PASSWORD", "not the password")

    result = cli("snapshots", "-r", repo)

    assert result.exit_code == 12, result
    assert len(warnings(result)) == 1
    assert "bbackup: error: Wrong password" in result.stderr


def test_a_damaged_key_is_listed_as_damaged_and_can_be_removed(repo: Path, cli: Cli) -> None:
    name = damaged_first(repo, b"{}")
    damaged_id = name.removeprefix("keys/")

    listed = cli("key", "list", "-r", repo, "--json")
    assert listed.exit_code == 0, listed
    by_id = {k["id"]: k for k in listed.event("keys")["keys"]}
    assert by_id[damaged_id]["damaged"] == "unsupported key file version None"
    assert "damaged" not in next(k for i, k in by_id.items() if i != damaged_id)
    [line] = [
        ln for ln in cli("key", "list", "-r", repo).stdout.splitlines() if damaged_id[:8] in ln
    ]
    assert line.endswith("damaged: unsupported key file version None")

    assert cli("key", "remove", "-r", repo, damaged_id[:12]).exit_code == 0
    after = cli("snapshots", "-r", repo)
    assert after.exit_code == 0, after
    assert after.stderr == ""
