"""Small files are read in batches: every file of a batch is stored, and one that cannot
be read is reported without losing the others."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
import threading
from pathlib import Path

import pytest
from cli_harness import Cli, FailReading, restored_path

import bbackup.ops.file_open
from bbackup.ops.file_open import PREFETCH_FILES, prefetch_window


def make_small_files(src: Path) -> dict[str, bytes]:
    files = {}
    for d, count in (("many", 150), ("few", 3), ("many/deeper", 70)):
        (src / d).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            content = os.urandom(i * 37) if i % 2 else b"text %d\n" % i * (i + 1)
            (src / d / f"f{i:03}").write_bytes(content)
            files[f"{d}/f{i:03}"] = content
    return files


def assert_restored_except(
    cli: Cli, repo: Path, tmp_path: Path, src: Path, files: dict[str, bytes], missing: set[str]
) -> None:
    """The latest snapshot restores every file of `files` byte for byte but `missing`,
    which it does not have."""
    target = tmp_path / "out"
    assert cli("restore", "-r", repo, "latest", "--target", target).exit_code == 0
    root = restored_path(target, src)
    for rel, content in files.items():
        assert (root / rel).exists() == (rel not in missing), rel
        if rel not in missing:
            assert (root / rel).read_bytes() == content, rel


def test_many_small_files_back_up_and_restore_in_batches(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    src = tmp_path / "src"
    files = make_small_files(src)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 0, result
    assert result.event("summary")["files_new"] == len(files)
    assert_restored_except(cli, repo, tmp_path, src, files, set())


def test_an_unreadable_small_file_is_reported_and_its_batch_is_stored(
    tmp_path: Path, repo: Path, cli: Cli, fail_reading: FailReading
) -> None:
    src = tmp_path / "src"
    files = make_small_files(src)
    bad = os.fsencode(src / "many" / "f042")
    fail_reading(src / "many" / "f042", PermissionError(13, "Permission denied"))

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 3, result  # partial: a file could not be read
    summary = result.event("summary")
    assert summary["files_new"] == len(files) - 1
    assert [e["path"] for e in summary["error_list"]] == [os.fsdecode(bad)]
    assert_restored_except(cli, repo, tmp_path, src, files, {"many/f042"})


def test_a_fifo_swapped_in_for_a_file_after_the_walk_is_reported_not_waited_on(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A FIFO opened for reading waits for a writer: the backup must name the file, not
    # hang. The swap happens just before the reader opens the file, after the walk saw a
    # regular file there.
    src = tmp_path / "src"
    files = make_small_files(src)
    swapped = os.fsencode(src / "many" / "f007")
    real_open = bbackup.ops.file_open._open_for_reading

    def swap_then_open(path: bytes) -> int:
        if path == swapped and not stat.S_ISFIFO(os.lstat(path).st_mode):
            os.unlink(path)
            os.mkfifo(path)
        return real_open(path)

    monkeypatch.setattr(bbackup.ops.file_open, "_open_for_reading", swap_then_open)
    # Should the reader wait on the FIFO after all, a writer comes after 20 s and lets it
    # go on (reading nothing), so that the test fails below instead of hanging.
    rescue = threading.Timer(20, _open_for_writing, (swapped,))
    rescue.start()
    try:
        result = cli("backup", "-r", repo, "--json", src)
    finally:
        rescue.cancel()

    assert result.exit_code == 3, result  # partial: a file could not be read
    summary = result.event("summary")
    assert summary["error_list"] == [
        {"path": os.fsdecode(swapped), "message": "cannot read: no longer a regular file"}
    ]
    assert summary["files_new"] == len(files) - 1
    assert_restored_except(cli, repo, tmp_path, src, files, {"many/f007"})


def _open_for_writing(path: bytes) -> None:
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_files_that_vanish_while_their_batch_is_read_ahead_leave_the_rest_stored(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader opens files of its batch ahead of the one it reads: one that vanished
    # before its turn, among those opened ahead, costs only itself.
    src = tmp_path / "src"
    files = make_small_files(src)
    gone = {f"many/f{i:03}" for i in (3, 4, 5, 20, 149)}
    gone_paths = {os.fsencode(src / rel) for rel in gone}
    real_open = bbackup.ops.file_open._open_for_reading

    def vanish_then_open(path: bytes) -> int:
        if path in gone_paths and os.path.lexists(path):
            os.unlink(path)
        return real_open(path)

    monkeypatch.setattr(bbackup.ops.file_open, "_open_for_reading", vanish_then_open)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 3, result
    summary = result.event("summary")
    assert sorted(e["path"] for e in summary["error_list"]) == sorted(
        os.fsdecode(p) for p in gone_paths
    )
    assert {e["message"] for e in summary["error_list"]} == {"vanished before it could be read"}
    assert summary["files_new"] == len(files) - len(gone)
    assert_restored_except(cli, repo, tmp_path, src, files, gone)


def test_descriptors_running_out_while_opening_ahead_cost_no_file(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file the reader could not open ahead for lack of descriptors is opened at its
    # turn: it is stored, not reported unreadable.
    src = tmp_path / "src"
    files = make_small_files(src)
    refused: set[bytes] = set()
    real_open = bbackup.ops.file_open._open_for_reading

    def out_of_descriptors_once(path: bytes) -> int:
        if path.endswith((b"0", b"5")) and path not in refused:
            refused.add(path)
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path)

    monkeypatch.setattr(bbackup.ops.file_open, "_open_for_reading", out_of_descriptors_once)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 0, result
    assert result.event("summary")["files_new"] == len(files)
    assert len(refused) > 20
    assert_restored_except(cli, repo, tmp_path, src, files, set())


@pytest.mark.parametrize(
    ("limit", "workers", "window"),
    [(1024, 2, PREFETCH_FILES), (64, 2, 7), (16, 8, 0), (resource.RLIM_INFINITY, 64, 16)],
)
def test_files_opened_ahead_stay_within_a_quarter_of_the_descriptor_limit(
    monkeypatch: pytest.MonkeyPatch, limit: int, workers: int, window: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limit, resource.RLIM_INFINITY))

    assert prefetch_window(workers) == window
    assert limit == resource.RLIM_INFINITY or workers * (window + 1) <= max(limit // 4, workers)
