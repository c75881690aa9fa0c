"""Restore writes only inside its target: what is already in the target (a symlink, a file,
a directory where the snapshot has something else) is replaced or refused, never written
through, and nothing outside the target changes, its metadata included."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree, restored_path

from bbackup.ops import restore_target

OLD_NS = 1_500_000_000_123_456_789


def backup(cli: Cli, repo: Path, src: Path) -> str:
    """Back up `src`; the new snapshot's ID."""
    result = cli("backup", "-r", repo, "--json", src)
    assert result.exit_code == 0, result
    return str(result.event("summary")["snapshot_id"])


def restore(cli: Cli, repo: Path, snapshot: str, target: Path) -> CliResult:
    return cli("restore", snapshot, "-r", repo, "--target", target)


def tree_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `root` and `root` itself: type, mode, owner, mtime, and content
    or link target, as lstat sees them (nothing is followed)."""
    found: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            content: object = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = None
        found[str(path.relative_to(root))] = (
            stat.S_IFMT(st.st_mode),
            oct(stat.S_IMODE(st.st_mode)),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            content,
        )
    return found


@pytest.fixture
def outside(tmp_path: Path, make_tree: MakeTree) -> Path:
    """A directory outside every target, with files a restore must never touch; its
    mode and times differ from anything a restore would set."""
    root = make_tree(
        tmp_path / "outside",
        {"file": b"precious outside file\n", "secret": b"do not overwrite\n", "sub": {}},
    )
    os.chmod(root / "file", 0o604)
    os.chmod(root / "secret", 0o600)
    os.chmod(root, 0o701)
    for path in [*root.rglob("*"), root]:
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return root


def test_a_symlink_where_the_snapshot_has_a_directory_is_replaced_not_followed(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, outside: Path
) -> None:
    src = make_tree(tmp_path / "src", {"x": {"file": os.urandom(5000), "more": "more\n"}})
    os.chmod(src / "x", 0o750)
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    restored = restored_path(target, src)
    restored.mkdir(parents=True)
    (restored / "x").symlink_to(outside)
    before = tree_state(outside)

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert tree_state(outside) == before
    assert not (restored / "x").is_symlink()
    assert tree_state(restored / "x") == tree_state(src / "x")


def test_two_snapshots_of_a_symlink_then_a_directory_restore_into_one_target_inside_it(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, outside: Path
) -> None:
    src = make_tree(tmp_path / "src", {"kept.txt": "kept\n"})
    (src / "x").symlink_to(outside)
    first = backup(cli, repo, src)
    (src / "x").unlink()
    make_tree(src / "x", {"file": b"from the second snapshot\n", "secret": b"replaced\n"})
    second = backup(cli, repo, src)
    target = tmp_path / "target"
    before = tree_state(outside)

    results = [restore(cli, repo, first, target), restore(cli, repo, second, target)]

    assert [r.exit_code for r in results] == [0, 0], results
    assert tree_state(outside) == before
    restored = restored_path(target, src)
    assert tree_state(restored / "x") == tree_state(src / "x")


@pytest.mark.parametrize("kind", ["file", "empty file", "fifo", "symlink"])
def test_a_symlink_where_the_snapshot_has_a_non_directory_is_replaced_not_followed(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, outside: Path, kind: str
) -> None:
    src = make_tree(tmp_path / "src", {})
    entry = src / "entry"
    if kind == "file":
        entry.write_bytes(os.urandom(3000))
    elif kind == "empty file":
        entry.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to("somewhere/else")
    if kind != "symlink":  # Linux has no mode of a symlink's own
        os.chmod(entry, 0o640)
    os.utime(entry, ns=(OLD_NS + 7, OLD_NS + 7), follow_symlinks=False)
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    restored = restored_path(target, src)
    restored.mkdir(parents=True)
    (restored / "entry").symlink_to(outside / "secret")
    before = tree_state(outside)

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert tree_state(outside) == before
    assert tree_state(restored / "entry") == tree_state(entry)


@pytest.mark.parametrize("where", ["top of the snapshot's path", "inside the source tree"])
def test_a_symlink_among_the_ancestors_of_restored_entries_is_not_followed(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, outside: Path, where: str
) -> None:
    src = make_tree(tmp_path / "src", {"a": {"b": {"c": {"file": b"deep\n"}, "f": b"f\n"}}})
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    if where == "top of the snapshot's path":
        first_component = os.path.abspath(src).strip("/").split("/")[0]
        link = target / first_component
    else:
        link = restored_path(target, src) / "a" / "b"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    before = tree_state(outside)

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert tree_state(outside) == before
    assert not link.is_symlink()
    assert tree_state(restored_path(target, src) / "a") == tree_state(src / "a")


@pytest.mark.parametrize("linked_dir", ["d1", "d2"])
def test_hard_links_are_not_redirected_by_a_symlink_in_the_target(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, outside: Path, linked_dir: str
) -> None:
    src = make_tree(tmp_path / "src", {"d1": {"file": os.urandom(4000)}, "d2": {}})
    os.link(src / "d1" / "file", src / "d2" / "file")
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    restored = restored_path(target, src)
    restored.mkdir(parents=True)
    (restored / linked_dir).symlink_to(outside)
    before = tree_state(outside)

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert tree_state(outside) == before
    assert tree_state(restored) == tree_state(src)
    assert (restored / "d1" / "file").stat().st_ino == (restored / "d2" / "file").stat().st_ino


@pytest.mark.parametrize("kind", ["file", "fifo", "symlink"])
def test_an_empty_directory_where_the_snapshot_has_a_non_directory_is_replaced(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, kind: str
) -> None:
    src = make_tree(tmp_path / "src", {})
    entry = src / "entry"
    if kind == "file":
        entry.write_bytes(b"a file\n")
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to("elsewhere")
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    (restored_path(target, src) / "entry").mkdir(parents=True)

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert tree_state(restored_path(target, src) / "entry") == tree_state(entry)


def test_a_file_where_the_snapshot_has_a_directory_is_replaced(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    src = make_tree(tmp_path / "src", {"x": {"file": b"inside x\n"}})
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    restored = restored_path(target, src)
    restored.mkdir(parents=True)
    (restored / "x").write_bytes(b"a file in the way\n")

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert tree_state(restored / "x") == tree_state(src / "x")


@pytest.mark.parametrize("descriptor", ["kept open", "closed and opened again"])
def test_a_directory_swapped_for_a_symlink_during_the_restore_is_not_followed(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    make_tree: MakeTree,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
    descriptor: str,
) -> None:
    src = make_tree(
        tmp_path / "src",
        {"a": {"first": b"written first\n"}, "d": {"file": b"file\n", "secret": b"secret\n"}},
    )
    os.chmod(src / "d", 0o750)
    os.utime(src / "d", ns=(OLD_NS + 99, OLD_NS + 99))
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    restored_dir = restored_path(target, src) / "d"
    moved = restored_dir.with_name("moved")
    before = tree_state(outside)
    real_pwrite = os.pwrite

    def pwrite_after_swapping(fd: int, data: bytes, offset: int) -> int:
        # Someone with write access to the target replaces a restored directory with
        # a symlink once the restore has started writing.
        if not restored_dir.is_symlink():
            restored_dir.rename(moved)
            restored_dir.symlink_to(outside)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite_after_swapping)
    if descriptor != "kept open":
        monkeypatch.setattr(restore_target, "MAX_OPEN_DIRECTORIES", 1)
    result = restore(cli, repo, snapshot, target)

    assert "Traceback" not in result.output
    assert tree_state(outside) == before
    if descriptor == "kept open":  # the directory it made, wherever it is now
        assert result.exit_code == 0, result
        assert tree_state(moved) == tree_state(src / "d")
    else:  # found again by name: refused
        assert result.exit_code == 1, result
        for path in ("d/file: cannot create", "d/secret: cannot create", "d: cannot set metadata"):
            assert f"{path}: Not a directory" in result.stderr


def test_a_link_planted_where_a_file_is_about_to_be_created_is_refused(
    tmp_path: Path,
    repo: Path,
    cli: Cli,
    make_tree: MakeTree,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ["a", "b", "c", "d"]
    src = make_tree(tmp_path / "src", {n: f"content of {n}\n" for n in names})
    snapshot = backup(cli, repo, src)
    target = tmp_path / "target"
    restored = restored_path(target, src)
    before = tree_state(outside)
    real_pwrite = os.pwrite
    planted: list[str] = []

    def pwrite_after_planting(fd: int, data: bytes, offset: int) -> int:
        # Someone with write access to the target puts a hard link to a file outside
        # it, or a symlink, at the names files not created yet are written under (a file
        # at its final name is replaced by the rename that puts the complete one there).
        if not planted:
            for n in names:
                partial = restored / f"{n}.bbackup-partial"
                if not (restored / n).exists() and not partial.exists():
                    if len(planted) % 2:
                        partial.symlink_to(outside / "secret")
                    else:
                        os.link(outside / "file", partial)
                    planted.append(n)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite_after_planting)
    result = restore(cli, repo, snapshot, target)

    assert len(planted) >= 2, planted
    assert result.exit_code == 1, result
    for n in planted:
        assert f"{n}: cannot create: File exists" in result.stderr
    assert "Traceback" not in result.output
    assert tree_state(outside) == before


def test_a_socket_in_the_snapshot_is_skipped_and_the_rest_restored(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": "alpha\n", "sub": {"b.bin": os.urandom(3000)}})
    monkeypatch.chdir(src)  # a socket's path is limited to 107 bytes: bind a short one
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind("listening.sock")
        snapshot = backup(cli, repo, src)
    target = tmp_path / "target"

    result = restore(cli, repo, snapshot, target)

    assert result.exit_code == 0, result
    assert "listening.sock: sockets are not restored" in result.stderr
    restored = restored_path(target, src)
    assert not (restored / "listening.sock").exists()
    backed_up = tree_state(src)
    del backed_up["listening.sock"]
    assert tree_state(restored) == backed_up
