"""What a restore takes from a snapshot: its trees walked once, before anything is written,
through the --include / --exclude patterns, keeping only the entries selected and the
directories that lead to them. A tree that cannot be read costs only its directory's
contents: it is recorded as damaged and the walk goes on.

Patterns mean what `backup --exclude` patterns mean (`ops.scan.Excluder`, the one parser):
without '/' a pattern matches a name at any depth, with '/' the absolute path as backed up,
`*` and `**` may cross '/'. A pattern that matches a directory matches everything in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from bbackup.errors import IntegrityError, NotFound, NothingMatched, UsageError
from bbackup.ops.excludes import Excluder
from bbackup.ops.restore_gc import collection_paused
from bbackup.repository import BlobLoader
from bbackup.snapshot.model import DIR, FILE, Node, Snapshot
from bbackup.snapshot.store import load_tree

_GLOB_CHARACTERS = "*?["


def check_pattern(pattern: str, flag: str) -> str:
    """`pattern` if it is a valid glob, else a UsageError naming it: an empty pattern, or a
    '[' that opens a character class it never closes (fnmatch would quietly take it for a
    literal '[' and match nothing)."""
    if not pattern.strip():
        raise UsageError(f"{flag} {pattern!r}: empty pattern")
    if not pattern.strip("/"):
        raise UsageError(f"{flag} {pattern!r}: matches the whole snapshot; leave it out")
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] in "!^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1  # a ']' first in the class is a member, not its end
            end = pattern.find("]", j)
            if end < 0:
                raise UsageError(f"{flag} {pattern!r}: '[' at position {i + 1} is never closed")
            i = end
        i += 1
    return pattern


@dataclass(slots=True)
class RestorePattern:
    """One --include or --exclude pattern, and how many snapshot entries it matched."""

    flag: str
    text: str
    matches: int = 0
    _excluder: Excluder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._excluder = Excluder([self.text])

    def match(self, path: bytes, *, count: bool = True) -> bool:
        if not self._excluder.excluded(path):
            return False
        if count:
            self.matches += 1
        return True

    def may_match_below(self, directory: bytes) -> bool:
        """Whether something inside `directory` might match: always for a pattern without
        '/', else when the pattern's literal start (up to its first wildcard) and the
        directory agree."""
        text = self.text.rstrip("/")
        if "/" not in text:
            return True
        wildcards = [i for i in (text.find(c) for c in _GLOB_CHARACTERS) if i >= 0]
        literal = os.fsencode(text[: min(wildcards, default=len(text))])
        below = directory + b"/"
        return below.startswith(literal) or literal.startswith(below)


class PathFilter:
    """The --include and --exclude patterns of one restore. No includes: everything is
    included. An entry is selected when it or a directory above it matches an include and
    neither it nor a directory above it matches an exclude."""

    def __init__(self, includes: Sequence[str] = (), excludes: Sequence[str] = ()) -> None:
        self.includes = [
            RestorePattern("--include", check_pattern(p, "--include")) for p in includes
        ]
        self.excludes = [
            RestorePattern("--exclude", check_pattern(p, "--exclude")) for p in excludes
        ]

    def included(self, path: bytes, *, count: bool = True) -> bool:
        """Whether an include matches `path` itself (True without includes). Every pattern
        is tried, so that each one's matches are counted."""
        if not self.includes:
            return True
        matched = [p.match(path, count=count) for p in self.includes]  # no short cut
        return any(matched)

    def excluded(self, path: bytes, *, count: bool = True) -> bool:
        matched = [p.match(path, count=count) for p in self.excludes]  # no short cut
        return any(matched)

    def may_include_below(self, directory: bytes) -> bool:
        return any(p.may_match_below(directory) for p in self.includes)

    def require_matches(self, snapshot_id: str) -> None:
        """NothingMatched for the first pattern that matched no entry."""
        for pattern in [*self.includes, *self.excludes]:
            if not pattern.matches:
                hint = ""
                if "/" in pattern.text and not pattern.text.startswith(("/", "*")):
                    hint = " (a pattern with '/' matches the whole absolute path)"
                raise NothingMatched(
                    f"{pattern.flag} {pattern.text!r} matches nothing in snapshot "
                    f"{snapshot_id[:8]}{hint}; nothing was restored"
                )


@dataclass(slots=True, eq=False)
class SelectedDir:
    """A directory of the snapshot that the restore enters."""

    #: None for the snapshot's root (the target itself).
    node: Node | None
    #: Its absolute path in the snapshot ("" for the root).
    rel: bytes
    #: Selected itself: it gets its metadata (else the restore only passes through it).
    wanted: bool
    #: An include matches it or a directory above it: what it holds is selected unless
    #: an exclude matches.
    included: bool
    #: At or below one of the snapshot's backed-up paths: the snapshot lists all it held,
    #: so --delete may remove what it lacks.
    backed_up: bool
    #: Every name the snapshot has here, selected or not; None when all are selected
    #: (most directories): then no second set of names is kept for the whole restore.
    all_names: frozenset[bytes] | None = None
    entries: list[Node | SelectedDir] = field(default_factory=list)
    #: Its tree could not be read: its contents are unknown, nothing in it is deleted.
    damaged: bool = False
    #: The listing still to be read into `entries` (a lazy selection: `Selection.expand`).
    tree: bytes | None = None

    def names(self) -> frozenset[bytes]:
        """Every name the snapshot has here, selected or not."""
        if self.all_names is not None:
            return self.all_names
        return frozenset(e.name for e in self.entries)

    @property
    def name(self) -> bytes:
        """Its name in its parent ("" for the root)."""
        return b"" if self.node is None else self.node.name

    def files(self) -> Iterator[tuple[SelectedDir, Node]]:
        """Every regular file selected below this directory, with the directory that
        holds it (depth first, the last directory met entered first)."""
        pending: list[SelectedDir] = [self]
        while pending:
            directory = pending.pop()
            for entry in directory.entries:
                if isinstance(entry, SelectedDir):
                    pending.append(entry)
                elif entry.type == FILE:
                    yield directory, entry


@dataclass(frozen=True, slots=True)
class DamagedTree:
    """A directory whose listing could not be read: nothing below it was restored."""

    path: str
    tree: str
    message: str


@dataclass(slots=True)
class Selection:
    root: SelectedDir
    damaged_trees: list[DamagedTree] = field(default_factory=list)
    #: A lazy selection's walk: directories still to be read have their `tree` set.
    walk: _SelectionWalk | None = None

    async def expand(self, directory: SelectedDir) -> None:
        """Read a lazy selection's directory listing into its entries (its subdirectories
        stay unread)."""
        tree_id, directory.tree = directory.tree, None
        if tree_id is not None and self.walk is not None:
            with collection_paused():
                await self.walk.walk(directory, tree_id, deep=False)


def backed_up_paths(snapshot: Snapshot) -> list[bytes]:
    """The snapshot's backed-up paths as tree paths ("/" becomes "")."""
    return [os.fsencode(os.path.normpath(p)).rstrip(b"/") for p in snapshot.paths]


async def select_entries(
    loader: BlobLoader, snapshot: Snapshot, path_filter: PathFilter, *, lazy: bool = False
) -> Selection:
    """Walk the snapshot's trees once and keep what the filter selects.

    `lazy`, without patterns (where everything is selected and no walk needs to look
    ahead): read only the root's listing; each directory's is read by `Selection.expand`
    when the restore comes to it, so the whole snapshot's nodes are never held at once."""
    walk = _SelectionWalk(loader, path_filter, backed_up_paths(snapshot))
    lazy = lazy and not (path_filter.includes or path_filter.excludes)
    with collection_paused():  # many nodes, no cycles among them (restore_gc)
        await walk.walk(walk.selection.root, snapshot.tree, deep=not lazy)
    if lazy:
        walk.selection.walk = walk
    return walk.selection


class _SelectionWalk:
    """One walk of select_entries. A class rather than a recursive closure: a closure that
    calls itself is a reference cycle, which would hold the whole selection until a
    collection after its caller dropped it."""

    def __init__(self, loader: BlobLoader, path_filter: PathFilter, backed_up: list[bytes]):
        self.loader = loader
        self.path_filter = path_filter
        self.backed_up = backed_up
        root = SelectedDir(
            None,
            b"",
            wanted=False,
            included=not path_filter.includes,
            backed_up=self.is_backed_up(b""),
        )
        self.selection = Selection(root)

    def is_backed_up(self, rel: bytes) -> bool:
        return any(rel == p or rel.startswith(p + b"/") or not p for p in self.backed_up)

    async def walk(self, directory: SelectedDir, tree_id: bytes, *, deep: bool = True) -> None:
        """Read one directory's listing into its entries, and with `deep` its
        subdirectories' (else they keep their tree to be read later: only when no pattern
        can leave a subdirectory out)."""
        selection, path_filter = self.selection, self.path_filter
        try:
            tree = await load_tree(self.loader, tree_id)
        except (IntegrityError, NotFound) as exc:
            directory.damaged = True
            where = os.fsdecode(directory.rel or b"/")
            selection.damaged_trees.append(DamagedTree(where, tree_id.hex(), str(exc)))
            return
        for node in tree.nodes:
            name = node.name
            if b"/" in name or b"\0" in name or name in (b"", b".", b".."):
                # Only a damaged or forged tree holds one: it could point out of the target.
                where = os.fsdecode(directory.rel or b"/")
                problem = f"refusing unsafe name {name!r} in snapshot tree"
                selection.damaged_trees.append(DamagedTree(where, tree_id.hex(), problem))
                continue
            rel = directory.rel + b"/" + name
            if path_filter.excluded(rel):
                continue
            included = directory.included or path_filter.included(rel)
            if node.type != DIR:
                if included:
                    directory.entries.append(node)
                continue
            if not included and not path_filter.may_include_below(rel):
                continue
            child = SelectedDir(node, rel, included, included, self.is_backed_up(rel))
            if node.subtree is not None:
                if not deep:
                    child.tree = node.subtree
                    directory.entries.append(child)
                    continue
                await self.walk(child, node.subtree)
            if included or child.entries or child.damaged:
                directory.entries.append(child)
        if len(directory.entries) != len(tree.nodes):
            directory.all_names = frozenset(node.name for node in tree.nodes)
