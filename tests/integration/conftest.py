"""Fixtures for end-to-end CLI tests: an in-process runner, a repository initialised on
local disk, and a builder for source trees. Plain helpers live in cli_harness.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, CliResult, FailReading, MakeTree, Spec
from typer.testing import CliRunner

import bbackup.ops.file_open
from bbackup.cli.app import app


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    """The repository password, given the way scripts give it: BBACKUP_PASSWORD."""
    monkeypatch.setenv("BBACKUP_PASSWORD", PASSWORD)
    return PASSWORD


@pytest.fixture
def cli(password: str) -> Cli:
    """Run bbackup in-process; an exception that escapes the CLI fails the test."""
    runner = CliRunner()

    def run(*args: str | os.PathLike[str]) -> CliResult:
        result = runner.invoke(app, [os.fspath(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def repo(tmp_path: Path, cli: Cli) -> Path:
    """An initialised repository in a local directory."""
    path = tmp_path / "repo"
    result = cli("init", "-r", path)
    assert result.exit_code == 0, result
    return path


@pytest.fixture
def make_tree() -> MakeTree:
    """Build a tree from {name: bytes | str (file), dict (directory), None (empty dir)}."""

    def build(root: Path, spec: Spec) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for name, value in spec.items():
            path = root / name
            if value is None:
                path.mkdir()
            elif isinstance(value, dict):
                build(path, value)
            elif isinstance(value, str):
                path.write_text(value)
            else:
                path.write_bytes(value)
        return root

    return build


@pytest.fixture
def fail_reading(monkeypatch: pytest.MonkeyPatch) -> FailReading:
    """Make the backup's opening of one source file raise the given error."""

    def fail(path: Path, error: OSError) -> None:
        bad = os.fsencode(path)
        real_open = bbackup.ops.file_open._open_for_reading

        def open_for_reading(name: bytes) -> int:
            if name == bad:
                raise error
            return real_open(name)

        monkeypatch.setattr(bbackup.ops.file_open, "_open_for_reading", open_for_reading)

    return fail
