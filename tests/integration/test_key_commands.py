"""`key list|add|remove|passwd`: passwords come and go, the data stays readable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, restored_path

SECOND = "second password"
THIRD = "third password"


def keys(cli: Cli, repo: Path) -> list[dict[str, object]]:
    result = cli("key", "list", "-r", repo, "--json")
    assert result.exit_code == 0, result
    listed: list[dict[str, object]] = result.event("keys")["keys"]
    return listed


def test_added_password_opens_the_repository_and_removed_one_no_longer_does(
    repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    [original] = keys(cli, repo)
    assert original["current"] is True

    monkeypatch.setenv("BBACKUP_NEW_PASSWORD", SECOND)
    added = cli("key", "add", "-r", repo, "--json")
    assert added.exit_code == 0, added
    new_id = added.event("key_added")["id"]
    assert sorted(k["id"] for k in keys(cli, repo)) == sorted([original["id"], new_id])

    monkeypatch.setenv("BBACKUP_PASSWORD", SECOND)
    assert [k["id"] for k in keys(cli, repo) if k["current"]] == [new_id]

    monkeypatch.setenv("BBACKUP_PASSWORD", PASSWORD)
    removed = cli("key", "remove", "-r", repo, str(new_id)[:8])
    assert removed.exit_code == 0, removed
    assert [k["id"] for k in keys(cli, repo)] == [original["id"]]

    monkeypatch.setenv("BBACKUP_PASSWORD", SECOND)
    assert cli("snapshots", "-r", repo).exit_code == 12


def test_the_key_in_use_cannot_be_removed(
    repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BBACKUP_NEW_PASSWORD", SECOND)
    assert cli("key", "add", "-r", repo).exit_code == 0
    [current] = [k for k in keys(cli, repo) if k["current"]]

    result = cli("key", "remove", "-r", repo, str(current["id"]))

    assert result.exit_code == 1, result
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(keys(cli, repo)) == 2
    assert cli("snapshots", "-r", repo).exit_code == 0


def test_removing_an_unknown_key_fails_and_removes_nothing(repo: Path, cli: Cli) -> None:
    result = cli("key", "remove", "-r", repo, "ffffffffffff")

    assert result.exit_code == 1, result
    assert len(keys(cli, repo)) == 1


def test_passwd_replaces_the_password_and_the_data_stays_restorable(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src", {"file.txt": "kept across password changes\n"})
    assert cli("backup", "-r", repo, src).exit_code == 0
    new_password_file = tmp_path / "new-password"
    new_password_file.write_text(THIRD + "\n")

    result = cli("key", "passwd", "-r", repo, "--new-password-file", new_password_file)
    assert result.exit_code == 0, result

    old = cli("snapshots", "-r", repo)
    assert old.exit_code == 12, old
    monkeypatch.setenv("BBACKUP_PASSWORD", THIRD)
    assert len(keys(cli, repo)) == 1
    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, src) / "file.txt"
    assert restored.read_text() == "kept across password changes\n"


def test_passwd_refuses_an_empty_new_password(
    repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BBACKUP_NEW_PASSWORD", "")

    result = cli("key", "passwd", "-r", repo)

    assert result.exit_code == 2, result
    assert cli("snapshots", "-r", repo).exit_code == 0


def key_file_costs(repo: Path) -> list[tuple[int, int, int]]:
    """(passes, KiB of memory, lanes) of every key file, as stored."""
    documents = [json.loads(p.read_bytes()) for p in sorted((repo / "keys").iterdir())]
    return sorted((d["t"], d["m"], d["p"]) for d in documents)


def test_init_and_key_add_record_the_derivation_cost_asked_for(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    result = cli("init", "-r", repo, "--kdf-memory", "16", "--kdf-time", "2")
    assert result.exit_code == 0, result
    assert key_file_costs(repo) == [(2, 16 * 1024, 4)]

    monkeypatch.setenv("BBACKUP_NEW_PASSWORD", SECOND)
    assert cli("key", "add", "-r", repo, "--kdf-memory", "8", "--kdf-time", "1").exit_code == 0
    assert key_file_costs(repo) == [(1, 8 * 1024, 4), (2, 16 * 1024, 4)]
    monkeypatch.setenv("BBACKUP_PASSWORD", SECOND)
    assert cli("snapshots", "-r", repo).exit_code == 0

    monkeypatch.setenv("BBACKUP_NEW_PASSWORD", THIRD)
    assert cli("key", "passwd", "-r", repo, "--kdf-time", "3", "--kdf-memory", "8").exit_code == 0
    assert key_file_costs(repo) == [(2, 16 * 1024, 4), (3, 8 * 1024, 4)]


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("init", ["--kdf-memory", "4"]),
        ("init", ["--kdf-memory", "2049"]),
        ("init", ["--kdf-time", "0"]),
        ("add", ["--kdf-time", "1001"]),
        ("passwd", ["--kdf-memory", "1", "--kdf-time", "1"]),
    ],
)
def test_a_derivation_cost_below_the_floor_is_a_usage_error_and_changes_nothing(
    tmp_path: Path, repo: Path, cli: Cli, command: str, flags: list[str]
) -> None:
    target = tmp_path / "new" if command == "init" else repo
    keys_before = key_file_costs(repo)

    result = cli(*(["init"] if command == "init" else ["key", command]), "-r", target, *flags)

    assert result.exit_code == 2, result
    assert result.stderr.startswith("bbackup: error: --kdf-"), result
    assert len(result.stderr.strip().splitlines()) == 1, result
    assert not (tmp_path / "new").exists()
    assert key_file_costs(repo) == keys_before
