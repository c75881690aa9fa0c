"""restore --include / --exclude (patterns, no match, bad pattern), --dry-run, each
--overwrite mode, --delete and --verify, judged by what lands in the target, what is
downloaded, and the exit code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree, restored_path

from bbackup.errors import ExitCode
from bbackup.ops import restore_files

KiB = 1024
OLD_NS = 1_600_000_000_000_000_000


@pytest.fixture
def snapshot_of(tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree) -> Path:
    """The source of the repository's only snapshot: files at three depths, binary and
    text, each with an old mtime."""
    src = make_tree(
        tmp_path / "src",
        {
            "a.txt": "alpha\n",
            "b.bin": os.urandom(200 * KiB),
            "docs": {"c.txt": "gamma\n", "d.bin": os.urandom(300 * KiB)},
            "cache": {"e.tmp": "temporary\n", "deep": {"f.txt": "phi\n"}},
        },
    )
    for path in src.rglob("*"):
        os.utime(path, ns=(OLD_NS, OLD_NS))
    assert cli("backup", "-r", repo, src).exit_code == 0
    return src


def restore(cli: Cli, repo: Path, target: Path, *flags: str | Path) -> CliResult:
    return cli("restore", "latest", "-r", repo, "--target", target, *flags)


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def downloaded(result: CliResult) -> int:
    return int(result.event("summary")["requests"]["bytes_down"])


# ---- include / exclude -----------------------------------------------------------------


def test_include_and_exclude_patterns_select_by_name_and_by_path(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path
) -> None:
    src = snapshot_of
    out = tmp_path / "out"

    result = restore(cli, repo, out, "--include", "*.txt", "--exclude", f"{src}/cache")

    assert result.exit_code == 0, result
    assert files_under(restored_path(out, src)) == {"a.txt": b"alpha\n", "docs/c.txt": b"gamma\n"}
    assert not (restored_path(out, src) / "cache").exists()  # nothing selected in it


def test_an_included_directory_brings_everything_in_it_but_the_excluded(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path
) -> None:
    src = snapshot_of
    out = tmp_path / "out"

    result = restore(cli, repo, out, "-i", f"{src}/cache", "-e", "*.tmp")

    assert result.exit_code == 0, result
    assert files_under(restored_path(out, src)) == {"cache/deep/f.txt": b"phi\n"}


@pytest.mark.parametrize("flag", ["--include", "--exclude"])
def test_a_pattern_that_matches_nothing_is_an_error_and_writes_nothing(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path, flag: str
) -> None:
    out = tmp_path / "out"

    result = restore(cli, repo, out, "--include", "*.txt", flag, "*.nothing-has-this")

    assert result.exit_code == ExitCode.NO_MATCH == 21, result
    [line] = result.stderr.splitlines()
    assert line == (
        f"bbackup: error: {flag} '*.nothing-has-this' matches nothing in snapshot "
        f"{result_snapshot(cli, repo)}; nothing was restored"
    )
    assert not out.exists()


def result_snapshot(cli: Cli, repo: Path) -> str:
    listed = cli("snapshots", "-r", repo, "--json").snapshot_list()
    return str(listed[-1]["id"])[:8]


@pytest.mark.parametrize("pattern", ["[", "docs/[a-", "", "*.[!"])
def test_an_invalid_pattern_is_a_usage_error(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path, pattern: str
) -> None:
    result = restore(cli, repo, tmp_path / "out", "--include", pattern)

    assert result.exit_code == ExitCode.USAGE, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"bbackup: error: --include {pattern!r}: ")
    assert not (tmp_path / "out").exists()


# ---- dry run ---------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_says_what_it_would_write_and_download(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path
) -> None:
    src = snapshot_of
    out = tmp_path / "out"

    planned = restore(cli, repo, out, "--dry-run", "--json")

    assert planned.exit_code == 0, planned
    assert not out.exists()
    summary = planned.event("summary")
    assert summary["dry_run"] is True
    assert summary["files"] == 6
    assert summary["bytes"] == sum(len(c) for c in files_under(src).values())
    writes = {e["path"] for e in planned.events() if e.get("action") == "write"}
    assert writes == {str(restored_path(out, src) / p) for p in files_under(src)}
    human = restore(cli, repo, out, "--dry-run")
    assert f"would write {restored_path(out, src) / 'docs' / 'd.bin'}" in human.stdout
    assert "nothing was changed" in human.stdout

    real = restore(cli, repo, out, "--json")
    assert real.exit_code == 0, real
    done = real.event("summary")
    assert done["bytes_to_download"] == summary["bytes_to_download"] > 500 * KiB
    assert downloaded(real) >= summary["bytes_to_download"]

    again = restore(cli, repo, out, "--dry-run", "--json").event("summary")
    assert (again["files"], again["bytes_to_download"], again["unchanged"]) == (0, 0, 6)


# ---- overwrite -------------------------------------------------------------------------


def tamper(restored: Path) -> None:
    """a.txt: same size and mtime, other content; b.bin: other content, newer; docs/c.txt:
    the snapshot's content with a newer mtime; docs/d.bin: gone; cache/e.tmp: other
    content, older than the snapshot's."""
    (restored / "a.txt").write_text("ALPHA\n")
    os.utime(restored / "a.txt", ns=(OLD_NS, OLD_NS))
    (restored / "b.bin").write_bytes(b"changed")
    os.utime(restored / "docs" / "c.txt", ns=(OLD_NS + 10**9, OLD_NS + 10**9))
    (restored / "docs" / "d.bin").unlink()
    (restored / "cache" / "e.tmp").write_text("older and other\n")
    os.utime(restored / "cache" / "e.tmp", ns=(OLD_NS - 10**9, OLD_NS - 10**9))


@pytest.mark.parametrize(
    ("mode", "rewritten"),
    [
        ("if-changed", {"b.bin", "docs/d.bin", "cache/e.tmp"}),
        (
            "always",
            {"a.txt", "b.bin", "docs/c.txt", "docs/d.bin", "cache/e.tmp", "cache/deep/f.txt"},
        ),
        ("if-newer", {"docs/d.bin", "cache/e.tmp"}),
        ("never", {"docs/d.bin"}),
    ],
)
def test_each_overwrite_mode_rewrites_what_it_promises(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path, mode: str, rewritten: set[str]
) -> None:
    src = snapshot_of
    out = tmp_path / "out"
    assert restore(cli, repo, out).exit_code == 0
    restored = restored_path(out, src)
    tamper(restored)
    tampered = files_under(restored)

    result = restore(cli, repo, out, "--overwrite", mode, "--json")

    assert result.exit_code == 0, result
    original = files_under(src)
    now = files_under(restored)
    for path in original:
        expected = original[path] if path in rewritten else tampered.get(path)
        assert now.get(path) == expected, path
    summary = result.event("summary")
    assert summary["files"] == len(rewritten)
    if mode == "if-changed":
        # c.txt's content matched: only its mtime was put back; nothing else was touched.
        assert os.stat(restored / "docs" / "c.txt").st_mtime_ns == OLD_NS
        assert summary["unchanged"] == 3
        assert summary["bytes"] == sum(len(original[p]) for p in rewritten)


def test_if_changed_on_an_identical_target_downloads_no_data(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path
) -> None:
    out = tmp_path / "out"
    first = restore(cli, repo, out, "--json")
    again = restore(cli, repo, out, "--json")

    assert again.exit_code == 0, again
    assert again.event("summary")["unchanged"] == 6
    assert again.event("summary")["bytes_to_download"] == 0
    assert downloaded(again) < downloaded(first) / 10


# ---- delete ----------------------------------------------------------------------------


def test_delete_removes_what_the_snapshot_lacks_inside_its_paths_only(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path, make_tree: MakeTree
) -> None:
    src = snapshot_of
    out = tmp_path / "out"
    outside = make_tree(tmp_path / "outside", {"keep.txt": "outside\n"})
    assert restore(cli, repo, out).exit_code == 0
    restored = restored_path(out, src)
    (restored / "extra.txt").write_text("not in the snapshot\n")
    (restored / "keep.log").write_text("excluded from the restore\n")
    make_tree(restored / "docs" / "old", {"x.txt": "x\n", "y": {"z": "z\n"}})
    (restored / "docs" / "old" / "escape").symlink_to(outside)
    (restored / "cache" / "link-out").symlink_to(outside / "keep.txt")
    (out / "beside-the-snapshot.txt").write_text("outside the backed-up paths\n")

    planned = restore(cli, repo, out, "--delete", "--exclude", "*.log", "--dry-run")
    assert planned.exit_code == 0, planned
    assert (restored / "extra.txt").exists()
    result = restore(cli, repo, out, "--delete", "--exclude", "*.log", "--json")

    assert result.exit_code == 0, result
    assert result.event("summary")["deleted"] == 3
    for name in ("extra.txt", "docs/old", "cache/link-out"):
        assert f"would delete {restored / name}" in planned.stdout
        assert not os.path.lexists(restored / name), name
    assert (restored / "keep.log").exists()
    assert (out / "beside-the-snapshot.txt").exists()
    assert files_under(outside) == {"keep.txt": b"outside\n"}
    assert {p: c for p, c in files_under(restored).items() if p != "keep.log"} == files_under(src)


# ---- verify ----------------------------------------------------------------------------


def test_verify_reads_back_every_restored_file(
    tmp_path: Path, repo: Path, cli: Cli, snapshot_of: Path
) -> None:
    src = snapshot_of
    out = tmp_path / "out"

    result = restore(cli, repo, out, "--verify", "--json")

    assert result.exit_code == 0, result
    summary = result.event("summary")
    assert summary["verified_files"] == 6
    assert summary["verified_bytes"] == sum(len(c) for c in files_under(src).values())
    assert summary["verify_failures"] == []
    human = restore(cli, repo, out, "--verify")  # unchanged files are verified too
    assert "verified 6 files" in human.stdout


def test_verify_names_a_file_that_differs_from_the_snapshot_and_exits_13(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    snapshot_of: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = snapshot_of
    real_rename = restore_files.FileWriter._rename_complete

    def corrupt_then_rename(
        self: restore_files.FileWriter, file: restore_files.RestoredFile
    ) -> None:
        # A disk that returns other bytes than were written, as seen by the read back.
        if file.name == b"d.bin":
            parent_fd = self.directories.acquire(file.parent)
            try:
                fd = os.open(file.partial, os.O_WRONLY, dir_fd=parent_fd)
                os.pwrite(fd, b"\0\0\0", 100 * KiB)
                os.close(fd)
            finally:
                self.directories.release(file.parent)
        real_rename(self, file)

    monkeypatch.setattr(restore_files.FileWriter, "_rename_complete", corrupt_then_rename)
    out = tmp_path / "out"

    result = restore(cli, repo, out, "--verify")

    assert result.exit_code == ExitCode.INTEGRITY, result
    bad = restored_path(out, src) / "docs" / "d.bin"
    [line] = [x for x in result.stderr.splitlines() if x.startswith("verify failed")]
    assert line.startswith(f"verify failed: {bad}: content differs from the snapshot")
    assert "verified 5 files" in result.stdout and "1 differ" in result.stdout
