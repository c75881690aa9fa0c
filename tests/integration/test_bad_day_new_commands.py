"""Hostile and unlucky input to the commands added this session (copy, dump, key export and
import, lifecycle, stats, drill, the job commands, tag/rewrite/cat and friends): each gets a
one-line error and its documented exit code, never a traceback, a hang or a damaged repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import CHEAPEST_KDF, Cli, CliResult

from bbackup.errors import ExitCode


def refused(result: CliResult, code: int, message: str) -> None:
    """The command failed with `code` and one error line holding `message`, no traceback."""
    assert result.exit_code == code, result
    assert "internal error" not in result.output and "Traceback" not in result.output, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("bbackup: error:")]
    assert len(errors) == 1 and message in errors[0], result


def job_config(tmp_path: Path, repo: Path, job_lines: str) -> Path:
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[repositories.r]\nurl = "{repo}"\n'
        f'[jobs.j]\nrepository = "r"\nsources = ["{source}"]\n{job_lines}\n'
    )
    return path


@pytest.mark.parametrize(
    "command", [["config", "check"], ["run", "j"], ["status"], ["schedule", "show"], ["service"]]
)
def test_a_config_file_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, cli: Cli, command: list[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b'[jobs.j]\nrepository = "r"\n\xff\xfe\n')
    refused(cli(*command, "-c", config), ExitCode.USAGE, f"{config}:3: not valid TOML: not UTF-8")


def test_a_hook_timeout_of_zero_is_refused(tmp_path: Path, cli: Cli) -> None:
    config = job_config(tmp_path, tmp_path / "repo", 'hooks = { before = "true", timeout = "0s" }')
    refused(cli("config", "check", "-c", config), ExitCode.USAGE, "must be at least 1s")


@pytest.mark.parametrize("command", ["rewrite", "backup"])
def test_an_exclude_file_with_bytes_that_are_not_utf8_is_read_as_file_names(
    tmp_path: Path, repo: Path, cli: Cli, command: str
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "keep.txt").write_text("keep")
    (source / os.fsdecode(b"drop\xff.bin")).write_bytes(b"x")
    assert cli("backup", "-r", repo, source).exit_code == 0
    exclude_file = tmp_path / "excludes"
    exclude_file.write_bytes(b"# junk\n*\xff.bin\n")

    if command == "rewrite":
        # --forget: the rewritten snapshot keeps the original's time, so `latest` is one.
        result = cli("rewrite", "-r", repo, "latest", "--exclude-file", exclude_file, "--forget")
    else:
        result = cli("backup", "-r", repo, source, "--exclude-file", exclude_file)

    assert result.exit_code == 0, result
    listed = cli("ls", "-r", repo, "latest", "--json").stdout
    assert "keep.txt" in listed
    assert "drop" not in listed


def test_a_source_path_and_tag_that_are_not_utf8_back_up_and_restore(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    source = tmp_path / os.fsdecode(b"caf\xe9")
    source.mkdir()
    (source / "menu.txt").write_bytes(b"soup")

    backed_up = cli("backup", "-r", repo, source, "--tag", os.fsdecode(b"t\xff"))
    assert backed_up.exit_code == 0, backed_up
    assert cli("check", "-r", repo).exit_code == 0

    target = tmp_path / "target"
    restored = cli("restore", "-r", repo, "latest", "-t", target, "--path", str(source))
    assert restored.exit_code == 0, restored
    assert (target / str(source).lstrip("/") / "menu.txt").read_bytes() == b"soup"


@pytest.mark.parametrize(
    "command",
    [
        ["dump", "latest", "FILE"],
        ["key", "export", "--out", "-", "--export-password-file", "PW", *CHEAPEST_KDF],
    ],
)
def test_a_full_disk_under_stdout_is_exit_20(
    tmp_path: Path, repo: Path, cli: Cli, command: list[str]
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(os.urandom(300_000))
    assert cli("backup", "-r", repo, source).exit_code == 0
    (tmp_path / "pw").write_text("export password\n")
    args = [
        str(source / "file") if a == "FILE" else str(tmp_path / "pw") if a == "PW" else a
        for a in command
    ]

    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "bbackup", *args, "-r", str(repo)],
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )

    assert proc.returncode == ExitCode.NO_SPACE, proc.stderr
    assert proc.stderr.splitlines() == ["bbackup: error: No space left on device"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-t", "GLACIER:99999999999"], "at most 2147483647 days"),
        (["--noncurrent-days", "99999999999"], "at most 2147483647 days"),
        (["-t", "GLACIER:-1"], "days cannot be negative"),
        (["-t", "FOO:30"], "no storage class FOO"),
        (["-t", "GLACIER"], "use CLASS:DAYS"),
        (["-t", "GLACIER:30", "-t", "GLACIER:90"], "GLACIER"),
    ],
)
def test_a_nonsense_lifecycle_ladder_is_a_usage_error(
    cli: Cli, flags: list[str], message: str
) -> None:
    refused(cli("lifecycle", "plan", "-r", "s3://bucket/repo", *flags), ExitCode.USAGE, message)


def test_a_crontab_holding_bytes_that_are_not_utf8_keeps_them_through_install_and_remove(
    tmp_path: Path, cli: Cli
) -> None:
    config = job_config(tmp_path, tmp_path / "repo", 'schedule = "daily 02:00"')
    crontab = tmp_path / "crontab"
    foreign = b"5 4 * * * root /usr/local/bin/caf\xe9 --night\n"
    crontab.write_bytes(foreign)
    cron = ["--cron", "--crontab-file", crontab, "-c", config]

    installed = cli("schedule", "install", *cron)
    assert installed.exit_code == 0, installed
    lines = crontab.read_bytes().splitlines(keepends=True)
    assert lines[0] == foreign and b"bbackup run j" in lines[1]

    removed = cli("schedule", "remove", *cron)
    assert removed.exit_code == 0, removed
    assert crontab.read_bytes() == foreign


def test_a_drill_reads_the_repositorys_trees_not_the_local_caches_copies(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(b"data" * 1000)
    assert cli("backup", "-r", repo, source).exit_code == 0
    assert cli("ls", "-r", repo, "latest").exit_code == 0  # the cache now holds every tree
    for tree_pack in (repo / "tree").rglob("*"):
        if tree_pack.is_file():
            tree_pack.write_bytes(tree_pack.read_bytes()[:20])

    drilled = cli("drill", "-r", repo, "--sample", "100%")

    assert drilled.exit_code == ExitCode.INTEGRITY, drilled
    assert "restore drill failed" in drilled.stdout


@pytest.mark.parametrize("archive", [[], ["--archive", "tar"]])
def test_dump_of_a_file_whose_pack_is_missing_is_an_integrity_error(
    tmp_path: Path, repo: Path, cli: Cli, archive: list[str]
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(os.urandom(5000))
    assert cli("backup", "-r", repo, source).exit_code == 0
    for pack in (repo / "data").rglob("*"):
        if pack.is_file():
            pack.unlink()

    dumped = cli("dump", "-r", repo, "--no-cache", *archive, "latest", source / "file")

    refused(dumped, ExitCode.INTEGRITY, "pack is missing")
