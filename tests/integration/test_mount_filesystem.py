"""The filesystem `mount` serves, called as libfuse's threads call it but without FUSE (so
it runs everywhere): the repository on its own loop thread (`RepositoryThread`), reads
from several threads at once, new snapshots appearing on a later listing, and a damaged
blob costing only the file that holds it (EIO and one warning, the rest reads on)."""

from __future__ import annotations

import errno
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree

from bbackup.cli.opening import RepositoryThread
from bbackup.cli.options import GlobalOptions
from bbackup.ops.mount_fs import SnapshotFilesystem
from bbackup.repository import RepositoryLock
from bbackup.snapshot.store import load_snapshots

MiB = 1024 * 1024


def options(repo: Path) -> GlobalOptions:
    return GlobalOptions(
        repo=os.fspath(repo),
        password_file=None,
        password_command=None,
        s3_endpoint=None,
        s3_region=None,
        s3_path_style=None,
        connections=None,
        no_cache=True,
        cache_dir=None,
        json=False,
    )


@pytest.fixture
def src(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(
        tmp_path / "src",
        {"big.bin": os.urandom(6 * MiB), "small.txt": "hello\n", "sub": {"a.txt": "a\n"}},
    )


def inside(src: Path) -> str:
    return "/" + os.path.abspath(src).lstrip("/")


def latest(fs: SnapshotFilesystem, directory: str) -> str:
    """`directory/latest` resolved, as the kernel resolves the symlink before asking."""
    return f"{directory}/{fs.readlink(f'{directory}/latest')}"


def read_all(fs: SnapshotFilesystem, path: str, chunk: int = 128 * 1024) -> bytes:
    handle = fs.open(path, os.O_RDONLY)
    try:
        out, offset = bytearray(), 0
        while piece := fs.read(path, chunk, offset, handle):
            out += piece
            offset += len(piece)
        return bytes(out)
    finally:
        fs.release(path, handle)


def test_files_read_back_from_many_threads_and_new_snapshots_appear(
    cli: Cli, repo: Path, src: Path
) -> None:
    assert cli("backup", "-r", repo, src).exit_code == 0
    warnings: list[str] = []
    with (
        RepositoryThread(options(repo)) as session,
        session.hold(RepositoryLock(session.repo, exclusive=False, purpose="mount")),
    ):
        fs = SnapshotFilesystem(
            session.repo,
            session.call,
            session.call(load_snapshots(session.repo)),
            on_error=warnings.append,
            cache_bytes=8 * MiB,
            refresh_seconds=0,
        )
        try:
            big = f"{latest(fs, '/snapshots')}{inside(src)}/big.bin"
            attributes = fs.getattr(big)
            assert stat.S_ISREG(attributes["st_mode"])
            assert attributes["st_size"] == 6 * MiB
            with ThreadPoolExecutor(4) as pool:
                copies = list(pool.map(lambda _: read_all(fs, big), range(4)))
            assert all(c == (src / "big.bin").read_bytes() for c in copies)
            # Four readers at once, each front to back: every blob fetched once.
            assert fs.blobs.stats.bytes < 6 * MiB * 1.1

            (src / "later.txt").write_text("made after the mount\n")
            assert cli("backup", "-r", repo, src, "--host", "other").exit_code == 0
            assert "other" in [n for n, _, _ in fs.readdir("/hosts", 0)]
            later = f"{latest(fs, '/hosts/other')}{inside(src)}/later.txt"
            assert read_all(fs, later) == b"made after the mount\n"
        finally:
            fs.close()
    assert warnings == []


def test_a_damaged_blob_costs_only_its_file(cli: Cli, repo: Path, src: Path) -> None:
    assert cli("backup", "-r", repo, src).exit_code == 0
    # Damage the one data pack's first blob: big.bin's first chunk (packed first or
    # not, one file loses data and the test finds which).
    [pack] = [p for p in (repo / "data").rglob("*") if p.is_file()]
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    warnings: list[str] = []
    with RepositoryThread(options(repo)) as session:
        fs = SnapshotFilesystem(
            session.repo,
            session.call,
            session.call(load_snapshots(session.repo)),
            on_error=warnings.append,
        )
        try:
            results = {}
            for name in ("big.bin", "small.txt", "sub/a.txt"):
                path = f"{latest(fs, '/snapshots')}{inside(src)}/{name}"
                try:
                    results[name] = read_all(fs, path) == (src / name).read_bytes()
                except OSError as exc:
                    assert exc.errno == errno.EIO
                    results[name] = False
        finally:
            fs.close()
    assert sorted(results.values()) == [False, True, True], results
    assert len(warnings) == 1 and "blob" in warnings[0], warnings
