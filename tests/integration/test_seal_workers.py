"""Seal workers: a backup of many small files has child processes read, hash, compress
and seal them. What they store restores byte for byte and is deduplicated like the rest;
a worker that dies or cannot start is named and the backup reads its files itself; a
killed backup leaves no worker behind."""

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
from worker_harness import workers_marked

from bbackup.chunking import ChunkerParams
from bbackup.compression import compress, decompress
from bbackup.crypto.aead import BlobType, Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.ops import worker_processes
from bbackup.ops.chunk_pipeline import SEAL_AFTER_FILES
from bbackup.ops.seal_processes import SealWorkers
from bbackup.ops.seal_protocol import EMPTY, FAILED, LARGE, SEALED
from bbackup.ops.seal_worker import FileSealer

pytestmark = pytest.mark.skipif(
    worker_processes.worker_count(2) == 0, reason="seal workers need two cores"
)

#: Comfortably past the files a backup reads itself before its workers start.
FILES = SEAL_AFTER_FILES + 500
MIN_CHUNK = ChunkerParams().min_size


def make_files(src: Path) -> dict[str, bytes]:
    """Many small files (some empty, some alike, a few one chunk cannot hold)."""
    files = {}
    for i in range(FILES):
        if i % 97 == 0:
            content = b""
        elif i % 13 == 0:
            content = b"the same text in many files\n" * 20
        elif i % 251 == 0:
            content = os.urandom(MIN_CHUNK + 4096 * i % 65536)
        else:
            content = os.urandom(i % 3000) if i % 2 else b"line %d\n" % i * (i % 50 + 1)
        rel = f"d{i % 7}/f{i:05}"
        files[rel] = content
    for rel, content in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, ns=(1_700_000_000_000_000_000 + len(rel), 1_600_000_000_123_456_789))
    return files


@pytest.fixture
def seal_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the batches the workers sealed and the files they sealed."""
    calls = {"batches": 0, "sealed": 0}
    original = SealWorkers.seal

    def counting(self: SealWorkers, paths: list[bytes]) -> list[list[Any]]:
        outcomes = original(self, paths)
        calls["batches"] += 1
        calls["sealed"] += sum(1 for o in outcomes if o[0] == SEALED)
        return outcomes

    monkeypatch.setattr(SealWorkers, "seal", counting)
    return calls


def assert_restores(cli: Cli, repo: Path, target: Path, src: Path, files: dict[str, bytes]) -> None:
    assert cli("restore", "-r", repo, "latest", "--target", target).exit_code == 0
    root = restored_path(target, src)
    for rel, content in files.items():
        restored, original = root / rel, src / rel
        assert restored.read_bytes() == content, rel
        got, want = restored.stat(), original.stat()
        assert (got.st_mode, got.st_mtime_ns) == (want.st_mode, want.st_mtime_ns), rel


def test_small_files_sealed_by_workers_restore_and_deduplicate(
    tmp_path: Path, repo: Path, cli: Cli, seal_calls: dict[str, int]
) -> None:
    src = tmp_path / "src"
    files = make_files(src)

    result = cli("backup", "-r", repo, "--json", src)

    assert result.exit_code == 0, result
    summary = result.event("summary")
    assert summary["files_new"] == len(files)
    assert summary["errors"] == 0
    # The workers did the reading once the backup had read its first files itself.
    assert seal_calls["batches"] > 0
    assert seal_calls["sealed"] >= FILES - SEAL_AFTER_FILES - 100
    assert_restores(cli, repo, tmp_path / "out", src, files)
    assert cli("check", "-r", repo, "--read-data").exit_code == 0

    # The same content under other names adds no data: the backup's dedup check sees
    # every blob a worker sealed (only trees are new).
    data_packs = sorted((repo / "data").rglob("*"))
    copy = tmp_path / "copy"
    make_files_like(src, copy, files)
    again = cli("backup", "-r", repo, "--json", copy)
    assert again.exit_code == 0, again
    assert again.event("summary")["files_new"] == len(files)
    assert sorted((repo / "data").rglob("*")) == data_packs


def make_files_like(src: Path, copy: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = copy / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_a_seal_worker_that_dies_is_named_and_the_backup_reads_on(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    files = make_files(src)
    original = SealWorkers._take
    taken = {"n": 0}

    def dying(self: SealWorkers) -> subprocess.Popen[bytes]:
        process = original(self)
        taken["n"] += 1
        if taken["n"] == 3:
            process.kill()
            process.wait()
        return process

    monkeypatch.setattr(SealWorkers, "_take", dying)

    result = cli("backup", "-r", repo, "--json", src)

    # The batch the dead worker had is read by the backup itself, and so is the rest.
    assert result.exit_code == 0, result
    assert "seal worker" in result.output and "reads its files itself" in result.output
    assert "Traceback" not in result.output
    assert result.event("summary")["files_new"] == len(files)
    assert_restores(cli, repo, tmp_path / "out", src, files)
    assert cli("check", "-r", repo, "--read-data").exit_code == 0


def test_a_seal_worker_that_cannot_start_leaves_the_reading_to_the_backup(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    files = make_files(src)
    monkeypatch.setattr(worker_processes.sys, "executable", str(tmp_path / "no-such-python"))

    result = cli("backup", "-r", repo, src)

    assert result.exit_code == 0, result
    assert "cannot start a seal worker" in result.output
    assert_restores(cli, repo, tmp_path / "out", src, files)


def test_a_killed_backup_leaves_no_seal_worker(tmp_path: Path, password: str) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    for i in range(FILES):
        (src / "a" / f"f{i}").write_bytes(b"%d\n" % i * 40)
    # Read by the backup itself for minutes (holes read as zeros): it outlives the workers'
    # start by far, so the kill below lands while they run.
    (src / "b").mkdir()
    with open(src / "b" / "holes", "wb") as huge:
        huge.truncate(1 << 40)
    repo = tmp_path / "repo"
    marker = f"BBACKUP_TEST_MARKER={os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "BBACKUP_PASSWORD": password, marker.split("=")[0]: marker}
    init = [sys.executable, "-m", "bbackup", "init", "-r", str(repo), *CHEAPEST_KDF]
    subprocess.run(init, env=env, check=True, capture_output=True, timeout=60)
    backup = subprocess.Popen(
        [sys.executable, "-m", "bbackup", "backup", "-r", str(repo), "-q", str(src)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not workers_marked("bbackup.ops.seal_worker", marker) and backup.poll() is None:
            assert time.monotonic() < deadline, "no seal worker started"
            time.sleep(0.05)
        assert backup.poll() is None, "the backup ended before it could be killed"
        backup.send_signal(signal.SIGKILL)
        backup.wait()
        deadline = time.monotonic() + 15
        while workers_marked("bbackup.ops.seal_worker", marker):
            assert time.monotonic() < deadline, "seal workers outlived the backup"
            time.sleep(0.05)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()


def test_a_sealer_reports_each_file_as_the_reader_threads_would(tmp_path: Path) -> None:
    master = MasterKey.generate()
    cipher = Cipher(master)
    text = b"some text\n" * 100
    (tmp_path / "text").write_bytes(text)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "large").write_bytes(b"x" * MIN_CHUNK)
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "text", tmp_path / "link")
    names = ["text", "empty", "large", "dir", "fifo", "link", "missing"]

    outcomes = FileSealer(master, 3, MIN_CHUNK).seal_batch(
        [os.fsencode(tmp_path / n) for n in names]
    )

    by_name = dict(zip(names, outcomes, strict=True))
    tag, blob_id, size, sealed, changed = by_name["text"]
    assert (tag, size, changed) == (SEALED, len(text), False)
    assert blob_id == cipher.blob_id(text)
    payload = cipher.open_blob(BlobType.DATA, blob_id, sealed)
    assert payload == compress(text, 3) and decompress(payload, len(text)) == text
    assert by_name["empty"] == [EMPTY, False]
    assert by_name["large"] == [LARGE]
    # Anything but a regular file put in a file's place is that file's error, never
    # followed (the symlink) and never waited on (the FIFO).
    for name in ("dir", "fifo"):
        assert by_name[name][0] == FAILED and by_name[name][2] == "no longer a regular file"
    assert by_name["link"][0] == FAILED
    assert by_name["missing"][:2] == [FAILED, 2]
