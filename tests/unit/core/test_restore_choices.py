"""The restore's pure choices: which patterns are valid and what they select, what
--overwrite does with what is in the target, and the blob-by-blob content comparison that
--overwrite if-changed and --verify share."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bbackup.errors import UsageError
from bbackup.ops.restore_compare import Action, Overwrite, decide, mismatched_blobs
from bbackup.ops.restore_files import PARTIAL_SUFFIX, partial_name
from bbackup.ops.restore_select import PathFilter, check_pattern
from bbackup.snapshot.model import FIFO, FILE, SYMLINK, Node

MTIME = 1_700_000_000_000_000_000


@pytest.mark.parametrize("pattern", ["[", "a[b", "*.[!", "x[]", "", "  ", "/"])
def test_an_unclosed_class_or_an_empty_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(UsageError, match=r"^--include "):
        check_pattern(pattern, "--include")


@pytest.mark.parametrize("pattern", ["[ab]*", "[]]x", "[!]]", "*.txt", "/home/*/docs", "a]b"])
def test_well_formed_patterns_are_accepted(pattern: str) -> None:
    assert check_pattern(pattern, "--exclude") == pattern


def test_a_name_pattern_matches_at_any_depth_and_a_path_pattern_from_the_root() -> None:
    name = PathFilter(includes=["*.txt"])
    assert name.included(b"/a/b/c.txt") and not name.included(b"/a/b/c.bin")
    path = PathFilter(includes=["/home/*/docs"])
    assert path.included(b"/home/ann/docs") and not path.included(b"/srv/home/ann/docs")
    assert [p.matches for p in path.includes] == [1]


def test_descent_is_pruned_only_where_no_path_pattern_can_match_below() -> None:
    f = PathFilter(includes=["/home/*/docs"])
    assert f.may_include_below(b"/home") and f.may_include_below(b"/home/ann")
    assert not f.may_include_below(b"/srv")
    assert PathFilter(includes=["*.txt"]).may_include_below(b"/anything")


def test_counting_can_be_switched_off_for_the_target_side() -> None:
    f = PathFilter(excludes=["*.log"])
    assert f.excluded(b"/x/a.log", count=False)
    with pytest.raises(Exception, match=r"--exclude '\*\.log' matches nothing"):
        f.require_matches("0123456789abcdef")


def node(kind: str = FILE, *, size: int = 5, mtime: int = MTIME, nlink: int = 1) -> Node:
    return Node(name=b"n", type=kind, size=size, mtime_ns=mtime, nlink=nlink, link_target=b"t")


def existing(tmp_path: Path, *, size: int = 5, mtime: int = MTIME) -> os.stat_result:
    path = tmp_path / "existing"
    path.write_bytes(b"x" * size)
    os.utime(path, ns=(mtime, mtime))
    return os.lstat(path)


def test_overwrite_modes_decide_by_presence_size_mtime_and_links(tmp_path: Path) -> None:
    same = existing(tmp_path)
    assert decide(Overwrite.IF_CHANGED, node(), None) is Action.CREATE
    assert decide(Overwrite.IF_CHANGED, node(), same) is Action.UNCHANGED
    assert decide(Overwrite.IF_CHANGED, node(mtime=MTIME + 1), same) is Action.COMPARE
    assert decide(Overwrite.IF_CHANGED, node(size=6), same) is Action.REPLACE
    assert decide(Overwrite.IF_CHANGED, node(nlink=2), same) is Action.REPLACE
    assert decide(Overwrite.ALWAYS, node(), same) is Action.REPLACE
    assert decide(Overwrite.NEVER, node(size=9), same) is Action.KEEP
    assert decide(Overwrite.IF_NEWER, node(mtime=MTIME + 1), same) is Action.REPLACE
    assert decide(Overwrite.IF_NEWER, node(mtime=MTIME), same) is Action.KEEP
    os.link(tmp_path / "existing", tmp_path / "other-name")
    linked = os.lstat(tmp_path / "existing")
    assert decide(Overwrite.IF_CHANGED, node(), linked) is Action.REPLACE


def test_a_symlink_or_fifo_already_there_is_unchanged_only_when_it_is_the_same(
    tmp_path: Path,
) -> None:
    os.symlink(b"t", tmp_path / "link")
    link = os.lstat(tmp_path / "link")
    assert decide(Overwrite.IF_CHANGED, node(SYMLINK), link, b"t") is Action.UNCHANGED
    assert decide(Overwrite.IF_CHANGED, node(SYMLINK), link, b"other") is Action.REPLACE
    os.mkfifo(tmp_path / "fifo")
    assert decide(Overwrite.IF_CHANGED, node(FIFO), os.lstat(tmp_path / "fifo")) is Action.UNCHANGED
    assert decide(Overwrite.IF_CHANGED, node(FIFO), link) is Action.REPLACE


def sha(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def test_the_content_comparison_names_each_blob_that_differs_and_trailing_bytes(
    tmp_path: Path,
) -> None:
    pieces = [b"a" * 100, b"b" * 50, b"c" * 70]
    layout = [(sha(p), len(p)) for p in pieces]
    path = tmp_path / "file"
    path.write_bytes(b"".join(pieces))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mismatched_blobs(fd, layout, sha) == ([], 220)
    finally:
        os.close(fd)

    path.write_bytes(b"a" * 100 + b"B" + b"b" * 49 + b"c" * 70 + b"extra")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mismatched_blobs(fd, layout, sha)[0] == [1, 3]
    finally:
        os.close(fd)

    path.write_bytes(b"a" * 100)  # cut short
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mismatched_blobs(fd, layout, sha)[0] == [1, 2]
    finally:
        os.close(fd)


def test_a_partial_name_fits_in_a_directory_entry() -> None:
    assert partial_name(b"report.pdf") == b"report.pdf" + PARTIAL_SUFFIX
    long = b"x" * 250
    assert len(partial_name(long)) <= 255 and partial_name(long).startswith(PARTIAL_SUFFIX)
    assert partial_name(long) != partial_name(b"y" * 250)
