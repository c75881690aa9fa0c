"""Looking inside a repository for debugging (`bbackup cat`, `bbackup list`): the IDs of
each kind of object, one per line as restic lists them, and any one object decrypted into
plain data (a pack: its header). Every object may be named by a unique ID prefix."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, Protocol

from bbackup.errors import BbackupError, IntegrityError, UsageError
from bbackup.repository import BlobLoader, DocumentStore, PackInventory
from bbackup.repository.index import INDEX_KIND, IndexSegment
from bbackup.repository.lock import LOCK_KIND, parse_lock
from bbackup.snapshot.model import Node, Snapshot, Tree
from bbackup.snapshot.store import find_snapshot, load_snapshot, load_snapshots

LIST_KINDS = ("snapshots", "packs", "index", "keys", "locks", "blobs")
CAT_KINDS = ("config", "snapshot", "tree", "index", "pack", "key", "lock")


class KeyFileReader(Protocol):
    async def key_files(self) -> list[tuple[str, bytes]]:
        """Every key file, as (name, stored bytes)."""
        ...


class InspectedRepository(BlobLoader, DocumentStore, PackInventory, KeyFileReader, Protocol):
    """What `cat` and `list` read: documents, packs, the index and key files."""


class ObjectNotFound(BbackupError):
    """No object matches."""


def resolve_prefix(candidates: Iterable[str], prefix: str, what: str) -> str:
    """The one candidate starting with `prefix`; an error naming `what` otherwise."""
    if not prefix or prefix.strip("0123456789abcdef"):
        raise UsageError(f"{what} ID {prefix!r}: an ID is hex digits (a unique prefix will do)")
    found = sorted({c for c in candidates if c.startswith(prefix)})
    if not found:
        raise ObjectNotFound(f"no {what} matches {prefix!r}")
    if len(found) > 1:
        raise ObjectNotFound(f"{what} prefix {prefix!r} is ambiguous ({len(found)} match)")
    return found[0]


async def list_ids(repo: InspectedRepository, kind: str) -> list[str]:
    """The IDs of every object of `kind` (LIST_KINDS), sorted; for `blobs`, restic's
    "TYPE ID" lines from the index."""
    if kind == "blobs":
        return sorted(f"{e.blob_type.directory} {b.hex()}" for b, e in repo.index.items())
    if kind == "packs":
        return sorted(info.name.rsplit("/", 1)[-1] for info in await repo.list_packs())
    prefix = {"snapshots": "snapshots/", "index": "index/", "keys": "keys/", "locks": "locks/"}
    if kind not in prefix:
        raise UsageError(f"list: unknown kind {kind!r}: one of {', '.join(LIST_KINDS)}")
    return sorted(n.rsplit("/", 1)[-1] for n in await repo.list_names(prefix[kind]))


def snapshot_document(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot document's fields as stored, and its ID."""
    return {
        "id": snapshot.id,
        "time": snapshot.time.isoformat(),
        "host": snapshot.host,
        "user": snapshot.user,
        "paths": snapshot.paths,
        "tags": snapshot.tags,
        "tree": snapshot.tree.hex(),
        "type": snapshot.backup_type,
        "parent": snapshot.parent,
        "base": snapshot.base,
        "program_version": snapshot.program_version,
        "excludes": snapshot.excludes,
        "summary": snapshot.summary,
    }


def node_document(node: Node) -> dict[str, Any]:
    """A tree node's fields, names as text (undecodable bytes as \\x escapes), IDs in hex."""
    doc: dict[str, Any] = {
        "name": node.display_name,
        "type": node.type,
        "mode": node.mode,
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "mtime_ns": node.mtime_ns,
        "atime_ns": node.atime_ns,
        "ctime_ns": node.ctime_ns,
        "size": node.size,
        "inode": node.inode,
        "device": node.device,
        "nlink": node.nlink,
    }
    if node.link_target:
        doc["link_target"] = node.link_target.decode("utf-8", "backslashreplace")
    if node.rdev:
        doc["rdev"] = node.rdev
    if node.xattrs:
        doc["xattrs"] = [[k.decode("utf-8", "backslashreplace"), v.hex()] for k, v in node.xattrs]
    if node.content:
        doc["content"] = [b.hex() for b in node.content]
    if node.subtree is not None:
        doc["subtree"] = node.subtree.hex()
    return doc


async def cat_object(repo: InspectedRepository, kind: str, ref: str | None) -> dict[str, Any]:
    """The object of `kind` (CAT_KINDS) named by the ID prefix `ref`, decrypted."""
    if kind not in CAT_KINDS:
        raise UsageError(f"cat: unknown kind {kind!r}: one of {', '.join(CAT_KINDS)}")
    if kind == "config":
        # As stored: `object_lock` only where the repository has one.
        return {k: v for k, v in asdict(repo.config).items() if k != "object_lock" or v}
    if ref is None:
        raise UsageError(f"cat {kind}: an ID is required")
    if kind == "snapshot" and ref == "latest":
        return snapshot_document(find_snapshot(await load_snapshots(repo), ref))
    if kind == "snapshot":
        names = await repo.list_names("snapshots/")
        found = resolve_prefix((n.rsplit("/", 1)[-1] for n in names), ref, "snapshot")
        return snapshot_document(await load_snapshot(repo, f"snapshots/{found}"))
    if kind == "tree":
        blob_id = bytes.fromhex(resolve_prefix(_tree_ids(repo), ref, "tree"))
        tree = Tree.from_bytes(await repo.load_blob(blob_id))
        return {"id": blob_id.hex(), "nodes": [node_document(n) for n in tree.nodes]}
    if kind == "index":
        names = await repo.list_names("index/")
        found = resolve_prefix((n.rsplit("/", 1)[-1] for n in names), ref, "index segment")
        segment = IndexSegment.from_bytes(await repo.load_document(f"index/{found}", INDEX_KIND))
        return {"id": found, **_segment_document(segment)}
    if kind == "pack":
        packs = {info.name.rsplit("/", 1)[-1]: info for info in await repo.list_packs()}
        info = packs[resolve_prefix(packs, ref, "pack")]
        blobs = await repo.read_pack_header(info.name, info.size)
        return {
            "id": info.name.rsplit("/", 1)[-1],
            "name": info.name,
            "size": info.size,
            "blobs": [
                {
                    "type": b.blob_type.directory,
                    "id": b.blob_id.hex(),
                    "offset": b.offset,
                    "length": b.length,
                    "raw_length": b.raw_length,
                }
                for b in blobs
            ],
        }
    if kind == "key":
        keys = dict(await repo.key_files())
        found = resolve_prefix((n.rsplit("/", 1)[-1] for n in keys), ref, "key")
        try:
            document: dict[str, Any] = json.loads(keys[f"keys/{found}"])
        except ValueError as exc:
            raise IntegrityError(f"keys/{found}: not valid JSON") from exc
        return {"id": found, **document}
    names = await repo.list_names("locks/")
    found = resolve_prefix((n.rsplit("/", 1)[-1] for n in names), ref, "lock")
    lock = parse_lock(f"locks/{found}", await repo.load_document(f"locks/{found}", LOCK_KIND))
    return {"id": found, **{k: v for k, v in asdict(lock).items() if k != "name"}}


def _tree_ids(repo: BlobLoader) -> Iterable[str]:
    return (b.hex() for b, e in repo.index.items() if e.blob_type.directory == "tree")


def _segment_document(segment: IndexSegment) -> dict[str, Any]:
    return {
        "packs": [
            {
                "id": p.pack_id,
                "type": p.blob_type.directory,
                "size": p.size,
                "blobs": [
                    {"id": b.hex(), "offset": o, "length": n, "raw_length": r}
                    for b, o, n, r in p.blobs
                ],
            }
            for p in segment.packs
        ],
        "supersedes": segment.supersedes,
        "marked": segment.marked,
    }
