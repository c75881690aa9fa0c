"""Loading and saving snapshots and trees, and resolving snapshot references.

A reference is `latest`, or a prefix of a snapshot ID, narrowed by host, tag and path
filters; resolution is a pure function over the loaded snapshots. Snapshots are documents
of a DocumentStore, trees blobs of a BlobLoader or BlobSaver (`repository.roles`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bbackup.crypto.aead import BlobType
from bbackup.errors import BbackupError, IntegrityError, NotFound
from bbackup.repository import BlobLoader, BlobSaver, DocumentStore
from bbackup.snapshot.model import Snapshot, Tree

SNAPSHOT_KIND = "snapshot"


class SnapshotSource(BlobLoader, DocumentStore, Protocol):
    """What walking snapshots needs: their documents and the trees they reach."""


class SnapshotNotFound(BbackupError):
    """No snapshot matches."""


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    """Host, tag and path filters; empty fields match everything."""

    hosts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    paths: tuple[str, ...] = field(default=())

    def matches(self, snapshot: Snapshot) -> bool:
        if self.hosts and snapshot.host not in self.hosts:
            return False
        # Each --tag value may be a comma list: all of those tags must be present.
        if self.tags and not any(set(t.split(",")) <= set(snapshot.tags) for t in self.tags):
            return False
        return not (self.paths and sorted(self.paths) != sorted(snapshot.paths))


async def load_snapshot(documents: DocumentStore, name: str) -> Snapshot:
    snapshot_id = name.rsplit("/", 1)[-1]
    data = await documents.load_document(name, SNAPSHOT_KIND)
    return Snapshot.from_bytes(data, snapshot_id)


async def read_snapshots(documents: DocumentStore) -> tuple[list[Snapshot], dict[str, str]]:
    """Every readable snapshot, oldest first, and the damaged or misnamed snapshot
    documents (name → what is wrong), which the document store has named already."""
    names = await documents.list_names("snapshots/")
    damaged: dict[str, str] = {}

    async def load(name: str) -> Snapshot | None:
        try:
            return await load_snapshot(documents, name)
        except NotFound:
            return None  # forgotten while we listed
        except IntegrityError as exc:
            damaged[name] = str(exc).removeprefix(f"{name}: ")
            return None

    loaded = await asyncio.gather(*(load(n) for n in names))
    snapshots = sorted((s for s in loaded if s is not None), key=lambda s: (s.time, s.id))
    return snapshots, dict(sorted(damaged.items()))


async def load_snapshots(documents: DocumentStore) -> list[Snapshot]:
    """Every readable snapshot in the repository, oldest first; a damaged one is skipped
    (the document store names it), so it costs only itself."""
    return (await read_snapshots(documents))[0]


async def save_snapshot(documents: DocumentStore, snapshot: Snapshot) -> str:
    name = await documents.save_document("snapshots", SNAPSHOT_KIND, snapshot.to_bytes())
    snapshot.id = name.rsplit("/", 1)[-1]
    return snapshot.id


async def delete_snapshot(documents: DocumentStore, snapshot: Snapshot) -> None:
    await documents.delete_document(f"snapshots/{snapshot.id}")


def find_snapshot(
    snapshots: Sequence[Snapshot], reference: str, filters: SnapshotFilter | None = None
) -> Snapshot:
    """Resolve `latest` or an ID prefix among the snapshots that pass the filters."""
    filters = filters or SnapshotFilter()
    candidates = [s for s in snapshots if filters.matches(s)]
    if reference == "latest":
        if not candidates:
            raise SnapshotNotFound("no snapshot matches (latest)")
        return max(candidates, key=lambda s: (s.time, s.id))
    matches = [s for s in candidates if s.id.startswith(reference)]
    if not matches:
        raise SnapshotNotFound(f"no snapshot matches {reference!r}")
    if len({s.id for s in matches}) > 1:
        raise SnapshotNotFound(f"snapshot prefix {reference!r} is ambiguous")
    return matches[0]


def find_snapshots(
    snapshots: Sequence[Snapshot], references: Sequence[str], filters: SnapshotFilter | None = None
) -> list[Snapshot]:
    """The snapshots each reference names (`find_snapshot`), or with none every snapshot
    that passes the filters; oldest first, each once."""
    filters = filters or SnapshotFilter()
    if not references:
        return [s for s in snapshots if filters.matches(s)]
    chosen = {s.id: s for s in (find_snapshot(snapshots, r, filters) for r in references)}
    return sorted(chosen.values(), key=lambda s: (s.time, s.id))


async def load_tree(blobs: BlobLoader, tree_id: bytes) -> Tree:
    if not blobs.index.has(tree_id):
        raise IntegrityError(f"tree {tree_id.hex()[:16]} is not in the index")
    return Tree.from_bytes(await blobs.load_blob(tree_id))


async def save_tree(writer: BlobSaver, tree: Tree) -> bytes:
    prepared = writer.prepare(BlobType.TREE, tree.to_bytes())
    await writer.add(prepared)
    return prepared.blob_id
