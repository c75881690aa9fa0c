"""Every flag that takes a duration reads the one grammar: a bad value is a usage error
(exit 2) on one line that names the flag and says what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_harness import Cli


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["prune", "--grace", "30m"], ["--grace:", "write '30min' for minutes or '30mo'"]),
        (["forget", "--keep-last", "1", "--grace", "2h30m"], ["--grace:", "'30min'"]),
        (["forget", "--keep-within", "1y2m"], ["--keep-within:", "'2mo' for months"]),
        (["forget", "--keep-within-daily", "3m"], ["--keep-within-daily:", "'3mo'"]),
        (["prune", "--grace", "1mo"], ["--grace:", "no fixed length", "'30d'"]),
        (["prune", "--grace", "24"], ["--grace:", "no unit after 24"]),
        (["forget", "--keep-within", "1.5d"], ["--keep-within:", "whole numbers only"]),
    ],
)
def test_bad_duration_is_a_one_line_usage_error_naming_the_flag(
    repo: Path, cli: Cli, args: list[str], needles: list[str]
) -> None:
    result = cli(*args, "-r", repo)

    assert result.exit_code == 2, result
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    for needle in needles:
        assert needle in lines[0], result


def test_keep_within_reads_months_as_mo(repo: Path, cli: Cli) -> None:
    result = cli("forget", "-r", repo, "--keep-within", "1y2mo", "--dry-run", "--json")

    assert result.exit_code == 0, result
    assert result.event("forget")["policy"] == "keep all snapshots within 1y2mo of the newest"


def test_grace_in_minutes_keeps_marked_packs_until_it_has_passed(
    tmp_path: Path, cli: Cli, repo: Path
) -> None:
    src = tmp_path / "src"
    for content in (b"first version " * 1000, b"second version " * 1000):
        src.mkdir(exist_ok=True)
        (src / "file").write_bytes(content)
        assert cli("backup", "-r", repo, src).exit_code == 0
    assert cli("forget", "-r", repo, "--keep-last", "1").exit_code == 0
    assert cli("prune", "-r", repo, "--max-unused", "0%").exit_code == 0

    def prune_actions(grace: str) -> set[str]:
        result = cli("prune", "-r", repo, "--max-unused", "0%", "--grace", grace, "--json")
        assert result.exit_code == 0, result
        return {d["action"] for d in result.event("prune")["decisions"]}

    assert "keep-marked" in prune_actions("90min")
    assert "keep-marked" in prune_actions("1d12h")
    assert "delete" in prune_actions("0s")
