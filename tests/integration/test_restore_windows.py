"""A restore planned and fetched window by window (a few files at a time here, thousands in
use): the result is the same as in one go, across hard links, shared blobs, damage,
--verify, --dry-run and a second restore over the first."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path

from bbackup.errors import ExitCode
from bbackup.ops import restore_fetch, restore_plan

MiB = 1024 * 1024


def tree_states(root: Path) -> dict[str, tuple[bytes, str, int, int]]:
    """Every entry under `root`: content (files), mode, mtime in ns, link count."""
    states = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        states[str(path.relative_to(root))] = (
            content,
            oct(st.st_mode),
            st.st_mtime_ns,
            st.st_nlink if stat.S_ISREG(st.st_mode) else 0,
        )
    return states


@pytest.fixture
def windows_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of two files, the packs of the last file of each carried over."""
    monkeypatch.setattr(restore_plan, "WINDOW_FILES", 2)
    monkeypatch.setattr(restore_fetch, "_CARRY_FILES", 1)


@pytest.fixture
def small_packs(tmp_path: Path, cli: Cli) -> Path:
    path = tmp_path / "repo"
    assert cli("init", "-r", path, "--pack-size", "4").exit_code == 0
    return path


def windowed_tree(src: Path, make_tree: MakeTree) -> Path:
    """Directories of small files, one multi-pack file, a blob shared by files windows
    apart, empty files and a hard link whose two names are planned in different windows."""
    shared = os.urandom(300 * 1024)
    spec: dict[str, object] = {}
    for d in range(4):
        spec[f"d{d}"] = {
            **{f"f{i}.txt": f"file {d}/{i}\n" * (i + 1) for i in range(5)},
            "shared.bin": shared,
            "empty": b"",
            "sub": {"deep.bin": os.urandom(50 * 1024)},
        }
    spec["big.bin"] = os.urandom(9 * MiB)
    make_tree(src, spec)  # type: ignore[arg-type]
    os.link(src / "d0" / "f1.txt", src / "d3" / "sub" / "linked.txt")
    os.chmod(src / "d2", 0o750)
    for i, path in enumerate(sorted(src.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i))
    return src


_VARYING = ("duration_seconds", "requests", "bytes_to_download")


def restore_summaries(cli: Cli, repo: Path, target: Path) -> list[dict[str, object]]:
    """The summaries of a restore with --verify into `target` and of a second one over
    it, without the timings and the bytes downloaded (windows this small split packs
    between two reads, which then skip what lies between)."""
    out = []
    for _ in range(2):
        result = cli("restore", "latest", "-r", repo, "-t", target, "--verify", "--json")
        assert result.exit_code == 0, result
        summary = result.event("summary")
        out.append({k: v for k, v in summary.items() if k not in _VARYING})
    return out


def test_a_restore_in_windows_of_two_files_is_identical_to_the_source(
    tmp_path: Path,
    small_packs: Path,
    cli: Cli,
    make_tree: MakeTree,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = windowed_tree(tmp_path / "src", make_tree)
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    whole = restore_summaries(cli, small_packs, tmp_path / "whole")
    monkeypatch.setattr(restore_plan, "WINDOW_FILES", 2)
    monkeypatch.setattr(restore_fetch, "_CARRY_FILES", 1)
    target = tmp_path / "out"

    windowed = restore_summaries(cli, small_packs, target)

    # Directory times too: each directory got its metadata after its last file landed.
    assert tree_states(restored_path(target, src)) == tree_states(src)
    # Then again over the first restore: every file found unchanged, window by window.
    assert windowed == whole
    first, again = windowed
    assert first["links"] == 1 and first["files"] > 4 * 5
    # Empty files have nothing to read back.
    assert first["verified_files"] == first["files"] - 4 and not first["verify_failures"]
    assert again["unchanged"] >= first["files"] - 1  # (the hard-linked file is written again)
    assert again["verified_files"] == first["files"] and not again["verify_failures"]


def test_a_dry_run_in_windows_counts_what_the_restore_does(
    tmp_path: Path, small_packs: Path, cli: Cli, make_tree: MakeTree, windows_of_two: None
) -> None:
    src = windowed_tree(tmp_path / "src", make_tree)
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    args = ("restore", "latest", "-r", small_packs, "-t", tmp_path / "out", "--json")

    planned = cli(*args, "--dry-run").event("summary")

    assert not (tmp_path / "out").exists()
    done = cli(*args).event("summary")
    for key in ("files", "bytes", "bytes_to_download", "dirs"):
        assert planned[key] == done[key], key


def test_a_missing_pack_in_windows_costs_the_files_it_costs_in_one_window(
    tmp_path: Path,
    small_packs: Path,
    cli: Cli,
    make_tree: MakeTree,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = windowed_tree(tmp_path / "src", make_tree)
    assert cli("backup", "-r", small_packs, src).exit_code == 0
    min(p for p in (small_packs / "data").glob("*/*")).unlink()

    def damaged(target: Path) -> list[tuple[str, str, list[str]]]:
        """Each damaged file, where it was kept, and the blobs it lost (in any order:
        they are noted as reads fail)."""
        result = cli("restore", "latest", "-r", small_packs, "-t", target, "--json")
        assert result.exit_code == ExitCode.INTEGRITY, result
        return [
            (
                d["path"].replace(str(target), ""),
                d["kept_as"].replace(str(target), ""),
                sorted(f"{b['id']} {b['pack']} {b['problem']}" for b in d["blobs"]),
            )
            for d in result.event("summary")["damaged"]
        ]

    whole = damaged(tmp_path / "whole")
    monkeypatch.setattr(restore_plan, "WINDOW_FILES", 2)
    monkeypatch.setattr(restore_fetch, "_CARRY_FILES", 1)

    windowed = damaged(tmp_path / "out")

    assert windowed == whole and whole
    # The same files restored, and the same partial ones (written just now: their times
    # are the restore's).
    states = [tree_states(tmp_path / t) for t in ("out", "whole")]
    for state in states:
        for name, (content, mode, _, links) in state.items():
            if name.endswith(".bbackup-partial"):
                state[name] = (content, mode, 0, links)
    assert states[0] == states[1]
