"""Incremental backups: unchanged files are not read again; changed files are."""

from __future__ import annotations

import os
from pathlib import Path

from cli_harness import Cli, MakeTree, restored_path

FILES = {
    f"dir{d}": {f"file{i}.txt": f"directory {d} file {i}\n" * (i + 1) for i in range(10)}
    for d in range(3)
}
N = 30


def backup_summary(cli: Cli, repo: Path, src: Path) -> dict[str, int]:
    result = cli("backup", "-r", repo, "--json", src)
    assert result.exit_code == 0, result
    return result.event("summary")


def test_second_backup_of_an_unchanged_tree_reads_nothing(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", FILES)
    first = backup_summary(cli, repo, src)
    assert (first["files_new"], first["bytes_read"]) == (N, first["total_bytes"])

    second = backup_summary(cli, repo, src)

    assert second["files_unchanged"] == N
    assert (second["files_new"], second["files_changed"]) == (0, 0)
    assert second["bytes_read"] == 0
    assert second["parent"] == first["snapshot_id"]


def test_touching_one_file_rereads_only_that_file(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", FILES)
    backup_summary(cli, repo, src)
    touched = src / "dir1" / "file4.txt"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    summary = backup_summary(cli, repo, src)

    assert summary["files_changed"] == 1
    assert summary["files_unchanged"] == N - 1
    assert summary["bytes_read"] == st.st_size


def test_incremental_snapshot_restores_changed_and_unchanged_files(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", FILES)
    backup_summary(cli, repo, src)
    edited = src / "dir2" / "file0.txt"
    edited.write_text("DIRECTORY 2 FILE 0\n")  # same size as before: mtime and ctime tell
    (src / "dir0" / "new.txt").write_text("added later\n")

    summary = backup_summary(cli, repo, src)
    assert (summary["files_new"], summary["files_changed"]) == (1, 1)

    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, src)
    for path in src.rglob("*"):
        if path.is_file():
            assert (restored / path.relative_to(src)).read_bytes() == path.read_bytes(), path
    assert (restored / "dir2" / "file0.txt").read_text() == "DIRECTORY 2 FILE 0\n"


def test_a_metadata_only_change_is_in_the_next_snapshot_and_the_rest_is_reused(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", FILES)
    backup_summary(cli, repo, src)
    changed = src / "dir1" / "file3.txt"
    changed.chmod(0o600)  # same content, size and mtime: only the mode (and ctime) differ

    summary = backup_summary(cli, repo, src)

    # The new ctime gets the file re-read; its content is stored already, so only the
    # trees on the way to it are new (dir1, src and its parents).
    assert summary["files_unchanged"] == N - 1 and summary["bytes_read"] == changed.stat().st_size
    assert summary["bytes_added"] < 4096
    target = tmp_path / "restore"
    assert cli("restore", "latest", "-r", repo, "--target", target).exit_code == 0
    restored = restored_path(target, src)
    assert (restored / "dir1" / "file3.txt").stat().st_mode & 0o777 == 0o600
    for path in src.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode == (restored / path.relative_to(src)).stat().st_mode
