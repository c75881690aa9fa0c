"""Mistakes a new user makes on a first day: each ends in one clear line and its documented
exit code (2 usage, 10 not a repository, 15 no password, 21 nothing matched, 141 closed
pipe), never a traceback, a raw `ValueError` or a silent empty success."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import CHEAPEST_KDF, PASSWORD, Cli, CliResult, MakeTree
from typer.testing import CliRunner

from bbackup.cli.app import app


def one_line_error(result: CliResult, code: int, *needles: str) -> str:
    assert result.exit_code == code, result
    assert "Traceback" not in result.output and "internal error" not in result.output, result
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result
    for needle in needles:
        assert needle in lines[0], result
    return lines[0]


@pytest.fixture
def backed_up(tmp_path: Path, cli: Cli, repo: Path, make_tree: MakeTree) -> Path:
    """A repository holding one snapshot of a small tree; returns the tree."""
    src = make_tree(tmp_path / "src", {"a.txt": "alpha", "sub": {"b.txt": "beta"}})
    assert cli("backup", "-r", repo, src).exit_code == 0
    return src


def snapshot_count(cli: Cli, repo: Path) -> int:
    return len(cli("snapshots", "-r", repo, "--json").snapshot_list())


def test_ls_of_a_path_the_snapshot_lacks_exits_21(cli: Cli, repo: Path, backed_up: Path) -> None:
    result = cli("ls", "-r", repo, "latest", "/no/such/path")

    one_line_error(result, 21, "/no/such/path", "no such path")
    assert result.stdout == ""


def test_ls_of_a_path_the_snapshot_holds_lists_it(cli: Cli, repo: Path, backed_up: Path) -> None:
    result = cli("ls", "-r", repo, "latest", backed_up / "sub")

    assert result.exit_code == 0, result
    assert result.stdout.split() == [str(backed_up / "sub"), str(backed_up / "sub" / "b.txt")]


@pytest.mark.parametrize("pattern", ["[", "*.[ch", ""])
def test_backup_refuses_an_invalid_exclude_pattern(
    cli: Cli, repo: Path, backed_up: Path, pattern: str
) -> None:
    result = cli("backup", "-r", repo, "--exclude", pattern, backed_up)

    one_line_error(result, 2, "--exclude")
    assert snapshot_count(cli, repo) == 1


def test_backup_refuses_an_invalid_pattern_in_an_exclude_file(
    tmp_path: Path, cli: Cli, repo: Path, backed_up: Path
) -> None:
    patterns = tmp_path / "excludes"
    patterns.write_text("# caches\n*.tmp\n[oops\n")

    result = cli("backup", "-r", repo, "--exclude-file", patterns, backed_up)

    one_line_error(result, 2, str(patterns), "[oops")


@pytest.mark.parametrize("pattern", ["**", "*"])
def test_excludes_that_leave_nothing_warn_and_save_no_snapshot(
    cli: Cli, repo: Path, backed_up: Path, pattern: str
) -> None:
    result = cli("backup", "-r", repo, "--exclude", pattern, backed_up)

    assert result.exit_code == 21, result
    assert "nothing" in result.stderr and "no snapshot saved" in result.stderr, result
    assert snapshot_count(cli, repo) == 1


def test_an_empty_source_directory_is_still_backed_up(tmp_path: Path, cli: Cli, repo: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    result = cli("backup", "-r", repo, "--exclude", "*.tmp", empty)

    assert result.exit_code == 0, result
    assert snapshot_count(cli, repo) == 1


@pytest.mark.parametrize("level", ["99", "-1"])
def test_compression_out_of_range_is_a_usage_error(
    cli: Cli, repo: Path, backed_up: Path, level: str
) -> None:
    result = cli("backup", "-r", repo, "--compression", level, backed_up)

    assert result.exit_code == 2, result
    assert "--compression" in result.stderr and "0<=x<=22" in result.stderr, result
    assert "ValueError" not in result.output


@pytest.mark.parametrize("endpoint", ["not-a-url", "ftp://host", "http://"])
def test_an_endpoint_that_is_not_a_url_is_a_usage_error(cli: Cli, endpoint: str) -> None:
    result = cli("snapshots", "-r", "s3://bucket/repo", "--s3-endpoint", endpoint)

    one_line_error(result, 2, "--s3-endpoint", repr(endpoint))


def test_a_bad_aws_endpoint_url_or_source_endpoint_is_named(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not-a-url")
    one_line_error(cli("snapshots", "-r", "s3://bucket/repo"), 2, "AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL")

    result = cli(
        "copy", "-r", tmp_path / "target", "--from-repo", "s3://bucket/repo",
        "--from-s3-endpoint", "nope",
    )  # fmt: skip

    one_line_error(result, 2, "--from-s3-endpoint 'nope'")


def test_a_repository_that_is_a_plain_file_is_named(tmp_path: Path, cli: Cli) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_text("not a repository")

    result = cli("snapshots", "-r", plain)

    one_line_error(result, 10, f"not a repository: {plain} is a file")


def test_a_restore_target_that_is_a_file_is_a_usage_error(
    tmp_path: Path, cli: Cli, repo: Path, backed_up: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")

    result = cli("restore", "-r", repo, "latest", "--target", afile)

    one_line_error(result, 2, str(afile), "not a directory")
    assert afile.read_text() == "keep me"


def test_an_empty_password_file_is_named_not_called_a_wrong_password(
    tmp_path: Path, cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BBACKUP_PASSWORD")
    empty = tmp_path / "password"
    empty.write_text("")

    result = cli("snapshots", "-r", repo, "--password-file", empty)

    line = one_line_error(result, 15, f"password file {empty} is empty")
    assert "Wrong password" not in line


def test_init_refuses_a_directory_of_user_files(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("chapter one")

    result = cli("init", "-r", home, *CHEAPEST_KDF)

    one_line_error(result, 2, str(home), "not empty")
    assert sorted(os.listdir(home)) == ["thesis.tex"]


@pytest.mark.parametrize("left", [[], ["keys"]], ids=["empty", "after-an-interrupted-init"])
def test_init_into_an_empty_directory_works(tmp_path: Path, cli: Cli, left: list[str]) -> None:
    target = tmp_path / "target"
    target.mkdir()
    for name in left:
        (target / name).mkdir()

    result = cli("init", "-r", target, *CHEAPEST_KDF)

    assert result.exit_code == 0, result
    assert (target / "config").is_file()


@pytest.fixture(scope="module")
def many_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose one snapshot lists more names than a pipe's buffer holds, built
    once for the module (made before the per-test environment: hence its own)."""
    root = tmp_path_factory.mktemp("many-names")
    repo, src = root / "repo", root / "many"
    src.mkdir()
    for i in range(3000):
        (src / f"file-{i:05}").write_bytes(b"")
    env = {
        "BBACKUP_PASSWORD": PASSWORD,
        "HOME": str(root),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    runner = CliRunner()
    for args in (("init", "-r", repo, *CHEAPEST_KDF), ("backup", "-r", repo, src)):
        result = runner.invoke(app, [os.fspath(a) for a in args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return repo


@pytest.mark.parametrize("fast_exit", ["0", "1"])
def test_a_closed_pipe_ends_ls_quietly_with_141(
    tmp_path: Path, many_names: Path, fast_exit: str
) -> None:
    repo = many_names
    env = {**os.environ, "BBACKUP_PASSWORD": PASSWORD, "BBACKUP_NO_FAST_EXIT": fast_exit}
    errors = tmp_path / "stderr"
    with errors.open("wb") as stderr:
        ls = subprocess.Popen(
            [sys.executable, "-m", "bbackup", "ls", "-r", str(repo), "latest"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        assert ls.stdout is not None
        first = ls.stdout.readline()  # `| head -1`
        ls.stdout.close()
        status = ls.wait(timeout=60)

    assert status == 141
    assert first.strip() == b"/" + str(tmp_path).strip("/").split("/")[0].encode()
    assert errors.read_bytes() == b""
