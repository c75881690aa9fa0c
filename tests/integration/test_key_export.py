"""`key export` / `key import`: the master key kept apart from the repository opens it again
after every key file in the store is lost, on paper too; a typo, a wrong export password
and another repository's key are each refused with their own message and exit code."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path

EXPORT_PASSWORD = "export password kept in the safe"


@pytest.fixture(autouse=True)
def export_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BBACKUP_EXPORT_PASSWORD", EXPORT_PASSWORD)
    return EXPORT_PASSWORD


def lose_every_key_file(repo: Path) -> None:
    shutil.rmtree(repo / "keys")
    (repo / "keys").mkdir()


def export(cli: Cli, repo: Path, out: Path, *flags: str) -> None:
    result = cli("key", "export", "-r", repo, "--out", out, *flags)
    assert result.exit_code == 0, result


def test_exported_key_opens_the_repository_again_after_every_key_file_is_lost(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"ledger.txt": "debit credit\n", "sub": {"b": b"\x00\x01"}})
    assert cli("backup", "-r", repo, src).exit_code == 0
    out = tmp_path / "bbackup-key.json"
    export(cli, repo, out)
    assert out.stat().st_mode & 0o777 == 0o600
    lose_every_key_file(repo)
    assert cli("snapshots", "-r", repo).exit_code == 13

    imported = cli("key", "import", "-r", repo, out)

    assert imported.exit_code == 0, imported
    assert len(os.listdir(repo / "keys")) == 1
    snapshots = cli("snapshots", "-r", repo, "--json")
    assert snapshots.exit_code == 0, snapshots
    target = tmp_path / "restore"
    restored = cli("restore", "-r", repo, "latest", "--target", target)
    assert restored.exit_code == 0, restored
    back = restored_path(target, src)
    assert (back / "ledger.txt").read_text() == "debit credit\n"
    assert (back / "sub" / "b").read_bytes() == b"\x00\x01"


def test_paper_export_round_trips_and_names_the_line_with_a_typo(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    paper = tmp_path / "bbackup-key.txt"
    export(cli, repo, paper, "--paper")
    text = paper.read_text()
    repository_id = re.search(r"^repository ([0-9a-f]{64})$", text, re.M)
    assert repository_id is not None, text
    numbered = [line for line in text.splitlines() if line[:1].isdigit()]
    assert len(numbered) >= 5, text
    lose_every_key_file(repo)

    # A typo on line 3: one character of its data changed, as a person copying it might.
    typo = tmp_path / "typed-with-a-typo.txt"
    number, rest = numbered[2].split(None, 1)
    wrong = "B" if rest[0] != "B" else "C"
    typo.write_text(text.replace(numbered[2], f"{number}  {wrong}{rest[1:]}"))
    refused = cli("key", "import", "-r", repo, typo)
    assert refused.exit_code == 13, refused
    assert "line 3 " in refused.stderr, refused
    assert os.listdir(repo / "keys") == []

    # Typed again in lower case, without the spacing: accepted.
    retyped = tmp_path / "retyped.txt"
    retyped.write_text(
        "\n".join(
            f"{line.split(None, 1)[0]} {line.split(None, 1)[1].lower()}"
            if line[:1].isdigit()
            else line
            for line in text.splitlines()
        )
    )
    imported = cli("key", "import", "-r", repo, retyped)
    assert imported.exit_code == 0, imported
    assert cli("snapshots", "-r", repo).exit_code == 0


def test_a_missing_paper_line_is_named(tmp_path: Path, repo: Path, cli: Cli) -> None:
    paper = tmp_path / "bbackup-key.txt"
    export(cli, repo, paper, "--paper")
    lines = paper.read_text().splitlines()
    second = next(i for i, line in enumerate(lines) if line.startswith(("02", "2 ")))
    paper.write_text("\n".join(lines[:second] + lines[second + 1 :]))

    result = cli("key", "import", "-r", repo, paper)

    assert result.exit_code == 13, result
    assert "line(s) 2 missing" in result.stderr, result


def test_import_into_another_repository_is_refused_and_writes_nothing(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    out = tmp_path / "bbackup-key.json"
    export(cli, repo, out)
    other = tmp_path / "other"
    assert cli("init", "-r", other).exit_code == 0
    keys_before = sorted(os.listdir(other / "keys"))

    result = cli("key", "import", "-r", other, out)

    assert result.exit_code == 1, result
    assert "another repository's key" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(other / "keys")) == keys_before


def test_wrong_export_password_is_told_apart_from_a_damaged_export(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bbackup-key.json"
    export(cli, repo, out)
    lose_every_key_file(repo)

    monkeypatch.setenv("BBACKUP_EXPORT_PASSWORD", "not the export password")
    wrong = cli("key", "import", "-r", repo, out)
    assert wrong.exit_code == 12, wrong
    assert "wrong export password" in wrong.stderr, wrong

    monkeypatch.setenv("BBACKUP_EXPORT_PASSWORD", EXPORT_PASSWORD)
    damaged = tmp_path / "damaged.json"
    text = out.read_text()
    data = re.search(r'"data": "([^"]+)"', text)
    assert data is not None
    flipped = data.group(1)[:10] + ("A" if data.group(1)[10] != "A" else "B") + data.group(1)[11:]
    damaged.write_text(text.replace(data.group(1), flipped))
    result = cli("key", "import", "-r", repo, damaged)
    assert result.exit_code == 13, result
    assert "damaged" in result.stderr, result
    assert os.listdir(repo / "keys") == []


def test_export_needs_an_export_password_and_never_overwrites(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BBACKUP_EXPORT_PASSWORD")
    out = tmp_path / "bbackup-key.json"
    no_password = cli("key", "export", "-r", repo, "--out", out)
    assert no_password.exit_code == 15, no_password
    assert "--export-password-file" in no_password.stderr
    assert not out.exists()

    password_file = tmp_path / "export-password"
    password_file.write_text(EXPORT_PASSWORD + "\n")
    export(cli, repo, out, "--export-password-file", str(password_file))
    first = out.read_bytes()
    again = cli("key", "export", "-r", repo, "--out", out, "--export-password-file", password_file)
    assert again.exit_code == 2, again
    assert out.read_bytes() == first
