"""Sparse files: holes found at backup and the zeros in them left unwritten at restore,
but never a byte of data, whatever the recorded holes say."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

from bbackup.errors import IntegrityError
from bbackup.ops.sparse_files import find_holes, parts_to_write
from bbackup.snapshot.model import FILE, Node, Tree

KiB, MiB = 1024, 1024 * 1024


def written(holes: list[tuple[int, int]], offset: int, data: bytes) -> list[tuple[int, bytes]]:
    return [(at, bytes(view)) for at, view in parts_to_write(holes, offset, data)]


def test_find_holes_reports_each_hole_and_a_trailing_one(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(10 * MiB)
        f.seek(MiB)
        f.write(b"x" * 4 * KiB)
    fd = os.open(path, os.O_RDONLY)
    try:
        holes = find_holes(fd, 10 * MiB)
    finally:
        os.close(fd)
    assert holes[0] == (0, MiB)
    assert holes[-1][0] + holes[-1][1] == 10 * MiB
    assert sum(length for _, length in holes) >= 10 * MiB - 64 * KiB


def test_a_file_without_holes_is_written_whole() -> None:
    assert written([], 100, b"abc") == [(100, b"abc")]


def test_zeros_inside_a_hole_are_skipped_and_the_data_around_them_written() -> None:
    data = b"A" * 10 + bytes(20) + b"B" * 10
    assert written([(1010, 20)], 1000, data) == [(1000, b"A" * 10), (1030, b"B" * 10)]


def test_a_blob_entirely_in_a_hole_writes_nothing() -> None:
    assert written([(0, 100), (500, 1000)], 600, bytes(50)) == []


def test_holes_overlapping_the_edges_of_a_blob_are_cut_to_it() -> None:
    data = bytes(10) + b"data" + bytes(10)
    assert written([(0, 105), (109, 50)], 95, data) == [(105, b"data")]


def test_bytes_that_are_not_zeros_are_written_even_inside_a_recorded_hole() -> None:
    """A stale hole list (the file changed between scan and read) costs space, not data."""
    data = b"\0" * 8 + b"late write" + b"\0" * 8
    assert written([(0, 26)], 0, data) == [(0, data)]


def test_holes_survive_the_tree_encoding_and_older_trees_read_as_having_none() -> None:
    sparse = Node(name=b"disk.img", type=FILE, size=64 * MiB, holes=[(0, MiB), (2 * MiB, MiB)])
    older = msgpack.packb([{"n": b"old", "t": "file", "s": 3}], use_bin_type=True)

    assert Tree.from_bytes(Tree([sparse]).to_bytes()).nodes == [sparse]
    assert Tree.from_bytes(older).nodes[0].holes == []
    with pytest.raises(IntegrityError):
        Tree.from_bytes(msgpack.packb([{"n": b"x", "t": "file", "h": [[0, -1]]}]))
