"""Security of the commands added late (dump, mount, drill, service config), attacked as
docs/security.md says an attacker may: a forged or damaged tree holding names with `/`,
`..`, NUL, empty names or two entries of one name never becomes an archive member that
leads a tar out of its directory; what a hostile snapshot or another local user plants
cannot make bbackup write where it should not."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import io
import os
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, MakeTree

from bbackup.crypto.aead import BlobType
from bbackup.ops.restore import Restorer
from bbackup.ops.restore_files import RestoredFile
from bbackup.repository import BlobSaver, open_repository
from bbackup.snapshot.model import DIR, FILE, SYMLINK, Node, Tree
from bbackup.snapshot.model import Snapshot as SnapshotDoc
from bbackup.snapshot.store import save_snapshot, save_tree
from bbackup.storage import open_storage

GOOD = b"an honest file\n"
EVIL = b"written through a forged tree\n"


class Forger:
    """Writes blobs and trees into a repository opened with the password (a key holder, or
    a writer's bug), to build snapshots no backup would make."""

    def __init__(self, writer: BlobSaver) -> None:
        self.writer = writer

    async def file(self, name: bytes, data: bytes, mode: int = 0o644, uid: int = 0) -> Node:
        blob = self.writer.prepare(BlobType.DATA, data)
        await self.writer.add(blob)
        return Node(name, FILE, mode=mode, uid=uid, size=len(data), content=[blob.blob_id])

    async def directory(self, name: bytes, nodes: list[Node], mode: int = 0o755) -> Node:
        return Node(name, DIR, mode=mode, subtree=await save_tree(self.writer, Tree(nodes)))


def store_snapshot(repo: Path, root: Callable[[Forger], Awaitable[list[Node]]]) -> str:
    """Store a snapshot of path / whose root tree holds the nodes `root` makes; its ID."""

    async def forge() -> str:
        stack = open_storage(str(repo))
        try:
            opened = await open_repository(stack, PASSWORD, use_cache=False)
            writer = opened.new_writer()
            root_id = await save_tree(writer, Tree(await root(Forger(writer))))
            await writer.flush()
            snapshot = SnapshotDoc(datetime.now(UTC), "forger", ["/"], root_id)
            return await save_snapshot(opened, snapshot)
        finally:
            await stack.storage.aclose()

    return asyncio.run(forge())


async def unsafe_names(forger: Forger) -> list[Node]:
    """`good.txt`, then names no backup writes: `../escape`, `..`, an empty name, a name
    with NUL, and `evil` twice: a symlink to ../outside and a directory holding `etc/passwd` (the
    tar-slip: a member written through a symlink member)."""
    etc = await forger.directory(b"etc", [await forger.file(b"passwd", EVIL)])
    return [
        await forger.file(b"good.txt", GOOD),
        await forger.file(b"../escape", EVIL),
        await forger.file(b"..", EVIL),
        await forger.file(b"", EVIL),
        await forger.file(b"nul\0name", EVIL),
        Node(b"evil", SYMLINK, mode=0o777, link_target=b"../outside"),
        await forger.directory(b"evil", [etc]),
    ]


def run_bbackup(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bbackup", *(os.fspath(a) for a in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )


def is_safe_member(name: str) -> bool:
    parts = name.rstrip("/").split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_dump_of_a_forged_tree_emits_no_unsafe_member_and_exits_13(
    repo: Path, archive: str, tmp_path: Path
) -> None:
    snapshot = store_snapshot(repo, unsafe_names)

    result = run_bbackup("dump", "-r", repo, "--archive", archive, snapshot[:8], "/")

    assert result.returncode == 13, result.stderr
    assert b"unsafe name" in result.stderr
    if archive == "tar":
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert all(is_safe_member(name) and "\0" not in name for name in members), members
            # No member below a symlink member: nothing is written through a link.
            links = {name for name, m in members.items() if m.issym()}
            assert not [n for n in members for link in links if n.startswith(link + "/")]
            target = tmp_path / "extracted"
            tar.extractall(target, filter="fully_trusted")  # as a plain `tar -x` would
        assert (target / "good.txt").read_bytes() == GOOD
        assert not (tmp_path / "escape").exists()
    else:
        with zipfile.ZipFile(io.BytesIO(result.stdout)) as zipped:
            names = zipped.namelist()
            assert all(is_safe_member(name) and "\0" not in name for name in names), names
            assert zipped.read("good.txt") == GOOD
            assert names.count("evil/") + names.count("evil") <= 1
    # The forged `..` entry cannot be named either: members would start with `..`.
    named = run_bbackup("dump", "-r", repo, "--archive", archive, snapshot[:8], "/..")
    assert named.returncode == 2, named.stderr
    assert named.stdout == b""


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not (ctypes.util.find_library("fuse3") or ctypes.util.find_library("fuse")):
        return "no libfuse: run scripts/install-fuse.sh as root"
    if os.geteuid() != 0:
        return "reading as another user needs root to switch users"
    return None


async def modes(forger: Forger) -> list[Node]:
    return [
        await forger.file(b"public", GOOD, 0o644),
        await forger.file(b"secret", b"root's eyes only\n", 0o600, uid=0),
        await forger.file(b"setuid", b"#!/bin/sh\nid -u\n", 0o4755, uid=0),
    ]


def test_a_zip_dump_leaves_out_names_a_windows_extractor_would_lead_out(
    repo: Path, cli: Cli, make_tree: MakeTree, tmp_path: Path
) -> None:
    # Legal Unix names, as a hostile local user could make them in a shared directory.
    src = make_tree(
        tmp_path / "src",
        {"ok.txt": "fine\n", "..\\..\\evil.bat": "echo owned\n", "a\\..": {"x": "x\n"}},
    )
    assert cli("backup", "-r", repo, src).exit_code == 0

    result = run_bbackup("dump", "-r", repo, "--archive", "zip", "latest", src)

    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(io.BytesIO(result.stdout)) as zipped:
        names = zipped.namelist()
    assert any(n.endswith("/ok.txt") for n in names), names
    assert [n for n in names if ".." in n.replace("\\", "/").split("/")] == []
    assert b"unsafe in a zip; left out" in result.stderr


def test_restore_of_a_forged_tree_writes_nothing_outside_its_target_and_exits_13(
    repo: Path, cli: Cli, tmp_path: Path
) -> None:
    snapshot = store_snapshot(repo, unsafe_names)
    target = tmp_path / "deep" / "target"

    result = cli("restore", snapshot[:8], "-r", repo, "--target", target)

    assert result.exit_code == 13, result
    assert "unsafe name" in result.output
    assert (target / "good.txt").read_bytes() == GOOD
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["target"]
    assert not (tmp_path / "escape").exists()
    # Of the two entries named evil, whichever was restored, nothing went through the link.
    assert not (tmp_path / "deep" / "outside").exists()


@contextlib.contextmanager
def mounted(repo: Path, *args: str) -> Iterator[Path]:
    """`bbackup mount` of `repo` serving, for the block, at a new directory other users
    can reach (not under pytest's private tmp directory)."""
    where = Path(tempfile.mkdtemp(prefix="bbackup-mount-"))
    os.chmod(where, 0o755)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bbackup", "mount", "-r", repo, where, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        yield where
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        if os.path.ismount(where):
            subprocess.run(["umount", "-l", where], check=False)
        where.rmdir()


@pytest.mark.skipif(_fuse_missing() is not None, reason=_fuse_missing() or "")
def test_a_mount_shared_with_allow_other_enforces_the_snapshots_modes_nosuid_nodev(
    repo: Path,
) -> None:
    snapshot = store_snapshot(repo, modes)
    with mounted(repo, "--allow-other") as where:
        [options] = [
            line.split()[3].split(",")
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1] == os.fspath(where)
        ]
        assert {"ro", "nosuid", "nodev", "default_permissions", "allow_other"} <= set(options)
        files = where / "ids" / snapshot[:8]

        def read_as_nobody(name: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                ["cat", files / name], user=65534, group=65534, capture_output=True, timeout=30
            )

        assert read_as_nobody("public").stdout == GOOD
        refused = read_as_nobody("secret")
        assert refused.returncode != 0 and refused.stdout == b""
        assert b"Permission denied" in refused.stderr


@pytest.mark.skipif(_fuse_missing() is not None, reason=_fuse_missing() or "")
def test_a_mount_lists_no_unsafe_or_repeated_name_of_a_forged_tree(repo: Path) -> None:
    snapshot = store_snapshot(repo, unsafe_names)
    with mounted(repo) as where:
        root = where / "ids" / snapshot[:8]
        listed = sorted(os.listdir(root))
        assert listed == ["evil", "good.txt"]
        assert (root / "good.txt").read_bytes() == GOOD
        assert os.readlink(root / "evil") == "../outside"  # the first entry named evil: a symlink


def a_dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_drill_cleanup_leaves_planted_symlinks_and_other_users_directories_alone(
    repo: Path, cli: Cli, make_tree: MakeTree, tmp_path: Path
) -> None:
    assert (
        cli("backup", "-r", repo, make_tree(tmp_path / "src", {"a.txt": "alpha\n"})).exit_code == 0
    )
    victim = make_tree(tmp_path / "victim", {"keep": {"file": "precious\n"}})
    os.chmod(victim / "keep", 0o750)
    # What a drill killed by a power cut leaves, as another local user could fake it in a
    # shared $TMPDIR: a symlink to the victim's files, and another user's directory.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    planted_link = scratch / f"drill-{a_dead_pid()}-link"
    planted_link.symlink_to(victim)
    theirs = make_tree(scratch / f"drill-{a_dead_pid()}-theirs", {"their-file": "theirs\n"})
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
    killed = make_tree(scratch / f"drill-{a_dead_pid()}-killed", {"left": "over\n"})

    result = cli("drill", "-r", repo, "--scratch", scratch)

    assert result.exit_code == 0, result
    assert (victim / "keep" / "file").read_text() == "precious\n"
    assert stat.S_IMODE((victim / "keep").stat().st_mode) == 0o750
    assert planted_link.is_symlink()
    assert not killed.exists()  # a real leftover of this user is still cleaned up
    if os.geteuid() == 0:
        assert (theirs / "their-file").read_text() == "theirs\n"


def write_job_config(tmp_path: Path, repo: Path, source: Path, before_hook: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[repositories.local]
url = "{repo}"

[jobs.docs]
repository = "local"
sources = ["{source}"]
hooks = {{ before = "{before_hook}" }}
"""
    )
    return config


@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_a_job_config_others_can_write_is_refused_before_any_hook_runs(
    repo: Path, cli: Cli, make_tree: MakeTree, tmp_path: Path, mode: int
) -> None:
    source = make_tree(tmp_path / "src", {"a.txt": "alpha\n"})
    witness = tmp_path / "hook-ran"
    config = write_job_config(tmp_path, repo, source, f"touch {witness}")
    os.chmod(config, mode)

    result = cli("run", "docs", "--config", config)

    assert result.exit_code == 2, result
    assert f"{config} can be written by other users" in result.stderr
    assert "chmod go-w" in result.stderr
    assert not witness.exists()
    os.chmod(config, 0o600)
    assert cli("run", "docs", "--config", config).exit_code == 0
    assert witness.exists()


def test_job_reports_and_states_live_in_a_directory_only_their_user_can_enter(
    repo: Path, cli: Cli, make_tree: MakeTree, tmp_path: Path, isolated_env: Path
) -> None:
    source = make_tree(tmp_path / "src", {"a.txt": "alpha\n"})
    config = write_job_config(tmp_path, repo, source, "true")

    assert cli("run", "docs", "--config", config).exit_code == 0

    state = isolated_env / ".local" / "state" / "bbackup"
    assert [p.name for p in (state / "reports" / "docs").iterdir()]
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def end_a_blocked_open(fifo: Path) -> None:
    """Were the verify's open of `fifo` to block, open it for writing: the wait ends (and
    the test fails on the time) instead of hanging the suite."""
    with contextlib.suppress(OSError):  # nobody is waiting: nothing to end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_restore_verify_does_not_hang_on_a_fifo_swapped_in_after_the_write(
    repo: Path, cli: Cli, make_tree: MakeTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "alpha\n", "b.txt": "beta\n"})
    assert cli("backup", "-r", repo, src).exit_code == 0
    target = tmp_path / "target"
    swapped = target / os.fspath(src).lstrip("/") / "a.txt"
    real_verify_files = Restorer._verify_files

    def verify_after_swapping(self: Restorer, files: list[RestoredFile]) -> None:
        # Someone with write access to the target puts a FIFO where a restored file is.
        swapped.unlink()
        os.mkfifo(swapped)
        timer = threading.Timer(10, end_a_blocked_open, [swapped])
        timer.start()
        try:
            real_verify_files(self, files)
        finally:
            timer.cancel()

    monkeypatch.setattr(Restorer, "_verify_files", verify_after_swapping)
    started = time.monotonic()
    result = cli("restore", "latest", "-r", repo, "--target", target, "--verify")

    assert time.monotonic() - started < 8
    assert result.exit_code != 0, result
    assert "a.txt" in result.stderr and "no longer a regular file" in result.stderr
    assert "Traceback" not in result.output


def test_the_metrics_file_is_never_written_through_a_link_planted_at_its_temporary_name(
    repo: Path, cli: Cli, make_tree: MakeTree, tmp_path: Path
) -> None:
    source = make_tree(tmp_path / "src", {"a.txt": "alpha\n"})
    config = write_job_config(tmp_path, repo, source, "true")
    shared = tmp_path / "textfile-collector"  # as if writable by others
    shared.mkdir()
    metrics = shared / "bbackup.prom"
    config.write_text(f'metrics_file = "{metrics}"\n' + config.read_text())
    victim = make_tree(tmp_path / "victim", {"passwd": "root:x:0:0\n"}) / "passwd"
    # The temporary name is predictable: `cli` runs bbackup in this process.
    (shared / f".{metrics.name}.{os.getpid()}.tmp").symlink_to(victim)

    assert cli("run", "docs", "--config", config).exit_code == 0

    assert victim.read_text() == "root:x:0:0\n"
    assert not metrics.is_symlink()
    assert "bbackup" in metrics.read_text()
