"""Listing snapshots and their files, and choosing which snapshot to restore."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, MakeTree, restored_path


def snapshots(cli: Cli, repo: Path, *args: str) -> list[dict[str, Any]]:
    result = cli("snapshots", "-r", repo, "--json", *args)
    assert result.exit_code == 0, result
    listed: list[dict[str, Any]] = result.snapshot_list()
    return listed


def backup(cli: Cli, repo: Path, *args: str | os.PathLike[str]) -> str:
    result = cli("backup", "-r", repo, "--json", *args)
    assert result.exit_code == 0, result
    snapshot_id: str = result.event("summary")["snapshot_id"]
    return snapshot_id


def test_snapshots_json_lists_every_snapshot_oldest_first(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})
    first = backup(cli, repo, src)
    (src / "a.txt").write_text("changed\n")
    second = backup(cli, repo, src)

    listed = snapshots(cli, repo)

    assert [s["id"] for s in listed] == [first, second]
    assert all((repo / "snapshots" / s["id"]).is_file() for s in listed)
    assert listed[1]["parent"] == first
    assert listed[0]["paths"] == [os.path.abspath(src)]


def test_ls_json_lists_every_path_in_the_snapshot(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(
        tmp_path / "src", {"a.txt": "a\n", "sub": {"b.txt": "bb\n", "deep": {"c": "c"}}, "e": None}
    )
    os.symlink("a.txt", src / "link")
    backup(cli, repo, src)
    root = os.path.abspath(src)

    result = cli("ls", "latest", "-r", repo, "--json")
    assert result.exit_code == 0, result
    listed = {e["path"]: e for e in result.events()}

    below = {p for p in listed if p == root or p.startswith(root + "/")}
    expected = {root} | {os.path.join(root, p) for p in ("a.txt", "sub", "sub/b.txt", "sub/deep")}
    expected |= {os.path.join(root, p) for p in ("sub/deep/c", "e", "link")}
    assert below == expected
    assert listed[os.path.join(root, "sub/b.txt")]["size"] == 3
    assert listed[os.path.join(root, "link")]["link_target"] == "a.txt"
    assert listed[os.path.join(root, "sub")]["type"] == "dir"

    only_sub = cli("ls", "latest", os.path.join(root, "sub"), "-r", repo, "--json")
    assert only_sub.exit_code == 0, only_sub
    assert {e["path"] for e in only_sub.events()} == {
        os.path.join(root, p) for p in ("sub", "sub/b.txt", "sub/deep", "sub/deep/c")
    }


def test_backup_time_option_is_recorded(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})

    backup(cli, repo, "--time", "2020-01-02T03:04:05+00:00", src)

    [snap] = snapshots(cli, repo)
    assert snap["time"] == "2020-01-02T03:04:05+00:00"


def test_backup_time_option_rejects_a_non_iso_time(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})

    result = cli("backup", "-r", repo, "--time", "yesterday", src)

    assert result.exit_code == 2, result
    assert snapshots(cli, repo) == []


@pytest.fixture
def three_versions(tmp_path: Path, repo: Path, cli: Cli) -> tuple[Path, dict[str, str]]:
    """One file backed up three times: by host h1 in 2020, h2 in 2021, and (made last but
    dated earliest) h1 in 2019, each with its own tag and content."""
    src = tmp_path / "src"
    src.mkdir()
    ids = {}
    for content, host, tag, when in [
        ("v1 from h1 in 2020\n", "h1", "t1", "2020-06-01T00:00:00+00:00"),
        ("v2 from h2 in 2021, the latest\n", "h2", "t2", "2021-06-01T00:00:00+00:00"),
        ("v3 from h1 dated 2019, made last\n", "h1", "t3", "2019-06-01T00:00:00+00:00"),
    ]:
        (src / "file.txt").write_text(content)
        ids[content] = backup(cli, repo, "--host", host, "--tag", tag, "--time", when, src)
    return src, ids


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (["latest"], "v2 from h2 in 2021, the latest\n"),
        (["latest", "--host", "h1"], "v1 from h1 in 2020\n"),
        (["latest", "--tag", "t3"], "v3 from h1 dated 2019, made last\n"),
        (["latest", "--host", "h2", "--tag", "t2"], "v2 from h2 in 2021, the latest\n"),
        (["PREFIX"], "v3 from h1 dated 2019, made last\n"),
    ],
    ids=["latest", "host", "tag", "host-and-tag", "id-prefix"],
)
def test_restore_selects_the_snapshot_by_reference_and_filters(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    three_versions: tuple[Path, dict[str, str]],
    selection: list[str],
    expected: str,
) -> None:
    src, ids = three_versions
    if selection == ["PREFIX"]:
        selection = [ids[expected][:8]]
    target = tmp_path / "restore"

    result = cli("restore", *selection, "-r", repo, "--target", target)

    assert result.exit_code == 0, result
    assert (restored_path(target, src) / "file.txt").read_text() == expected


@pytest.mark.parametrize(
    "selection",
    [["0000000000"], ["latest", "--host", "nobody"], ["latest", "--tag", "t1", "--host", "h2"]],
    ids=["unknown-prefix", "unknown-host", "no-match"],
)
def test_restore_of_no_matching_snapshot_fails_and_writes_nothing(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    three_versions: tuple[Path, dict[str, str]],
    selection: list[str],
) -> None:
    target = tmp_path / "restore"

    result = cli("restore", *selection, "-r", repo, "--target", target)

    assert result.exit_code == 1, result
    assert "no snapshot matches" in result.stderr
    assert not target.exists() or not any(target.iterdir())
