"""Choosing what a restore drill restores: files of the snapshot whose data packs were least
recently proven restorable (never-proven packs first, ties broken at random), so that
successive drills cover different packs; and the exact-path filter that hands the chosen
files to the Restorer. Pure functions over plain data, besides the filter."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bbackup.errors import UsageError
from bbackup.ops.restore_select import PathFilter, RestorePattern


@dataclass(frozen=True, slots=True)
class SampleFile:
    """A regular file of the snapshot with content, and the data packs that hold it."""

    path: bytes
    size: int
    packs: frozenset[str]


def sample_fraction(text: str, flag: str = "--sample") -> float:
    """`"5%"` as 0.05: a percentage above 0 and at most 100."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", text.strip())
    if not m or not 0 < float(m.group(1)) <= 100:
        raise UsageError(f"{flag} {text!r}: use a percentage above 0 such as 5%")
    return float(m.group(1)) / 100


def choose_sample(
    files: Sequence[SampleFile],
    proven: Mapping[str, float],
    *,
    fraction: float | None,
    count: int | None,
    rng: random.Random,
) -> list[SampleFile]:
    """The files to restore: every file with content in at least `fraction` of the packs
    the snapshot's files use, and at least `count` files (either may be None; at least
    one file either way).

    Packs are taken least recently proven first (`proven`: pack → when a drill last proved
    it; never-proven packs first, in random order). For the fraction a pack is taken
    whole: every file with a blob in it, so all of the snapshot's data in it is read.
    Files beyond that (`count`) are spread one per pack, in the same order."""
    by_pack: dict[str, list[int]] = {}
    for i, file in enumerate(files):
        for pack in file.packs:
            by_pack.setdefault(pack, []).append(i)
    order = sorted(by_pack, key=lambda p: (proven.get(p, -math.inf), rng.random()))
    pack_target = math.ceil(fraction * len(order)) if fraction else 0
    file_target = max(count or 0, 1 if files else 0)
    chosen: dict[int, None] = {}  # insertion-ordered set
    for pack in order[:pack_target]:
        chosen.update(dict.fromkeys(by_pack[pack]))
    for pack in order[pack_target:]:
        if len(chosen) >= file_target:
            break
        untaken = [i for i in by_pack[pack] if i not in chosen]
        if untaken:
            chosen[rng.choice(untaken)] = None
    if len(chosen) < file_target:
        rest = [i for i in range(len(files)) if i not in chosen]
        chosen.update(dict.fromkeys(rng.sample(rest, min(len(rest), file_target - len(chosen)))))
    return [files[i] for i in chosen]


class SampledPaths(PathFilter):
    """Selects exactly the sampled files, by their absolute path in the snapshot: a set
    lookup per entry, where thousands of --include patterns would each be matched against
    every entry of the snapshot."""

    def __init__(self, paths: Iterable[bytes]) -> None:
        super().__init__()
        self.paths = frozenset(paths)
        self.parents = {
            path[:i] for path in self.paths for i in range(1, len(path)) if path[i] == ord("/")
        }
        # Not empty: the snapshot's root is then not selected as a whole.
        self.includes = [RestorePattern("--include", "(the drill's sample)")]

    def included(self, path: bytes, *, count: bool = True) -> bool:
        return path in self.paths

    def excluded(self, path: bytes, *, count: bool = True) -> bool:
        return False

    def may_include_below(self, directory: bytes) -> bool:
        return directory in self.parents

    def require_matches(self, snapshot_id: str) -> None:
        """Every sampled path was taken from the snapshot's own walk."""
