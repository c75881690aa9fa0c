"""Changing the tags of snapshots (`bbackup tag`). A snapshot document is named by its
content, so a new tag means a new document: it is stored first and the old one deleted
only then, so a crash leaves both (the same tree twice), never neither. The new snapshot
records the ID of the snapshot as first written (`original`, as restic does)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from bbackup.repository import DocumentStore, RepositoryLock
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.store import (
    SnapshotFilter,
    delete_snapshot,
    find_snapshots,
    load_snapshots,
    save_snapshot,
)

#: The summary key that names the snapshot as first written, kept through every rewrite.
ORIGINAL_KEY = "original"


@dataclass(frozen=True, slots=True)
class TagChange:
    """What to do to each snapshot's tags: `set` replaces them all (None: keep), then
    `add` and `remove` apply."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    set: tuple[str, ...] | None = None

    def apply(self, tags: Sequence[str]) -> list[str]:
        result = set(self.set if self.set is not None else tags)
        result |= set(self.add)
        result -= set(self.remove)
        return sorted(result)


@dataclass(slots=True)
class Retagged:
    old: str
    new: str
    tags: list[str]


@dataclass(slots=True)
class TagReport:
    changed: list[Retagged] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def replacement(original: Snapshot, **changes: object) -> Snapshot:
    """`original` with `changes`, remembering the ID it was first written under."""
    summary = dict(original.summary)
    summary.setdefault(ORIGINAL_KEY, original.id)
    return dataclasses.replace(original, summary=summary, id="", **changes)  # type: ignore[arg-type]


async def tag_snapshots(
    documents: DocumentStore,
    references: Sequence[str],
    filters: SnapshotFilter,
    change: TagChange,
) -> TagReport:
    """Rewrite each snapshot the references name (every one the filters pass without
    any) whose tags `change` alters. Holds a shared lock (the new document references the
    same tree, so a prune meanwhile keeps its data either way), and reads the snapshots
    once it holds it, so one that a `forget` removed meanwhile is not brought back."""
    report = TagReport()
    async with RepositoryLock(documents, exclusive=False, purpose="tag"):
        snapshots = find_snapshots(await load_snapshots(documents), references, filters)
        for snapshot in snapshots:
            tags = change.apply(snapshot.tags)
            if tags == sorted(snapshot.tags):
                report.unchanged.append(snapshot.id)
                continue
            new = replacement(snapshot, tags=tags)
            await save_snapshot(documents, new)
            await delete_snapshot(documents, snapshot)
            report.changed.append(Retagged(snapshot.id, new.id, tags))
    return report
