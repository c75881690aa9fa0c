"""Backup then restore of every kind of file: bytes and metadata come back as they were."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cli_harness import Cli, restored_path

XATTR_NAME = "user.test"
XATTR_VALUE = b"xattr value \x00\xff"
OTHER_UID, OTHER_GID = 4321, 8765
NON_UTF8_FILE = b"caf\xe9"
NON_UTF8_DIR = b"dir\xff\xfe"


def _set_xattr(path: Path) -> bool:
    """Set the test xattr; False if this filesystem refuses user xattrs."""
    try:
        os.setxattr(path, XATTR_NAME, XATTR_VALUE)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    return True


def build_every_kind(src: Path) -> bool:
    """A source tree with one of everything; returns whether xattrs could be set."""
    src.mkdir()
    (src / "empty").write_bytes(b"")
    (src / "small.txt").write_bytes(b"small file\n")
    (src / "multi-chunk.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "nested" / "deeper" / "leaf.txt").write_bytes(b"leaf\n" * 100)
    (src / "nested" / "empty-dir").mkdir()
    (src / "empty-dir").mkdir()
    os.symlink("small.txt", src / "link")
    os.symlink("does/not/exist", src / "dangling")
    (src / "hard-a").write_bytes(b"shared by two names\n")
    os.link(src / "hard-a", src / "hard-b")
    os.mkfifo(src / "fifo")
    bsrc = os.fsencode(src)
    with open(bsrc + b"/" + NON_UTF8_FILE, "wb") as f:
        f.write(b"non-utf8 name\n")
    os.mkdir(bsrc + b"/" + NON_UTF8_DIR)
    with open(bsrc + b"/" + NON_UTF8_DIR + b"/inside", "wb") as f:
        f.write(b"inside a non-utf8 directory\n")
    (src / "exec.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "exec.sh", 0o751)
    (src / "read-only").write_bytes(b"read only\n")
    os.chmod(src / "read-only", 0o400)
    (src / "setgid-dir").mkdir()
    (src / "setgid-dir" / "f").write_bytes(b"in setgid dir\n")
    os.chmod(src / "setgid-dir", 0o2751)
    (src / "sticky-dir").mkdir()
    os.chmod(src / "sticky-dir", 0o1777)
    (src / "owned").write_bytes(b"owned by someone else\n")
    os.symlink("owned", src / "owned-link")
    if os.geteuid() == 0:
        os.chown(src / "owned", OTHER_UID, OTHER_GID)
        os.lchown(src / "owned-link", OTHER_UID + 1, OTHER_GID + 1)
    (src / "with-xattr").write_bytes(b"has an extended attribute\n")
    has_xattr = _set_xattr(src / "with-xattr")
    # Distinct nanosecond mtimes, deepest first so setting them does not disturb parents.
    mtime = 1_600_000_000_123_456_789
    for dirpath, dirnames, filenames in os.walk(bsrc, topdown=False):
        for name in [*filenames, *dirnames]:
            mtime += 1_000_000_007
            os.utime(dirpath + b"/" + name, ns=(mtime, mtime), follow_symlinks=False)
        mtime += 1_000_000_007
        os.utime(dirpath, ns=(mtime, mtime))
    return has_xattr


def entries(root: Path) -> dict[bytes, os.stat_result]:
    """Every path under `root` (relative, as bytes, root itself as b"") with its lstat."""
    broot = os.fsencode(root)
    found = {b"": os.lstat(broot)}
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in [*dirnames, *filenames]:
            full = dirpath + b"/" + name
            found[full[len(broot) :]] = os.lstat(full)
    return found


def user_xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names if n.startswith("user.")}


def differences(src: Path, restored: Path) -> list[str]:
    """Every way `restored` differs from `src`, in bytes or metadata."""
    before, after = entries(src), entries(restored)
    problems = [f"missing: {p!r}" for p in sorted(before.keys() - after.keys())]
    problems += [f"unexpected: {p!r}" for p in sorted(after.keys() - before.keys())]
    bsrc, bdst = os.fsencode(src), os.fsencode(restored)
    for rel in sorted(before.keys() & after.keys()):
        a, b = before[rel], after[rel]
        checks = {
            "type": (stat.S_IFMT(a.st_mode), stat.S_IFMT(b.st_mode)),
            "mode": (oct(stat.S_IMODE(a.st_mode)), oct(stat.S_IMODE(b.st_mode))),
            "uid": (a.st_uid, b.st_uid),
            "gid": (a.st_gid, b.st_gid),
            "mtime_ns": (a.st_mtime_ns, b.st_mtime_ns),
            "xattrs": (user_xattrs(bsrc + rel), user_xattrs(bdst + rel)),
        }
        if stat.S_ISREG(a.st_mode):
            with open(bsrc + rel, "rb") as fa, open(bdst + rel, "rb") as fb:
                checks["content"] = (fa.read(), fb.read())
        if stat.S_ISLNK(a.st_mode):
            checks["link target"] = (os.readlink(bsrc + rel), os.readlink(bdst + rel))
        for what, (want, got) in checks.items():
            if want != got:
                shown = (want, got) if what != "content" else (f"{len(want)} B", f"{len(got)} B")
                problems.append(f"{rel!r}: {what} {shown[0]!r} restored as {shown[1]!r}")
    return problems


def test_restore_reproduces_every_file_kind_byte_for_byte(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    src = tmp_path / "src"
    has_xattr = build_every_kind(src)

    backup = cli("backup", "-r", repo, src)
    assert backup.exit_code == 0, backup

    target = tmp_path / "restore"
    restore = cli("restore", "latest", "-r", repo, "--target", target)
    assert restore.exit_code == 0, restore

    restored = restored_path(target, src)
    assert differences(src, restored) == []
    a, b = os.lstat(restored / "hard-a"), os.lstat(restored / "hard-b")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2), "hard links restored as separate files"
    assert stat.S_ISFIFO(os.lstat(restored / "fifo").st_mode)
    assert os.readlink(restored / "dangling") == "does/not/exist"
    if os.geteuid() == 0:
        owned = os.lstat(restored / "owned")
        assert (owned.st_uid, owned.st_gid) == (OTHER_UID, OTHER_GID)
    if has_xattr:
        assert os.getxattr(restored / "with-xattr", XATTR_NAME) == XATTR_VALUE


def test_restore_include_restores_only_the_named_paths(
    tmp_path: Path, repo: Path, cli: Cli
) -> None:
    src = tmp_path / "src"
    build_every_kind(src)
    assert cli("backup", "-r", repo, src).exit_code == 0

    target = tmp_path / "partial"
    non_utf8 = os.fsdecode(os.fsencode(src) + b"/" + NON_UTF8_FILE)
    result = cli(
        "restore", "latest", "-r", repo, "--target", target,
        "--include", src / "nested", "--include", non_utf8,
    )  # fmt: skip
    assert result.exit_code == 0, result

    restored = restored_path(target, src)
    assert differences(src / "nested", restored / "nested") == []
    with open(os.fsencode(restored) + b"/" + NON_UTF8_FILE, "rb") as f:
        assert f.read() == b"non-utf8 name\n"
    assert sorted(os.listdir(os.fsencode(restored))) == sorted([b"nested", NON_UTF8_FILE])
