"""A restore killed part way leaves no incomplete file under its final name, and run again
(the default --overwrite if-changed) it ends byte-identical while downloading only what
the first run had not finished, plus less than 10 % of the whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli_harness import Cli, MakeTree, restored_path

KILL_RUNNER = Path(__file__).resolve().parent.parent / "kill_runner.py"
KiB = 1024


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def restore_killed_at(repo: Path, out: Path, fault: str) -> None:
    """Restore latest into `out` over one connection in a process killed (SIGKILL) at
    `fault` (kill_runner.py's --kill syntax)."""
    killed = subprocess.run(
        [sys.executable, KILL_RUNNER, "--kill", fault, "--",
         "restore", "latest", "-r", repo, "--target", out, "--connections", "1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr


def test_an_interrupted_restore_resumes_and_downloads_little_again(
    tmp_path: Path, cli: Cli, make_tree: MakeTree
) -> None:
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    spec = {f"dir{i % 3}": {} for i in range(3)}
    for i in range(60):  # one blob each, about 15 MiB over four or five packs
        spec[f"dir{i % 3}"][f"file{i:02}.bin"] = os.urandom(250 * KiB + i)  # type: ignore[index]
    src = make_tree(tmp_path / "src", spec)  # type: ignore[arg-type]
    assert cli("backup", "-r", repo, src).exit_code == 0
    source = files_under(src)
    total = sum(len(c) for c in source.values())

    reference = cli("restore", "latest", "-r", repo, "--target", tmp_path / "ref", "--json")
    assert reference.exit_code == 0, reference
    full_download = reference.event("summary")["requests"]["bytes_down"]
    assert full_download > total

    out = tmp_path / "out"
    restore_killed_at(repo, out, "get:data/:3:before")

    restored = restored_path(out, src)
    left = files_under(restored)
    complete = {p: c for p, c in left.items() if not p.endswith(".bbackup-partial")}
    assert 0 < len(complete) < len(source), "the kill did not land part way"
    for path, content in complete.items():
        assert content == source[path], f"{path} sits under its final name incomplete"
    missing = total - sum(len(c) for c in complete.values())

    again = cli("restore", "latest", "-r", repo, "--target", out, "--json")

    assert again.exit_code == 0, again
    assert files_under(restored) == source
    summary = again.event("summary")
    assert summary["unchanged"] == len(complete)
    assert summary["files"] == len(source) - len(complete)
    downloaded = summary["requests"]["bytes_down"]
    assert downloaded < missing + full_download // 10, (downloaded, missing, full_download)


def test_a_large_file_cut_off_part_way_is_finished_from_its_partial_file(
    tmp_path: Path, cli: Cli, make_tree: MakeTree
) -> None:
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    content = os.urandom(14 * 1024 * KiB)  # a dozen blobs over four packs
    src = make_tree(tmp_path / "src", {"disk.img": content})
    assert cli("backup", "-r", repo, src).exit_code == 0
    out = tmp_path / "out"
    restore_killed_at(repo, out, "get:data/:4:before")
    restored = restored_path(out, src)
    assert not (restored / "disk.img").exists()
    assert (restored / "disk.img.bbackup-partial").exists()

    again = cli("restore", "latest", "-r", repo, "--target", out, "--json")

    assert again.exit_code == 0, again
    assert (restored / "disk.img").read_bytes() == content
    assert not (restored / "disk.img.bbackup-partial").exists()
    summary = again.event("summary")
    reused = summary["bytes_reused"]
    assert reused >= 3 * 512 * KiB  # three reads, each of one blob or more (512 KiB at least)
    assert summary["bytes"] == len(content) - reused
    missing = len(content) - reused
    assert summary["requests"]["bytes_down"] < missing + len(content) // 10


def test_a_partial_name_linked_to_a_file_outside_is_not_written_through(
    tmp_path: Path, cli: Cli, make_tree: MakeTree
) -> None:
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo).exit_code == 0
    content = os.urandom(300 * KiB)
    src = make_tree(tmp_path / "src", {"f.bin": content})
    assert cli("backup", "-r", repo, src).exit_code == 0
    outside = make_tree(tmp_path / "outside", {"secret": content[:1000] + b"outside"})
    restored = restored_path(tmp_path / "out", src)
    restored.mkdir(parents=True)
    os.link(outside / "secret", restored / "f.bin.bbackup-partial")

    result = cli("restore", "latest", "-r", repo, "--target", tmp_path / "out")

    assert result.exit_code == 0, result
    assert (restored / "f.bin").read_bytes() == content
    assert (outside / "secret").read_bytes() == content[:1000] + b"outside"
    assert (outside / "secret").stat().st_nlink == 1
