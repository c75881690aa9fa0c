"""Hooks: the output and exit code are kept for the report, and a hook that outlives its
time limit is killed together with what it started."""

from __future__ import annotations

import asyncio
import time

import pytest

from bbackup.service.hooks import OUTPUT_KEPT, run_hook


def test_a_hook_reports_its_exit_code_and_the_tail_of_its_output() -> None:
    result = asyncio.run(
        run_hook(
            "echo to stdout; echo to stderr >&2; echo $BBACKUP_JOB; exit 3",
            env={"BBACKUP_JOB": "docs"},
            timeout_seconds=10,
        )
    )
    assert (result.ok, result.exit_code) == (False, 3)
    assert result.output == "to stdout\nto stderr\ndocs\n"
    assert result.describe() == "exit code 3"
    long = asyncio.run(run_hook("head -c 10000 /dev/zero | tr '\\0' x", env={}, timeout_seconds=10))
    assert long.ok and len(long.output) == OUTPUT_KEPT


def test_a_hook_that_times_out_is_killed_with_its_children() -> None:
    started = time.monotonic()
    # The background sleep holds the output pipe open: unless it is killed too, reading
    # the hook's output would wait for it.
    result = asyncio.run(run_hook("echo begun; sleep 30 & sleep 30", env={}, timeout_seconds=0.3))
    assert time.monotonic() - started < 3
    assert result.timed_out and not result.ok
    assert result.describe() == "timed out"
    assert result.output == "begun\n"


def test_a_hook_gets_the_environment_but_no_repository_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BBACKUP_PASSWORD", "the-repository-password")
    monkeypatch.setenv("BBACKUP_FROM_PASSWORD", "the-source-password")
    monkeypatch.setenv("DUMP_DIR", "/var/backups/db")
    result = asyncio.run(run_hook("env", env={"BBACKUP_JOB": "docs"}, timeout_seconds=10))
    assert result.ok
    # A hook that prints its environment puts it in the report and the webhook body.
    assert "the-repository-password" not in result.output
    assert "the-source-password" not in result.output
    assert "DUMP_DIR=/var/backups/db" in result.output
    assert "BBACKUP_JOB=docs" in result.output
