"""Small files are read in batches: every file of a batch is stored, and one that cannot
be read is reported without losing the others."""

from __future__ import annotations

import os
from pathlib import Path

from cli_harness import Cli, FailReading, restored_path


def make_small_files(src: Path) -> dict[str, bytes]:
    files = {}
    for d, count in (("many", 150), ("few", 3), ("many/deeper", 70)):
        (src / d).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            content = os.urandom(i * 37) if i % 2 else b"text %d\n" % i * (i + 1)
            (src / d / f"f{i:03}").write_bytes(content)
            files[f"{d}/f{i:03}"] = content
    return files


def test_many_small_files_back_up_and_restore_in_batches(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    src = tmp_path / "src"
    files = make_small_files(src)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 0, result
    assert result.event("summary")["files_new"] == len(files)
    target = tmp_path / "out"
    assert cli("restore", "-r", repo, "latest", "--target", target).exit_code == 0
    root = restored_path(target, src)
    for rel, content in files.items():
        assert (root / rel).read_bytes() == content, rel


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
    target = tmp_path / "out"
    assert cli("restore", "-r", repo, "latest", "--target", target).exit_code == 0
    root = restored_path(target, src)
    assert not (root / "many" / "f042").exists()
    for rel, content in files.items():
        if rel != "many/f042":
            assert (root / rel).read_bytes() == content, rel
