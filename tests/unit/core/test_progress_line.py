"""The progress a person reads on a terminal: totals, percentage, rate and ETA, and no
estimate while the totals are still being counted."""

from __future__ import annotations

import pytest

from bbackup.cli.progress import format_status, progress_interval, with_estimates
from bbackup.errors import UsageError

MiB = 1024 * 1024


def test_backup_line_shows_totals_percentage_rate_and_eta() -> None:
    line = format_status(
        "backup",
        {"files": 10, "files_total": 40, "bytes": 25 * MiB, "bytes_total": 100 * MiB,
         "seconds": 5.0, "totals_final": True},
    )  # fmt: skip

    assert line.split("  ") == [
        "backup:",
        "10 / 40 files",
        "25.00 MiB / 100.00 MiB",
        "25%",
        "5.00 MiB/s",
        "ETA 00:00:15",
    ]


def test_no_eta_while_the_totals_scan_is_still_counting() -> None:
    values = with_estimates({"bytes": 10, "bytes_total": 20, "seconds": 1.0, "totals_final": False})

    assert values["percent_done"] == 0.5
    assert values["seconds_remaining"] is None


def test_check_progress_counts_packs() -> None:
    values = with_estimates({"packs": 3, "packs_total": 12, "bytes": 0, "seconds": 3.0})

    assert values["percent_done"] == 0.25
    assert values["seconds_remaining"] == 9.0
    assert "3 / 12 packs" in format_status("check", values)


def test_progress_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BBACKUP_PROGRESS_SECONDS", raising=False)
    assert (progress_interval(as_json=True), progress_interval(as_json=False)) == (2.0, 0.25)
    monkeypatch.setenv("BBACKUP_PROGRESS_SECONDS", "0.5")
    assert progress_interval(as_json=True) == 0.5
    monkeypatch.setenv("BBACKUP_PROGRESS_SECONDS", "never")
    with pytest.raises(UsageError, match="BBACKUP_PROGRESS_SECONDS"):
        progress_interval(as_json=True)
