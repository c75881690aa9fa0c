"""Large files: their chunks are sealed by several threads at once, with the same result
as reading them in one thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, restored_path

import bbackup.ops.chunk_pipeline

MiB = 1024 * 1024


def test_a_large_file_sealed_in_parallel_restores_and_dedups_like_one_read_serially(
    tmp_path: Path, repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    text = b"".join(b"line %d of a log file\n" % i for i in range(400_000))  # ~9 MiB
    (src / "big.bin").write_bytes(os.urandom(5 * MiB) + text + os.urandom(3 * MiB))
    monkeypatch.setattr(bbackup.ops.chunk_pipeline, "LARGE_FILE", 1 * MiB)

    first = cli("backup", "-r", repo, "--json", src)
    assert first.exit_code == 0, first
    size = (src / "big.bin").stat().st_size
    assert size <= first.event("summary")["bytes_added"] < size + 64 * 1024  # + the trees

    # The same bytes under another name, read serially: every chunk is already stored.
    monkeypatch.setattr(bbackup.ops.chunk_pipeline, "LARGE_FILE", 1 << 60)
    os.link(src / "big.bin", src / "copy.bin")
    second = cli("backup", "-r", repo, "--json", "--type", "full", src)
    assert second.exit_code == 0, second
    assert second.event("summary")["bytes_added"] < 64 * 1024  # new trees only

    target = tmp_path / "out"
    assert cli("restore", "-r", repo, "latest", "--target", target).exit_code == 0
    for name in ("big.bin", "copy.bin"):
        restored = restored_path(target, src / name)
        assert restored.read_bytes() == (src / "big.bin").read_bytes()
