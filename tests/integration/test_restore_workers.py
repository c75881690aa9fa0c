"""Restore write workers: child processes decode blobs and make the files of one blob each,
so a restore of many small files runs on two cores. A restore with them brings back the
same tree, metadata for metadata, as one without; a worker that dies or cannot start is
named and the restore writes the rest itself; a damaged blob costs only its files; a
worker never follows a symlink out of the target; a killed restore leaves none behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_harness import CHEAPEST_KDF, Cli, restored_path
from restore_layout import flip_byte, read_layout
from tree_metadata import tree_metadata
from worker_harness import workers_marked

from bbackup.crypto.aead import BlobType, Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import ExitCode
from bbackup.ops import restore as restore_module
from bbackup.ops import restore_processes, worker_processes
from bbackup.ops.restore_processes import RestoreWorkers
from bbackup.ops.restore_worker import FileMaker, RestoreOutcome

pytestmark = pytest.mark.skipif(
    worker_processes.worker_count(2) == 0, reason="write workers need two cores"
)

#: Files the restore writes itself before its workers start, lowered to keep tests short.
DELEGATE_AFTER = 20
FILES = 400


@pytest.fixture(autouse=True)
def early_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore_processes, "DELEGATE_AFTER_FILES", DELEGATE_AFTER)
    monkeypatch.setattr(restore_processes, "BATCH_FILES", 64)


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the batches workers answered and the files they made."""
    calls = {"batches": 0, "done": 0, "lost": 0}
    original = RestoreWorkers.run

    def counting(self: RestoreWorkers, batch: Any, replies: int) -> list[Any]:
        outcomes = original(self, batch, replies)
        calls["batches"] += 1
        calls["done"] += sum(1 for o in outcomes if o[0] == RestoreOutcome.DONE)
        calls["lost"] += sum(1 for o in outcomes if o[0] == RestoreOutcome.LOST)
        return outcomes

    monkeypatch.setattr(RestoreWorkers, "run", counting)
    return calls


def make_source(src: Path) -> None:
    """Many small files in nested directories (some empty, some alike, some of several
    blobs), owners and modes of several kinds, a hard link and a symlink."""
    for i in range(FILES):
        path = src / f"d{i % 5}" / (f"s{i % 3}" if i % 4 else "") / f"f{i:04}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i % 89 == 0:
            content = b""
        elif i % 11 == 0:
            content = b"the same text in many files\n" * 30
        elif i % 97 == 0:
            content = os.urandom(3 * 1024 * 1024)  # several chunks: the restore's own
        else:
            content = os.urandom(i * 37 % 5000 + 1)
        path.write_bytes(content)
        path.chmod((0o640, 0o755, 0o600, 0o444)[i % 4])
        if os.geteuid() == 0 and i % 6 == 0:
            os.chown(path, 1000 + i % 3, 2000 + i % 2)
        os.utime(path, ns=(1_700_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i))
    os.link(src / "d1" / "s1" / "f0001", src / "d2" / "hard")
    os.symlink("s1/f0001", src / "d1" / "link")


def test_small_files_made_by_workers_restore_metadata_for_metadata(
    tmp_path: Path, repo: Path, cli: Cli, made: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_source(src)
    assert cli("backup", "-r", repo, src).exit_code == 0
    # Workers from the first file: after 20, a thread may already hold a read of a
    # hundred files (which reads start first depends on the machine's load).
    monkeypatch.setattr(restore_processes, "DELEGATE_AFTER_FILES", 0)

    out = tmp_path / "out"
    result = cli("restore", "-r", repo, "latest", "--target", out, "--verify", "--json")

    assert result.exit_code == 0, result
    summary = result.event("summary")
    assert summary["errors"] == 0
    # Workers made most files: those of one blob.
    assert made["batches"] > 1
    assert made["done"] >= FILES // 2
    restored = restored_path(out, src)
    assert tree_metadata(restored) == tree_metadata(src)
    assert not list(out.rglob("*.bbackup-partial"))

    # The same restore without workers writes the same tree.
    batches = made["batches"]
    monkeypatch.setattr(restore_module, "worker_count", lambda workers: 0)
    plain = tmp_path / "plain"
    assert cli("restore", "-r", repo, "latest", "--target", plain).exit_code == 0
    assert made["batches"] == batches
    assert tree_metadata(restored_path(plain, src)) == tree_metadata(restored)


def test_a_restore_worker_that_dies_is_named_and_the_restore_writes_on(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_source(src)
    assert cli("backup", "-r", repo, src).exit_code == 0
    original = RestoreWorkers._take
    taken = {"n": 0}

    def dying(self: RestoreWorkers) -> subprocess.Popen[bytes]:
        process = original(self)
        taken["n"] += 1
        if taken["n"] == 2:
            process.kill()
            process.wait()
        return process

    monkeypatch.setattr(RestoreWorkers, "_take", dying)
    out = tmp_path / "out"

    result = cli("restore", "-r", repo, "latest", "--target", out)

    assert result.exit_code == 0, result
    assert "restore worker" in result.output
    assert "writes its files itself" in result.output
    assert "Traceback" not in result.output
    assert taken["n"] >= 2
    assert tree_metadata(restored_path(out, src)) == tree_metadata(src)
    assert not list(out.rglob("*.bbackup-partial"))


def test_a_restore_worker_that_cannot_start_leaves_the_writing_to_the_restore(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_source(src)
    assert cli("backup", "-r", repo, src).exit_code == 0
    monkeypatch.setattr(worker_processes.sys, "executable", str(tmp_path / "no-such-python"))
    out = tmp_path / "out"

    result = cli("restore", "-r", repo, "latest", "--target", out)

    assert result.exit_code == 0, result
    assert "cannot start a restore worker" in result.output
    assert tree_metadata(restored_path(out, src)) == tree_metadata(src)


def test_a_damaged_blob_costs_only_its_files_with_workers(
    tmp_path: Path, repo: Path, cli: Cli, made: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers from the first file on: the damaged file is surely theirs.
    monkeypatch.setattr(restore_processes, "DELEGATE_AFTER_FILES", 0)
    src = tmp_path / "src"
    make_source(src)
    assert cli("backup", "-r", repo, src).exit_code == 0
    layout = read_layout(repo)
    # A small file of one blob.
    victim = str(src / "d3" / "s2" / "f0398")
    (blob,) = layout.files[victim]
    flip_byte(repo / blob.pack_path, blob.entry.offset + blob.entry.length // 2)
    out = tmp_path / "out"

    result = cli("restore", "-r", repo, "latest", "--target", out, "--json")

    assert result.exit_code == ExitCode.INTEGRITY, result
    # A worker found the damage; the restore noted it as its own threads do.
    assert made["done"] > 0 and made["lost"] == 1
    damaged = {d["path"]: d for d in result.event("summary")["damaged"]}
    final = restored_path(out, Path(victim))
    assert set(damaged) == {str(final)}
    assert [b["problem"] for b in damaged[str(final)]["blobs"]] == ["fails authentication"]
    assert not final.exists()
    assert Path(f"{final}.bbackup-partial").stat().st_size == blob.entry.raw_length
    restored = restored_path(out, src)
    want = tree_metadata(src)
    got = tree_metadata(restored)
    rel = str(Path(victim).relative_to(src))
    del want[rel]
    del got[rel + ".bbackup-partial"]
    # The directory holding the damaged file has its times; the rest is whole.
    assert got == want


def test_a_worker_never_follows_a_symlink_out_of_the_target(tmp_path: Path) -> None:
    master = MasterKey.generate()
    cipher = Cipher(master)
    target, outside = tmp_path / "target", tmp_path / "outside"
    (target / "real").mkdir(parents=True)
    outside.mkdir()
    # A directory swapped for a symlink to elsewhere after the restore made it.
    os.symlink(outside, target / "swapped")
    text = b"restored text\n"
    blob_id = cipher.blob_id(text)
    sealed = cipher.seal_blob(BlobType.DATA, blob_id, text)
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        maker = FileMaker(master, root)
        batch = {
            "dirs": [[b"swapped"], [b"real"], [b"swapped", b"deeper"]],
            "blobs": [
                [
                    int(BlobType.DATA),
                    blob_id,
                    len(text),
                    sealed,
                    [[0, b"a", 0o644, None, 1, 2], [1, b"b", 0o600, None, 3, 4_000_000_000]],
                ],
                [
                    int(BlobType.DATA),
                    blob_id,
                    len(text),
                    sealed[:-1] + b"!",
                    [[1, b"c", 0o644, None, 1, 2]],
                ],
                [int(BlobType.DATA), blob_id, len(text), sealed, [[2, b"d", 0o644, None, 1, 2]]],
            ],
        }
        outcomes = maker.make_batch(batch)
        maker.close()
    finally:
        os.close(root)

    assert outcomes[0][:2] == [RestoreOutcome.FAILED, "create"]
    assert outcomes[1] == [RestoreOutcome.DONE]
    assert outcomes[2][0] == RestoreOutcome.LOST
    assert outcomes[3][:2] == [RestoreOutcome.FAILED, "create"]
    assert list(outside.iterdir()) == []
    made_file = target / "real" / "b"
    assert made_file.read_bytes() == text
    st = made_file.stat()
    assert (oct(st.st_mode & 0o7777), st.st_mtime_ns) == (oct(0o600), 4_000_000_000)
    assert sorted(p.name for p in (target / "real").iterdir()) == ["b"]


def test_a_killed_restore_leaves_no_worker_behind(tmp_path: Path, password: str) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    # Several packs, so several reads: workers take the reads after the first.
    for i in range(4000):
        (src / "a" / f"f{i}").write_bytes(os.urandom(4096))
    repo = tmp_path / "repo"
    marker = f"BBACKUP_TEST_MARKER={os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "BBACKUP_PASSWORD": password, marker.split("=")[0]: marker}
    base = [sys.executable, "-m", "bbackup"]
    init = [*base, "init", "-r", str(repo), "--pack-size", "4", *CHEAPEST_KDF]
    subprocess.run(init, env=env, check=True, capture_output=True, timeout=60)
    backup = [*base, "backup", "-r", str(repo), "-q", str(src)]
    subprocess.run(backup, env=env, check=True, capture_output=True, timeout=120)
    out = tmp_path / "out"
    deadline = time.monotonic() + 60
    # The kill must land while workers run: restore again until it does.
    while True:
        assert time.monotonic() < deadline, "never caught the restore's workers running"
        restore = subprocess.Popen(
            [*base, "restore", "-r", str(repo), "-q", "latest", "--target", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while (
                not workers_marked("bbackup.ops.restore_worker", marker) and restore.poll() is None
            ):
                time.sleep(0.01)
            if restore.poll() is None:
                restore.send_signal(signal.SIGKILL)
                restore.wait()
                break
        finally:
            if restore.poll() is None:
                restore.kill()
                restore.wait()
        subprocess.run(["rm", "-rf", str(out)], check=True)
    stop = time.monotonic() + 15
    while workers_marked("bbackup.ops.restore_worker", marker):
        assert time.monotonic() < stop, "restore workers outlived the restore"
        time.sleep(0.05)


def test_workers_replace_what_is_in_the_way_and_leave_the_rest_alone(
    tmp_path: Path, repo: Path, cli: Cli, made: dict[str, int]
) -> None:
    src = tmp_path / "src"
    make_source(src)
    assert cli("backup", "-r", repo, src).exit_code == 0
    out = tmp_path / "out"
    assert cli("restore", "-r", repo, "latest", "--target", out).exit_code == 0
    restored = restored_path(out, src)
    # Damage the restored copy: changed bytes, a file turned into a symlink leading out
    # of the target, a file replaced by a directory of its own, and a stray file.
    outside = tmp_path / "outside"
    outside.write_bytes(b"not to be touched\n")
    (restored / "d3" / "s1" / "f0013").write_bytes(b"changed")
    (restored / "d4" / "s2" / "f0014").unlink()
    os.symlink(outside, restored / "d4" / "s2" / "f0014")
    (restored / "d0" / "f0100").unlink()
    (restored / "d0" / "f0100").mkdir()
    (restored / "d2" / "stray").write_bytes(b"stray\n")
    before = made["done"]

    result = cli(
        "restore", "-r", repo, "latest", "--target", out, "--overwrite", "always", "--delete"
    )

    assert result.exit_code == 0, result
    assert made["done"] > before
    assert outside.read_bytes() == b"not to be touched\n"
    assert tree_metadata(restored) == tree_metadata(src)
    assert not list(out.rglob("*.bbackup-partial"))
