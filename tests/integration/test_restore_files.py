"""Restore writes: files whose blobs come from many reads and packs, blobs that go to many
places, restoring over what is already there, and what a failed restore leaves behind."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, restored_path

from bbackup.errors import ExitCode
from bbackup.ops import restore_files, restore_target
from bbackup.ops.restore import Restorer
from bbackup.ops.restore_report import RestoreSummary
from bbackup.repository import open_repository
from bbackup.snapshot.store import find_snapshot, load_snapshots
from bbackup.storage import open_storage

MiB = 1024 * 1024


def file_states(root: Path) -> dict[str, tuple[bytes, str, int, int]]:
    """Every regular file under `root`: content, mode, mtime in ns, inode link count."""
    states = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            mode = oct(stat.S_IMODE(st.st_mode))
            rel = str(path.relative_to(root))
            states[rel] = (path.read_bytes(), mode, st.st_mtime_ns, st.st_nlink)
    return states


def many_blob_tree(src: Path, make_tree: MakeTree) -> Path:
    """Multi-blob files (several packs at 4 MiB a pack), blobs shared within and between
    files, a read-only file, a hard-linked multi-blob file and an empty file."""
    block = os.urandom(2 * MiB)
    big = os.urandom(9 * MiB)
    make_tree(
        src,
        {
            "big.bin": big,
            "repeats.bin": block + block + block + b"tail",
            "copies": {"big-copy.bin": big, "small.txt": "small\n"},
            "read-only.bin": os.urandom(3 * MiB),
            "linked.bin": os.urandom(3 * MiB),
            "empty": b"",
        },
    )
    os.link(src / "linked.bin", src / "copies" / "linked-too.bin")
    os.chmod(src / "read-only.bin", 0o400)
    os.chmod(src / "copies", 0o750)
    for i, path in enumerate(sorted(src.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i))
    return src


def restore(
    repo: Path, cache: Path, target: Path, *, read_size: int | None = None
) -> RestoreSummary:
    async def main() -> RestoreSummary:
        stack = open_storage(str(repo))
        try:
            opened = await open_repository(stack, PASSWORD, cache_root=cache)
            snapshot = find_snapshot(await load_snapshots(opened), "latest")
            return await Restorer(opened, snapshot, str(target), read_size=read_size).run()
        finally:
            await stack.storage.aclose()

    return asyncio.run(main())


@pytest.fixture
def small_packs(tmp_path: Path, cli: Cli) -> Path:
    path = tmp_path / "repo"
    assert cli("init", "-r", path, "--pack-size", "4").exit_code == 0
    return path


@pytest.mark.parametrize("read_size", [None, 1, 3 * MiB])
def test_files_from_many_reads_and_packs_restore_byte_and_metadata_identical(
    tmp_path: Path,
    small_packs: Path,
    cli: Cli,
    make_tree: MakeTree,
    monkeypatch: pytest.MonkeyPatch,
    read_size: int | None,
) -> None:
    src = many_blob_tree(tmp_path / "src", make_tree)
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    assert len(list((small_packs / "data").glob("*/*"))) >= 4
    # One file kept open at most: the others are closed and opened again between writes.
    monkeypatch.setattr(restore_files, "MAX_OPEN_FILES", 1)

    summary = restore(small_packs, tmp_path / "cache", tmp_path / "out", read_size=read_size)

    assert summary.errors == 0, summary.error_list
    restored = restored_path(tmp_path / "out", src)
    assert file_states(restored) == file_states(src)
    assert os.stat(restored / "copies").st_mode & 0o7777 == 0o750
    linked = restored / "linked.bin", restored / "copies" / "linked-too.bin"
    assert linked[0].stat().st_ino == linked[1].stat().st_ino
    # Every place a blob goes counts, shared or not.
    assert summary.bytes == sum(len(c) for c, *_ in file_states(src).values()) - 3 * MiB
    assert summary.files == 7 and summary.links == 1


def test_directories_closed_and_opened_again_between_writes_restore_identical(
    tmp_path: Path,
    small_packs: Path,
    cli: Cli,
    make_tree: MakeTree,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Files of many directories share packs, so their writes interleave; with one idle
    # directory descriptor kept, most opens walk down again from an open ancestor.
    shared = os.urandom(MiB)
    spec: dict[str, object] = {}
    for i in range(6):
        spec[f"d{i}"] = {
            "deeper": {"a.bin": os.urandom(700 * 1024), "shared.bin": shared},
            "b.txt": f"file {i}\n",
            "empty": b"",
        }
    src = make_tree(tmp_path / "src", spec)  # type: ignore[arg-type]
    os.link(src / "d0" / "deeper" / "a.bin", src / "d5" / "linked.bin")
    for i, path in enumerate(sorted(src.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i))
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    monkeypatch.setattr(restore_files, "MAX_OPEN_FILES", 1)
    monkeypatch.setattr(restore_target, "MAX_OPEN_DIRECTORIES", 1)
    before = set(os.listdir("/proc/self/fd"))

    summary = restore(small_packs, tmp_path / "cache", tmp_path / "out", read_size=MiB)

    assert summary.errors == 0, summary.error_list
    restored = restored_path(tmp_path / "out", src)
    assert file_states(restored) == file_states(src)
    dirs = [p.relative_to(src) for p in src.rglob("*") if p.is_dir()]
    assert [os.stat(restored / d).st_mtime_ns for d in dirs] == [
        os.stat(src / d).st_mtime_ns for d in dirs
    ]
    assert set(os.listdir("/proc/self/fd")) <= before


def test_restore_over_an_earlier_restore_replaces_every_file(
    tmp_path: Path, small_packs: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = many_blob_tree(tmp_path / "src", make_tree)
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    target = tmp_path / "out"
    assert cli("restore", "latest", "-r", small_packs, "--target", target).exit_code == 0
    restored = restored_path(target, src)
    with (restored / "big.bin").open("ab") as f:
        f.write(b"longer than it was")
    (restored / "copies" / "small.txt").write_text("changed and much longer than before\n")
    (restored / "empty").write_text("no longer empty\n")

    again = cli("restore", "latest", "-r", small_packs, "--target", target)

    assert again.exit_code == 0, again
    assert file_states(restored) == file_states(src)


def test_a_path_that_cannot_be_written_is_reported_and_the_rest_is_restored(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "alpha\n", "b.bin": os.urandom(MiB)})
    assert cli("backup", "-r", repo, src).exit_code == 0
    target = tmp_path / "out"
    blocker = restored_path(target, src) / "b.bin"
    (blocker / "inside").mkdir(parents=True)  # a non-empty directory where a file goes

    result = cli("restore", "latest", "-r", repo, "--target", target)

    assert result.exit_code == 1, result
    assert "b.bin: cannot create: a non-empty directory is in the way" in result.stderr
    assert "Traceback" not in result.output
    assert (restored_path(target, src) / "a.txt").read_text() == "alpha\n"


def test_a_restore_past_a_damaged_pack_leaves_no_file_open(
    tmp_path: Path, small_packs: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = many_blob_tree(tmp_path / "src", make_tree)
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    packs = sorted(small_packs.glob("data/*/*"), key=lambda p: p.stat().st_mtime_ns)
    with packs[-1].open("r+b") as f:  # part of big.bin or of a file after it
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 1]))
    before = set(os.listdir("/proc/self/fd"))

    summary = restore(small_packs, tmp_path / "cache", tmp_path / "out", read_size=MiB)

    assert summary.damaged and summary.integrity_failed
    assert set(os.listdir("/proc/self/fd")) <= before


def test_set_id_bits_and_ownership_come_back_together(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"setuid": os.urandom(2 * MiB), "setgid": "#!/bin/sh\n", "plain": "plain\n"},
    )
    os.chmod(src / "setuid", 0o4755)
    os.chmod(src / "setgid", 0o2750)
    os.chmod(src / "plain", 0o604)
    if os.geteuid() == 0:  # chown after chmod would clear the set-id bits
        os.chown(src / "setuid", 4321, 8765)
        os.chown(src / "setgid", 0, 8765)
    assert cli("backup", "-r", repo, src).exit_code == 0
    old_umask = os.umask(0o077)  # a strict umask must not change restored modes
    try:
        result = cli("restore", "latest", "-r", repo, "--target", tmp_path / "out")
    finally:
        os.umask(old_umask)

    assert result.exit_code == 0, result
    restored = restored_path(tmp_path / "out", src)
    for name in ("setuid", "setgid", "plain"):
        want, got = os.stat(src / name), os.stat(restored / name)
        assert (oct(got.st_mode), got.st_uid, got.st_gid) == (
            oct(want.st_mode),
            want.st_uid,
            want.st_gid,
        ), name


def test_a_full_disk_stops_the_restore_with_its_own_exit_code(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": os.urandom(MiB), "b.txt": "beta\n"})
    assert cli("backup", "-r", repo, src).exit_code == 0
    before = set(os.listdir("/proc/self/fd"))

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    result = cli("restore", "latest", "-r", repo, "--target", tmp_path / "out")

    assert result.exit_code == ExitCode.NO_SPACE, result
    assert "no space left on device" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert set(os.listdir("/proc/self/fd")) <= before
