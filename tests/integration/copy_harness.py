"""What the copy tests share: a source repository with its own password and two snapshots,
and a field-by-field picture of a directory tree to compare a restore with its source."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, MakeTree

MiB = 1024 * 1024
SOURCE_PASSWORD = "the source's own password"
#: Times given to the source's entries, so a restore that drops them shows.
MTIME_NS = 1_700_000_000_123_456_789


@dataclass(frozen=True)
class Source:
    """A local source repository, the directory it backed up and its snapshots' IDs."""

    repo: Path
    src: Path
    password_file: Path
    #: Oldest first: the first holds big.bin and notes/, the second adds more.bin.
    snapshot_ids: list[str]

    def from_args(self) -> list[str | Path]:
        """The copy options that name and open this source."""
        return ["--from-repo", self.repo, "--from-password-file", self.password_file]


def make_source(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> Source:
    """A source repository with its own password (4 MiB packs) and two snapshots of
    `tmp_path/src`, with tags, times and a host of their own."""
    src = make_tree(
        tmp_path / "src",
        {
            "big.bin": os.urandom(3 * MiB),
            "empty": b"",
            "notes": {"a.txt": "alpha\n" * 100, "b.txt": "beta\n", "deeper": {"c": "gamma\n"}},
            "nothing": None,
        },
    )
    (src / "notes" / "link").symlink_to("../big.bin")
    (src / "dangling").symlink_to("nowhere")
    (src / "notes" / "b.txt").chmod(0o600)
    with contextlib.suppress(OSError):  # where the file system has user xattrs
        os.setxattr(src / "notes" / "a.txt", "user.origin", b"copied along")
    (src / "big.bin").chmod(0o751)
    password_file = tmp_path / "source-password"
    password_file.write_text(SOURCE_PASSWORD + "\n")
    repo = tmp_path / "source-repo"
    ids = []
    with monkeypatch.context() as env:
        env.setenv("BBACKUP_PASSWORD", SOURCE_PASSWORD)
        assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
        for day, tag in ((1, "daily"), (2, "weekly")):
            if day == 2:
                (src / "more.bin").write_bytes(os.urandom(2 * MiB))
            set_times(src)
            result = cli(
                "backup", "-r", repo, "--json", "--host", "office", "--tag", tag,
                "--time", f"2026-05-0{day}T03:00:00+02:00", src,
            )  # fmt: skip
            assert result.exit_code == 0, result
            ids.append(result.event("summary")["snapshot_id"])
    return Source(repo, src, password_file, ids)


def set_times(root: Path) -> None:
    """Give every entry under `root` (deepest first) a fixed, nanosecond mtime."""
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)


def picture(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `root`: type and permission bits, owner, mtime in ns, extended
    attributes, and the bytes of a file or the target of a symlink."""
    found: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            what: Any = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            what = path.read_bytes()
        else:
            what = None
        try:
            names = sorted(os.listxattr(path, follow_symlinks=False))
            xattrs = [(n, os.getxattr(path, n, follow_symlinks=False)) for n in names]
        except OSError:
            xattrs = []
        found[path.relative_to(root).as_posix()] = (
            st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, xattrs, what
        )  # fmt: skip
    return found


def snapshot_fields(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields of each snapshot a copy must keep (everything but its ID and tree)."""
    kept = ("time", "host", "user", "paths", "tags", "type", "program_version", "summary")
    return [{k: s[k] for k in kept} for s in listing]
