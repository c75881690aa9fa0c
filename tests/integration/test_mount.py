"""`bbackup mount`: every snapshot browsable by time, host, tag and ID with `latest` links;
files read back with their bytes, sizes, modes, ns mtimes and symlink targets; a range in
the middle of a large file fetches only the blobs that hold it; a shared lock is held
while mounted; SIGINT or SIGTERM unmounts and exits 0; a mount point that is not an empty
directory, or a missing libfuse, is one line.

The mounts run in a subprocess, as a user runs them. Skipped only where /dev/fuse or
libfuse is absent (scripts/install-fuse.sh installs libfuse on Debian)."""

from __future__ import annotations

import ctypes.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cli_harness import CHEAPEST_KDF, PASSWORD, Cli

from bbackup.ops.mount_namespace import time_name

MiB = 1024 * 1024
MTIME_NS = 1_234_567_890_123_456_789
BIG_SIZE = 12 * MiB


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: load the fuse kernel module (containers: --device /dev/fuse)"
    if not (ctypes.util.find_library("fuse3") or ctypes.util.find_library("fuse")):
        return "no libfuse: run scripts/install-fuse.sh as root (apt-get install fuse3 libfuse3-3)"
    return None


needs_fuse = pytest.mark.skipif(_fuse_missing() is not None, reason=_fuse_missing() or "")


def run(env: dict[str, str], *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bbackup", *map(os.fspath, args)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Mount:
    """A `bbackup mount --json` process serving `repo` at `where`."""

    def __init__(self, env: dict[str, str], repo: Path, where: Path) -> None:
        where.mkdir(exist_ok=True)
        self.where = where
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bbackup", "mount", "--json", "-r", os.fspath(repo), where],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.stop(signal.SIGKILL)
                pytest.fail(f"mount did not come up: exit {self.proc.returncode}\n{out}\n{err}")
            time.sleep(0.05)

    def stop(self, signo: int = signal.SIGINT) -> tuple[str, str]:
        """Send `signo`, wait for the process; its stdout and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signo)
        try:
            out, err = self.proc.communicate(timeout=30)
        finally:
            if os.path.ismount(self.where):  # never leave a mount behind a failed test
                subprocess.run(["umount", "-l", os.fspath(self.where)], check=False)
        return out, err

    def events(self, out: str) -> dict[str, dict[str, Any]]:
        return {e["event"]: e for e in map(json.loads, out.splitlines()) if "event" in e}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment for bbackup subprocesses with the password and a private home."""
    home = tmp_path_factory.mktemp("home")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BBACKUP_", "XDG_"))}
    return {
        **keep,
        "HOME": os.fspath(home),
        "XDG_CACHE_HOME": os.fspath(home / ".cache"),
        "BBACKUP_PASSWORD": PASSWORD,
    }


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A large multi-chunk file, small files with odd modes, an empty file, a non-UTF-8
    name, a symlink, a directory with its own mode, all with ns mtimes."""
    root = tmp_path_factory.mktemp("mount") / "src"
    (root / "etc" / "empty-dir").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (root / "notes.txt").write_text("first line\nsecond line\n")
    (root / "etc" / "fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    (root / "etc" / "secret").write_bytes(b"only the owner\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "empty").write_bytes(b"")
    (root / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name\n")
    (root / "link").symlink_to("etc/fstab")
    os.chmod(root / "etc" / "secret", 0o400)
    os.chmod(root / "run.sh", 0o755)
    for path in [p for p in root.rglob("*") if not p.is_symlink()] + [root / "etc"]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS + len(path.name)))
    os.chmod(root / "etc", 0o750)
    return root


@pytest.fixture(scope="module")
def repo(env: dict[str, str], src: Path) -> Path:
    """Three snapshots: two of host alpha (tag daily, then daily+weekly), one of beta."""
    path = src.parent / "repo"
    assert run(env, "init", "-r", path, *CHEAPEST_KDF).returncode == 0
    for host, tags, when in [
        ("alpha", ["daily"], TIMES[0]),
        ("beta", [], TIMES[1]),
        ("alpha", ["daily", "weekly"], TIMES[2]),
    ]:
        tag_args = [a for t in tags for a in ("--tag", t)]
        result = run(env, "backup", "-r", path, src, "--host", host, "--time", when, *tag_args)
        assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def mounted(env: dict[str, str], repo: Path) -> Iterator[Path]:
    mount = Mount(env, repo, repo.parent / "mnt")
    try:
        yield mount.where
    finally:
        mount.stop()


TIMES = ("2026-01-01T10:00:00+00:00", "2026-01-02T10:00:00+00:00", "2026-01-03T10:00:00+00:00")


def dir_name(iso: str) -> str:
    """The directory name a snapshot taken at `iso` gets (in this machine's time zone)."""
    return time_name(datetime.fromisoformat(iso))


@needs_fuse
def test_snapshots_are_listed_by_time_host_tag_and_id_with_latest_links(
    mounted: Path, env: dict[str, str], repo: Path
) -> None:
    first, second, third = map(dir_name, TIMES)
    assert sorted(os.listdir(mounted)) == ["hosts", "ids", "snapshots", "tags"]
    assert sorted(os.listdir(mounted / "snapshots")) == [first, second, third, "latest"]
    assert os.readlink(mounted / "snapshots" / "latest") == third
    assert sorted(os.listdir(mounted / "hosts")) == ["alpha", "beta"]
    assert sorted(os.listdir(mounted / "hosts" / "alpha")) == [first, third, "latest"]
    assert os.readlink(mounted / "hosts" / "beta" / "latest") == second
    assert sorted(os.listdir(mounted / "tags")) == ["daily", "weekly"]
    assert sorted(os.listdir(mounted / "tags" / "daily")) == [first, third, "latest"]
    assert sorted(os.listdir(mounted / "tags" / "weekly")) == [third, "latest"]
    ids = os.listdir(mounted / "ids")
    assert len(ids) == 3 and all(len(i) == 8 for i in ids)
    assert (mounted / "snapshots" / second).stat().st_mtime == datetime.fromisoformat(
        TIMES[1]
    ).timestamp()
    with pytest.raises(OSError):
        (mounted / "snapshots" / "new-file").write_text("read-only")


@needs_fuse
def test_files_read_back_with_their_bytes_and_metadata(mounted: Path, src: Path) -> None:
    inside = mounted / "snapshots" / "latest" / os.path.abspath(src).lstrip("/")
    checked = 0
    for path in [src, *sorted(src.rglob("*"))]:
        copy = inside / path.relative_to(src)
        want, got = path.lstat(), copy.lstat()
        assert stat.S_IFMT(got.st_mode) == stat.S_IFMT(want.st_mode), path
        assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(want.st_mode), path
        assert got.st_mtime_ns == want.st_mtime_ns, path
        assert (got.st_uid, got.st_gid) == (want.st_uid, want.st_gid), path
        if path.is_symlink():
            assert os.readlink(copy) == os.readlink(path)
        elif path.is_file():
            assert got.st_size == want.st_size, path
            assert copy.read_bytes() == path.read_bytes(), path
        else:
            assert sorted(os.listdir(copy)) == sorted(os.listdir(path)), path
        checked += 1
    assert checked == 11
    assert (inside / "link").read_text() == (src / "etc" / "fstab").read_text()


@needs_fuse
def test_a_range_in_the_middle_of_a_large_file_fetches_only_its_blobs(
    env: dict[str, str], repo: Path, src: Path
) -> None:
    """And a shared lock is held while mounted, gone after SIGINT, which exits 0."""
    locks_before = set(os.listdir(repo / "locks"))  # the other tests' mount holds one
    mount = Mount(env, repo, repo.parent / "mnt-range")
    try:
        assert len(set(os.listdir(repo / "locks")) - locks_before) == 1
        big = mount.where / "ids"
        big = big / sorted(os.listdir(big))[0] / os.path.abspath(src).lstrip("/") / "big.bin"
        middle = BIG_SIZE // 2 + 12345
        with open(big, "rb") as f:
            f.seek(middle)
            got = f.read(4096)
        with open(src / "big.bin", "rb") as f:
            f.seek(middle)
            assert got == f.read(4096)
    finally:
        out, err = mount.stop(signal.SIGINT)
    assert mount.proc.returncode == 0, err
    assert not os.path.ismount(mount.where)
    unmounted = mount.events(out)["unmounted"]
    assert unmounted["signal"] == "SIGINT"
    # The chunker's blobs average 1 MiB: the range and the kernel's read-ahead need two.
    assert 1 <= unmounted["blobs_fetched"] <= 3, unmounted
    assert unmounted["bytes_fetched"] < BIG_SIZE // 3, unmounted
    assert set(os.listdir(repo / "locks")) == locks_before


@needs_fuse
def test_sigterm_unmounts_and_exits_0(env: dict[str, str], repo: Path) -> None:
    mount = Mount(env, repo, repo.parent / "mnt-term")
    out, err = mount.stop(signal.SIGTERM)
    assert mount.proc.returncode == 0, err
    assert not os.path.ismount(mount.where)
    assert mount.events(out)["unmounted"]["signal"] == "SIGTERM"
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", ["non-empty", "file", "missing"])
def test_a_mount_point_that_is_not_an_empty_directory_is_refused(
    cli: Cli, tmp_path: Path, kind: str
) -> None:
    where = tmp_path / "mnt"
    if kind == "non-empty":
        where.mkdir()
        (where / "keep.txt").write_text("mine")
    elif kind == "file":
        where.write_text("a file")
    result = cli("mount", "-r", tmp_path / "repo", where)
    assert result.exit_code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mount point" in lines[0], result
    assert "Traceback" not in result.output


def test_a_missing_libfuse_is_one_line_naming_the_package(
    env: dict[str, str], repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "mnt").mkdir()
    no_libfuse = {**env, "FUSE_LIBRARY_PATH": "/nonexistent/libfuse3.so.3"}
    result = run(no_libfuse, "mount", "-r", repo, tmp_path / "mnt")
    if not os.path.exists("/dev/fuse"):
        assert "/dev/fuse" in result.stderr
    else:
        assert "libfuse" in result.stderr and "apt-get install fuse3" in result.stderr
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
