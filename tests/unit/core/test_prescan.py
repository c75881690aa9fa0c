"""Prescan: the sources listed ahead in a thread, exactly as the archiver would list them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bbackup.ops.excludes import Excluder
from bbackup.ops.scan import Prescan, scan_dir
from bbackup.snapshot.model import Node


def make_tree(root: Path) -> None:
    for d in ("a", "a/b", "c"):
        (root / d).mkdir(parents=True)
        for i in range(5):
            (root / d / f"f{i}.txt").write_text(f"{d} {i}\n")
        (root / d / "skip.tmp").write_text("excluded\n")


def never(path: bytes, message: str) -> None:
    raise AssertionError(f"{path!r}: {message}")


def test_prescan_lists_every_directory_as_scan_dir_does_and_hands_each_out_once(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path)
    excluder = Excluder(["*.tmp"])
    prescan = Prescan([str(tmp_path)], excluder)
    deadline = time.monotonic() + 30
    while not prescan.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    prescan.stop()

    for d in ("", "/a", "/a/b", "/c"):
        path = os.fsencode(str(tmp_path) + d)
        listed = prescan.take(path)
        assert listed is not None, d
        expected = scan_dir(path, excluder, never)

        def key(entry: tuple[bytes, Node]) -> bytes:
            return entry[0]

        assert sorted(listed, key=key) == sorted(expected, key=key)
        assert not any(name.endswith(b".tmp") for name, _ in listed)
        assert prescan.take(path) is None  # handed out once: the archiver owns it now


def test_prescan_stops_at_its_limit(tmp_path: Path) -> None:
    make_tree(tmp_path)
    prescan = Prescan([str(tmp_path)], Excluder([]), limit=3)
    deadline = time.monotonic() + 30
    while not prescan.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    prescan.stop()

    assert prescan.take(os.fsencode(str(tmp_path))) is not None
    assert prescan.take(os.fsencode(str(tmp_path / "a"))) is None
