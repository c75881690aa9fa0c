"""Finding paths in snapshots (`bbackup find`): which snapshots hold entries whose name
(or, for a pattern with '/', whose full path) matches a pattern. The patterns are
backup's exclude patterns (`ops.scan.Excluder`), so one pattern means the same thing in
`backup --exclude`, `rewrite --exclude` and `find`. A directory shared by many snapshots
at the same place is searched once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bbackup.ops.excludes import Excluder
from bbackup.ops.walk_gc import TreeLoader, WalkCollection
from bbackup.snapshot.model import DIR, Node, Snapshot


class PathMatcher:
    """One pattern in backup's exclude syntax, optionally ignoring case."""

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.ignore_case = ignore_case
        self._excluder = Excluder([pattern.lower() if ignore_case else pattern])

    def matches(self, path: str) -> bool:
        text = path.lower() if self.ignore_case else path
        return self._excluder.excluded(text.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class Match:
    """One matching entry: its path in the snapshot and its node."""

    path: str
    node: Node


@dataclass(slots=True)
class SnapshotMatches:
    snapshot: Snapshot
    matches: list[Match]


@dataclass(slots=True)
class FindResult:
    """The snapshots with matches (oldest first), and the patterns nothing matched."""

    found: list[SnapshotMatches] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MtimeWindow:
    """Only entries modified within [oldest, newest] (epoch ns; None: unbounded)."""

    oldest_ns: int | None = None
    newest_ns: int | None = None

    def holds(self, node: Node) -> bool:
        if self.oldest_ns is not None and node.mtime_ns < self.oldest_ns:
            return False
        return self.newest_ns is None or node.mtime_ns <= self.newest_ns


class _Finder:
    def __init__(
        self, load_tree: TreeLoader, matchers: Sequence[PathMatcher], window: MtimeWindow
    ) -> None:
        self.load_tree = load_tree
        self.matchers = matchers
        self.window = window
        self.hit: set[str] = set()
        #: (tree ID, its path) → (matches below it, patterns that matched there): the same
        #: directory at the same place in the next snapshot is not searched again.
        self.memo: dict[tuple[bytes, str], tuple[list[Match], set[str]]] = {}

    async def search(self, tree_id: bytes, where: str) -> list[Match]:
        key = (tree_id, where)
        known = self.memo.get(key)
        if known is None:
            found: list[Match] = []
            hit: set[str] = set()
            for node in (await self.load_tree(tree_id)).nodes:
                full = f"{where}/{node.display_name}"
                patterns = {m.pattern for m in self.matchers if m.matches(full)}
                if patterns and self.window.holds(node):
                    found.append(Match(full, node))
                    hit |= patterns
                if node.type == DIR and node.subtree:
                    found += await self.search(node.subtree, full)
                    hit |= self.memo[(node.subtree, full)][1]
            known = self.memo[key] = (found, hit)
        self.hit |= known[1]
        return known[0]


async def find_paths(
    load_tree: TreeLoader,
    snapshots: Sequence[Snapshot],
    matchers: Sequence[PathMatcher],
    window: MtimeWindow | None = None,
) -> FindResult:
    """The entries of each snapshot that match any pattern and lie in the mtime window,
    sorted by path; snapshots without any are left out."""
    result = FindResult()
    with WalkCollection() as collection:
        finder = _Finder(collection.counting(load_tree), matchers, window or MtimeWindow())
        for snapshot in snapshots:
            matches = await finder.search(snapshot.tree, "")
            if matches:
                found = sorted(matches, key=lambda m: m.path)
                result.found.append(SnapshotMatches(snapshot, found))
    result.unmatched = [m.pattern for m in matchers if m.pattern not in finder.hit]
    return result
