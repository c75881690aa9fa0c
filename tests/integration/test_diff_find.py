"""`diff` and `find` on a repository with a known history: exact changes, counts and
bytes; which snapshots hold which paths; a pattern that matches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree
from history_harness import History, make_history, ok


@pytest.fixture
def history(tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree) -> History:
    return make_history(tmp_path, repo, cli, make_tree)


def test_diff_lists_added_removed_and_changed_paths_with_bytes(history: History, cli: Cli) -> None:
    result = ok(cli("diff", "-r", history.repo, "--json", history.first[:8], "latest"))

    changes = [(e["modifier"], e["path"]) for e in result.events() if e["event"] == "change"]
    assert changes == [
        ("M", history.path("a.txt")),
        ("+", history.path("docs/new.pdf")),
        ("-", history.path("docs/notes.txt")),
        ("+", history.path("extra")),
        ("+", history.path("extra/x.bin")),
    ]
    totals = result.event("diff")
    assert (totals["source_snapshot"], totals["target_snapshot"]) == (
        history.first,
        history.second,
    )
    assert totals["changed_files"] == 1
    new_content = len("alpha, changed\n") + len("pdf two!\n") + 3
    assert totals["added"] | {"tree_blobs": None} == {
        "files": 2, "dirs": 1, "others": 0, "data_blobs": 3, "tree_blobs": None,
        "bytes": new_content,
    }  # fmt: skip
    assert totals["removed"]["files"] == 1
    assert totals["removed"]["data_blobs"] == 2
    assert totals["removed"]["bytes"] == len("alpha\n") + len("notes\n")
    # The unchanged directory keep/ is neither listed nor counted.
    assert not any("keep" in path for _, path in changes)


def test_diff_human_output_marks_directories_and_prints_totals(history: History, cli: Cli) -> None:
    result = ok(cli("diff", "-r", history.repo, history.first, history.second))

    assert f"comparing snapshot {history.first[:8]} to {history.second[:8]}:" in result.stdout
    assert f"+    {history.path('extra')}/\n" in result.stdout
    assert f"M    {history.path('a.txt')}\n" in result.stdout
    assert "Files:          2 new,     1 removed,     1 changed" in result.stdout


def test_diff_of_a_snapshot_with_itself_is_empty(history: History, cli: Cli) -> None:
    result = ok(cli("diff", "-r", history.repo, "--json", history.second, "latest"))

    assert [e for e in result.events() if e["event"] == "change"] == []
    assert result.event("diff")["added"]["bytes"] == 0


def test_diff_metadata_reports_a_touched_file(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"f": "same content\n", "g": "other\n"})
    first = ok(cli("backup", "-r", repo, "--json", src)).event("summary")["snapshot_id"]
    (src / "f").chmod(0o600)
    second = ok(cli("backup", "-r", repo, "--json", src)).event("summary")["snapshot_id"]
    f = str((src / "f").absolute())

    plain = ok(cli("diff", "-r", repo, "--json", first, second))
    detailed = ok(cli("diff", "-r", repo, "--json", "--metadata", first, second))

    assert [e for e in plain.events() if e["event"] == "change"] == []
    assert {"event": "change", "path": f, "modifier": "U", "type": "file",
            "size_before": 13, "size_after": 13} in detailed.events()  # fmt: skip


def test_diff_of_an_unknown_snapshot_says_so(history: History, cli: Cli) -> None:
    result = cli("diff", "-r", history.repo, history.first, "deadbeef")

    assert result.exit_code == 1
    assert "no snapshot matches 'deadbeef'" in result.stderr


def test_find_names_the_snapshots_that_hold_matching_files(history: History, cli: Cli) -> None:
    result = ok(cli("find", "-r", history.repo, "--json", "*.pdf"))

    found = {e["snapshot"]: e for e in result.events() if e["event"] == "found"}
    assert list(found) == [history.first, history.second]
    assert [m["path"] for m in found[history.first]["matches"]] == [history.path("docs/report.pdf")]
    second = found[history.second]
    assert [(m["path"], m["size"], m["mtime_ns"]) for m in second["matches"]] == [
        (history.path("docs/new.pdf"), 9, 1_748_736_000 * 10**9),
        (history.path("docs/report.pdf"), 8, 1_577_836_800 * 10**9),
    ]
    assert second["time"] == "2026-02-01T00:00:00+00:00"
    assert second["hits"] == 2


def test_find_a_file_only_the_first_snapshot_holds(history: History, cli: Cli) -> None:
    result = ok(cli("find", "-r", history.repo, "notes.txt"))

    assert result.stdout == (
        f"Found matching entries in snapshot {history.first[:8]} from 2026-01-01 00:00:00\n"
        f"{history.path('docs/notes.txt')}\n\n"
    )


def test_find_full_path_pattern_ignore_case_and_snapshot_choice(history: History, cli: Cli) -> None:
    full = ok(cli("find", "-r", history.repo, "--json", history.path("docs") + "/*"))
    upper = ok(cli("find", "-r", history.repo, "--json", "-i", "--snapshot", "latest", "NEW.PDF"))
    exact_case = cli("find", "-r", history.repo, "NEW.PDF")

    first = next(e for e in full.events() if e["event"] == "found")
    assert [m["path"] for m in first["matches"]] == [
        history.path("docs/notes.txt"),
        history.path("docs/report.pdf"),
    ]
    assert [(e["snapshot"], e["hits"]) for e in upper.events() if e["event"] == "found"] == [
        (history.second, 1)
    ]
    assert exact_case.exit_code == 21


def test_find_oldest_and_newest_filter_by_modification_time(history: History, cli: Cli) -> None:
    recent = ok(cli("find", "-r", history.repo, "--json", "*.pdf", "--oldest", "2024-01-01"))
    old = ok(cli("find", "-r", history.repo, "--json", "*.pdf", "--newest", "2021-01-01"))

    def paths(result: CliResult) -> set[str]:
        return {m["path"] for e in result.events() if e["event"] == "found" for m in e["matches"]}

    assert paths(recent) == {history.path("docs/new.pdf")}
    assert paths(old) == {history.path("docs/report.pdf")}


def test_find_a_pattern_matching_nothing_warns_and_exits_21(history: History, cli: Cli) -> None:
    result = cli("find", "-r", history.repo, "*.pdf", "*.docx")

    assert result.exit_code == 21
    assert history.path("docs/report.pdf") in result.stdout  # the other pattern's matches
    assert "warning: pattern '*.docx' matches nothing" in result.stderr
    assert "1 of 2 patterns matched nothing" in result.stderr


def test_find_bad_time_is_a_usage_error(history: History, cli: Cli) -> None:
    result = cli("find", "-r", history.repo, "*.pdf", "--newest", "yesterday")

    assert result.exit_code == 2
    assert "--newest 'yesterday': use ISO 8601" in result.stderr


def test_find_an_empty_time_window_is_a_usage_error(history: History, cli: Cli) -> None:
    result = cli(
        "find", "-r", history.repo, "*", "--oldest", "2026-01-02", "--newest", "2026-01-01"
    )

    assert result.exit_code == 2
    assert "--oldest 2026-01-02 is after --newest 2026-01-01" in result.stderr
