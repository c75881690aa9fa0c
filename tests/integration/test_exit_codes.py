"""Failures a user meets: each gets its documented exit code and one clear line, no traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, FailReading, MakeTree, restored_path, run_subprocess


def assert_one_line_error(result: CliResult, code: int, *needles: str) -> None:
    assert result.exit_code == code, result
    assert "Traceback" not in result.output, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    for needle in needles:
        assert needle in lines[0], result


def env_without_password() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BBACKUP_PASSWORD")}


def test_wrong_password_exits_12_with_one_line(repo: Path) -> None:
    env = {**os.environ, "BBACKUP_PASSWORD": "not the password"}

    result = run_subprocess("snapshots", "-r", repo, env=env)

    assert_one_line_error(result, 12, "password")


def test_missing_repository_exits_10(tmp_path: Path, cli: Cli) -> None:
    missing = tmp_path / "no-repo-here"

    result = cli("snapshots", "-r", missing)

    assert_one_line_error(result, 10, str(missing))
    assert not missing.exists()


def test_init_twice_exits_14_and_keeps_the_repository(repo: Path, cli: Cli) -> None:
    keys_before = sorted(os.listdir(repo / "keys"))
    config_before = (repo / "config").read_bytes()

    result = cli("init", "-r", repo)

    assert_one_line_error(result, 14, "already exists")
    assert sorted(os.listdir(repo / "keys")) == keys_before
    assert (repo / "config").read_bytes() == config_before
    assert cli("snapshots", "-r", repo).exit_code == 0


@pytest.mark.parametrize("command", ["snapshots", "init"])
def test_no_password_source_without_tty_exits_15_without_waiting(
    tmp_path: Path, repo: Path, command: str
) -> None:
    target = repo if command == "snapshots" else tmp_path / "new-repo"
    started = time.monotonic()

    result = run_subprocess(command, "-r", target, env=env_without_password(), timeout=60)

    assert time.monotonic() - started < 30
    assert_one_line_error(result, 15, "BBACKUP_PASSWORD")
    if command == "init":
        assert not (tmp_path / "new-repo" / "config").exists()


@pytest.mark.parametrize("url", ["ftp://x", "s3://"])
@pytest.mark.parametrize("command", ["init", "snapshots", "backup"])
def test_malformed_repository_url_exits_16(
    tmp_path: Path, cli: Cli, url: str, command: str
) -> None:
    args = [command, "--repo", url] + ([str(tmp_path)] if command == "backup" else [])

    result = cli(*args)

    assert_one_line_error(result, 16, url)


def test_backing_up_a_missing_path_exits_1_naming_it(tmp_path: Path, repo: Path, cli: Cli) -> None:
    missing = tmp_path / "not-there"

    result = cli("backup", "-r", repo, missing)

    assert_one_line_error(result, 1, str(missing))
    assert cli("snapshots", "-r", repo, "--json").snapshot_list() == []


SOURCE = {
    "good.txt": "fine\n",
    "bad.txt": "cannot be read\n",
    "sub": {"also-good.txt": "also fine\n" * 100},
}


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (PermissionError(13, "Permission denied"), "Permission denied"),
        (FileNotFoundError(2, "No such file or directory"), "vanished"),
    ],
    ids=["unreadable", "vanished"],
)
def test_a_file_that_cannot_be_read_is_skipped_and_the_backup_exits_3(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    make_tree: MakeTree,
    fail_reading: FailReading,
    failure: OSError,
    message: str,
) -> None:
    src = make_tree(tmp_path / "src", SOURCE)
    bad = os.fsencode(src / "bad.txt")
    fail_reading(src / "bad.txt", failure)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 3, result
    errors = [e for e in result.events() if e.get("event") == "error"]
    assert [e["path"] for e in errors] == [os.fsdecode(bad)]
    assert message in errors[0]["message"]
    summary = result.event("summary")
    assert summary["errors"] == 1
    assert summary["files_new"] == 2
    snapshots = cli("snapshots", "-r", repo, "--json").snapshot_list()
    assert [s["id"] for s in snapshots] == [summary["snapshot_id"]]
    assert snapshots[0]["summary"]["errors"] == 1

    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, src)
    assert (restored / "good.txt").read_text() == "fine\n"
    assert (restored / "sub" / "also-good.txt").read_text() == "also fine\n" * 100
    assert not (restored / "bad.txt").exists(), "a skipped file must not come back empty"


def test_unreadable_file_in_human_output_is_a_warning_naming_it(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    make_tree: MakeTree,
    fail_reading: FailReading,
) -> None:
    src = make_tree(tmp_path / "src", SOURCE)
    bad = os.fsencode(src / "bad.txt")
    fail_reading(src / "bad.txt", PermissionError(13, "Permission denied"))

    result = cli("backup", "-r", repo, src)

    assert result.exit_code == 3, result
    assert os.fsdecode(bad) in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_chmod_000_file_is_skipped_and_the_backup_exits_3(
    tmp_path: Path, repo: Path, make_tree: MakeTree, password: str
) -> None:
    src = make_tree(tmp_path / "src", SOURCE)
    (src / "bad.txt").chmod(0)

    result = run_subprocess("backup", "-r", repo, "--json", src)

    assert result.exit_code == 3, result
    assert result.event("summary")["errors"] == 1
    assert str(src / "bad.txt") in result.stdout
