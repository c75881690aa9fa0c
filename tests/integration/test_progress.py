"""Feedback while a command runs: `status` events under --json carry totals, percentage,
rate and ETA (backup learns its totals from a scan running ahead); nothing is written to a
non-terminal unless asked; --quiet leaves errors only; a full backup reports files as new,
changed or unmodified against the latest snapshot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, MakeTree

FILES = 24
FILE_SIZE = 256 * 1024


@pytest.fixture
def often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A progress report every millisecond, so that even a short run sends several."""
    monkeypatch.setenv("BBACKUP_PROGRESS_SECONDS", "0.001")


@pytest.fixture
def src(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(
        tmp_path / "src", {f"f{i:02}.bin": os.urandom(FILE_SIZE) for i in range(FILES)}
    )


def statuses(events: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    found = [e for e in events if e.get("event") == "status" and e.get("action") == action]
    assert found, f"no {action} status events in {events}"
    return found


def assert_estimates(event: dict[str, Any]) -> None:
    assert 0.0 <= event["percent_done"] <= 1.0
    assert isinstance(event["bytes_per_second"], int) and event["bytes_per_second"] >= 0
    assert event["seconds_remaining"] is None or event["seconds_remaining"] >= 0
    assert event["seconds"] >= 0


def test_backup_status_events_carry_totals_from_the_scan(
    often: None, cli: Cli, repo: Path, src: Path
) -> None:
    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 0, result
    final = [e for e in statuses(result.events(), "backup") if e["totals_final"]]
    assert final, result
    for event in final:
        assert (event["files_total"], event["bytes_total"]) == (FILES, FILES * FILE_SIZE)
        assert event["files"] <= FILES and event["bytes"] <= FILES * FILE_SIZE
        assert_estimates(event)
    assert result.events()[-1]["event"] == "summary"


def test_restore_and_check_status_events_carry_totals(
    often: None, tmp_path: Path, cli: Cli, repo: Path, src: Path
) -> None:
    assert cli("backup", "-r", repo, src).exit_code == 0

    restored = cli("restore", "-r", repo, "latest", "--target", tmp_path / "out", "--json")
    checked = cli("check", "-r", repo, "--read-data", "--json")

    assert restored.exit_code == 0 and checked.exit_code == 0, (restored, checked)
    # Events while the restore still plans carry no total; once it is known, it is final.
    events = statuses(restored.events(), "restore")
    for event in events:
        assert event.get("bytes_total", FILES * FILE_SIZE) == FILES * FILE_SIZE, event
        assert event.get("files_total", FILES) == FILES, event
        assert event["files"] <= FILES, event  # files written so far, not files planned
        if "bytes_total" in event:
            assert_estimates(event)
    assert any("files_total" in event for event in events)
    packs = checked.event("check")["packs"]
    for event in statuses(checked.events(), "check"):
        assert event["packs_total"] == packs and event["packs"] <= packs
        assert_estimates(event)


def test_without_a_terminal_or_json_no_progress_is_written(
    often: None, cli: Cli, repo: Path, src: Path
) -> None:
    result = cli("backup", "-r", repo, src)

    assert result.exit_code == 0, result
    assert result.stderr == ""
    assert "status" not in result.stdout and "ETA" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith("snapshot ")


def test_quiet_leaves_nothing_but_errors(
    often: None, tmp_path: Path, cli: Cli, repo: Path, src: Path
) -> None:
    quiet = cli("backup", "-r", repo, "--quiet", src)
    failed = cli("backup", "-r", repo, "-q", tmp_path / "missing")

    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert failed.exit_code == 1 and failed.stdout == ""
    assert "missing" in failed.stderr


def test_full_backup_reports_new_changed_and_unmodified_against_the_latest(
    cli: Cli, repo: Path, src: Path
) -> None:
    assert cli("backup", "-r", repo, src).exit_code == 0
    (src / "f00.bin").write_bytes(b"changed")
    (src / "new.txt").write_text("new")

    full = cli("backup", "-r", repo, "--type", "full", "--json", src).event("summary")

    assert (full["files_new"], full["files_changed"], full["files_unchanged"]) == (
        1,
        1,
        FILES - 1,
    )
    assert full["bytes_read"] == full["total_bytes"]  # a full backup reads every file
