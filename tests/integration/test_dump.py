"""`bbackup dump`: a file's bytes on stdout; a directory as a tar that GNU tar extracts to
the same bytes, modes, ns mtimes, symlinks, hard links and FIFOs, or as a zip written to a
pipe; a missing path is one line and exit 2; a reader that closes the pipe ends it
quietly; every pack byte is read at most once."""

from __future__ import annotations

import asyncio
import gc
import io
import itertools
import os
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, restored_path
from tree_metadata import tree_metadata

from bbackup.errors import IntegrityError
from bbackup.ops.dump import dump
from bbackup.repository import open_repository
from bbackup.snapshot.store import find_snapshot, load_snapshots
from bbackup.storage import open_storage

MiB = 1024 * 1024
MTIME_NS = 1_234_567_890_123_456_789


def run_dump(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
    """`bbackup dump ...` in a subprocess, its stdout a pipe (not seekable), as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "bbackup", "dump", *(os.fspath(a) for a in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def src(tmp_path: Path, make_tree: MakeTree) -> Path:
    """Multi-chunk and small files, an empty directory, a read-only file, a hard link, a
    symlink (and a dangling one), a FIFO and a non-UTF-8 name, all with ns mtimes."""
    root = make_tree(
        tmp_path / "src",
        {
            "big.bin": os.urandom(2 * MiB),
            "notes.txt": "first line\nsecond line\n",
            "etc": {"fstab": "/dev/sda1 / ext4 defaults 0 1\n", "empty-dir": None},
        },
    )
    (root / "etc" / "read-only").write_bytes(b"do not touch\n")
    os.chmod(root / "etc" / "read-only", 0o400)
    os.chmod(root / "etc", 0o750)
    os.link(root / "notes.txt", root / "etc" / "notes-link")
    os.symlink("../notes.txt", root / "etc" / "notes-symlink")
    os.symlink("/nowhere/at/all", root / "dangling")
    os.mkfifo(root / "pipe")
    (root / os.fsdecode(b"caf\xe9-latin1")).write_bytes(b"not utf-8 named\n")
    for i, path in enumerate([*sorted(root.rglob("*"), reverse=True), root]):
        os.utime(path, ns=(MTIME_NS, MTIME_NS + i * 1000 + 7), follow_symlinks=False)
    return root


@pytest.fixture
def backed_up(src: Path, repo: Path, cli: Cli) -> Path:
    result = cli("backup", "-r", repo, src)
    assert result.exit_code == 0, result
    return repo


def test_dump_of_a_file_writes_exactly_its_bytes(src: Path, backed_up: Path) -> None:
    result = run_dump("-r", backed_up, "latest", src / "big.bin")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (src / "big.bin").read_bytes()
    assert result.stderr == b""


def test_dump_of_a_directory_as_tar_extracts_to_the_same_files_and_metadata(
    tmp_path: Path, src: Path, backed_up: Path
) -> None:
    result = run_dump("-r", backed_up, "latest", src)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "extracted"
    out.mkdir()

    subprocess.run(
        ["tar", "-x", "--xattrs", "--numeric-owner", "-C", out], input=result.stdout, check=True
    )

    assert tree_metadata(restored_path(out, src)) == tree_metadata(src)
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
        big = archive.getmember(os.path.relpath(src / "big.bin", "/"))
        link = archive.getmember(os.path.relpath(src / "notes.txt", "/"))
    mtime_ns = (src / "big.bin").stat().st_mtime_ns
    assert big.pax_headers["mtime"] == f"{mtime_ns // 10**9}.{mtime_ns % 10**9:09d}"
    # A hard link is stored once, the later path a link to the first one (by name).
    base = os.path.relpath(src, "/")
    assert link.islnk() and link.linkname == f"{base}/etc/notes-link"


def test_dump_of_the_whole_snapshot_verifies_a_restore_with_tar_compare(
    tmp_path: Path, src: Path, backed_up: Path, cli: Cli
) -> None:
    target = tmp_path / "new-root"
    assert cli("restore", "-r", backed_up, "latest", "--target", target).exit_code == 0
    result = run_dump("-r", backed_up, "latest", "/")
    assert result.returncode == 0, result.stderr

    compared = subprocess.run(
        ["tar", "--compare", "-C", target], input=result.stdout, capture_output=True
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr

    fstab = restored_path(target, src) / "etc" / "fstab"
    mtime_ns = fstab.stat().st_mtime_ns
    fstab.write_text("/dev/sda2 / ext4 defaults 0 1\n")  # same size and time, other bytes
    os.utime(fstab, ns=(mtime_ns, mtime_ns))
    differs = subprocess.run(
        ["tar", "--compare", "-C", target], input=result.stdout, capture_output=True
    )
    assert differs.returncode == 1
    assert differs.stdout.endswith(b"etc/fstab: Contents differ\n"), differs.stdout


def test_dump_as_zip_on_a_pipe_holds_the_files_modes_times_and_symlinks(
    src: Path, backed_up: Path
) -> None:
    result = run_dump("-r", backed_up, "latest", src, "--archive", "zip")
    assert result.returncode == 0, result.stderr
    assert b"pipe: a fifo cannot be stored in a zip archive" in result.stderr

    with zipfile.ZipFile(io.BytesIO(result.stdout)) as archive:
        members = {info.filename: info for info in archive.infolist()}
        base = os.path.relpath(src, "/")
        big = members[f"{base}/big.bin"]
        assert archive.read(big) == (src / "big.bin").read_bytes()
        assert archive.read(f"{base}/etc/notes-link") == (src / "notes.txt").read_bytes()
        read_only = members[f"{base}/etc/read-only"]
        assert stat.filemode(read_only.external_attr >> 16) == "-r--------"
        assert stat.S_ISDIR(members[f"{base}/etc/"].external_attr >> 16)
        link = members[f"{base}/etc/notes-symlink"]
        assert stat.S_ISLNK(link.external_attr >> 16)
        assert archive.read(link) == b"../notes.txt"
        assert f"{base}/caf\\xe9-latin1" in members
        mtime = dict(_extras(big.extra))[0x5455]
        assert struct.unpack("<Bi", mtime) == (1, (src / "big.bin").stat().st_mtime_ns // 10**9)


def _extras(extra: bytes) -> list[tuple[int, bytes]]:
    found = []
    while extra:
        tag, size = struct.unpack("<HH", extra[:4])
        found.append((tag, extra[4 : 4 + size]))
        extra = extra[4 + size :]
    return found


def test_dump_of_a_path_not_in_the_snapshot_is_one_line_and_exit_2(
    src: Path, backed_up: Path
) -> None:
    result = run_dump("-r", backed_up, "latest", src / "no-such-file")

    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert "no-such-file: no such file or directory in snapshot" in line


def test_a_reader_that_closes_the_pipe_ends_the_dump_quietly(src: Path, backed_up: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "bbackup", "dump", "-r", str(backed_up), "latest", str(src)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert len(process.stdout.read(512)) == 512  # like `| head -c 512`
        process.stdout.close()
        stderr = process.stderr.read()
        exit_code = process.wait(timeout=60)
    assert exit_code == 141, stderr
    assert stderr == b""


def test_dump_reads_each_pack_byte_at_most_once(
    src: Path, backed_up: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[str, int, int | None]] = []

    async def main() -> int:
        stack = open_storage(str(backed_up))
        try:
            repo = await open_repository(stack, PASSWORD, use_cache=False)
            real_read_pack = repo.read_pack

            async def read_pack(name: str, offset: int = 0, length: int | None = None) -> bytes:
                reads.append((name, offset, length))
                return await real_read_pack(name, offset, length)

            monkeypatch.setattr(repo, "read_pack", read_pack)
            snapshot = find_snapshot(await load_snapshots(repo), "latest")
            sink = io.BytesIO()
            summary = await dump(repo, snapshot, "/", sink, read_size=MiB, max_gap=MiB)
            with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as archive:
                assert len(archive.getnames()) == summary.entries
            return summary.bytes
        finally:
            await stack.storage.aclose()

    written = asyncio.run(main())

    data_reads = [r for r in reads if r[0].startswith("data/")]
    assert written >= 2 * MiB
    spans = sorted((name, offset, offset + (length or 0)) for name, offset, length in data_reads)
    for (name, _, end), (next_name, next_start, _) in itertools.pairwise(spans):
        assert name != next_name or end <= next_start, f"{name} read twice around {next_start}"
    stored = sum(p.stat().st_size for p in (backed_up / "data").rglob("*") if p.is_file())
    assert sum(end - start for _, start, end in spans) <= stored


def damage_the_biggest_data_pack(repo: Path) -> None:
    packs = sorted((p for p in (repo / "data").rglob("*") if p.is_file()), key=os.path.getsize)
    damaged = packs[-1]  # the pack holding most of big.bin
    data = bytearray(damaged.read_bytes())
    data[len(data) // 3] ^= 0x01
    damaged.chmod(0o644)
    damaged.write_bytes(bytes(data))


def test_damaged_data_ends_the_dump_with_exit_13_and_a_tar_no_reader_accepts(
    src: Path, backed_up: Path
) -> None:
    damage_the_biggest_data_pack(backed_up)

    result = run_dump("-r", backed_up, "latest", src, "--no-cache")

    assert result.returncode == 13, result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr
    listed = subprocess.run(["tar", "-t"], input=result.stdout, capture_output=True)
    assert listed.returncode == 2 and b"Unexpected EOF" in listed.stderr, listed


def test_damaged_data_leaves_a_zip_without_its_central_directory(
    src: Path, backed_up: Path
) -> None:
    damage_the_biggest_data_pack(backed_up)
    sink = io.BytesIO()

    async def main() -> None:
        stack = open_storage(str(backed_up))
        try:
            repo = await open_repository(stack, PASSWORD, use_cache=False)
            snapshot = find_snapshot(await load_snapshots(repo), "latest")
            await dump(repo, snapshot, str(src), sink, archive="zip")
        finally:
            await stack.storage.aclose()

    with pytest.raises(IntegrityError):
        asyncio.run(main())
    gc.collect()  # a ZipFile that is collected writes its central directory unless told not to

    assert sink.getvalue()
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(sink)
