"""The index: blob ID → (pack, offset, length, raw length, type), and its stored segments.

An index *segment* is a document of kind "index" listing packs and the blobs in each.
The in-memory `Index` is the union of all segments; `supersedes` lets prune replace old
segments with a rewritten one without a moment where blobs are missing.

Prune's first phase *marks* unreferenced packs: a marked pack stays listed (with the time
it was marked) so its blobs can still be read, but backups do not deduplicate against it,
so no new snapshot starts to depend on a pack that is about to be deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

from bbackup.crypto import BlobType
from bbackup.errors import IntegrityError

INDEX_KIND = "index"


class IndexEntry(NamedTuple):
    """Where one blob can be read."""

    pack_id: str
    blob_type: BlobType
    offset: int
    length: int
    raw_length: int


@dataclass(slots=True)
class PackInfo:
    """One pack as an index segment lists it."""

    pack_id: str
    blob_type: BlobType
    size: int
    blobs: list[tuple[bytes, int, int, int]] = field(default_factory=list)  # id, off, len, raw


@dataclass(slots=True)
class IndexSegment:
    """One stored index document."""

    packs: list[PackInfo] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)
    #: pack ID → epoch seconds when prune marked it for deletion (its PackInfo is in `packs`).
    marked: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "packs": [
                    [p.pack_id, int(p.blob_type), p.size, [list(b) for b in p.blobs]]
                    for p in self.packs
                ],
                "supersedes": self.supersedes,
                "marked": self.marked,
            }
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> IndexSegment:
        try:
            raw = msgpack.unpackb(data)
            packs = [
                PackInfo(
                    str(pid),
                    BlobType(t),
                    int(size),
                    [(bytes(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in blobs],
                )
                for pid, t, size, blobs in raw["packs"]
            ]
            marked = {str(k): float(v) for k, v in raw.get("marked", {}).items()}
            return cls(packs, [str(s) for s in raw.get("supersedes", [])], marked)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError("index segment is malformed") from exc

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)


class Index:
    """The in-memory union of index segments.

    `in` and `get` see live packs only (what backups deduplicate against); `lookup` also
    finds blobs in packs marked for deletion, so every snapshot stays readable.
    """

    def __init__(self) -> None:
        self._blobs: dict[bytes, IndexEntry] = {}
        self._marked_blobs: dict[bytes, IndexEntry] = {}
        self.packs: dict[str, PackInfo] = {}
        self.marked: dict[str, float] = {}
        self.marked_packs: dict[str, PackInfo] = {}

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> IndexEntry | None:
        return self._blobs.get(blob_id)

    def lookup(self, blob_id: bytes) -> IndexEntry:
        entry = self._blobs.get(blob_id) or self._marked_blobs.get(blob_id)
        if entry is None:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the index")
        return entry

    def has(self, blob_id: bytes) -> bool:
        """True if the blob can be read (live or marked pack)."""
        return blob_id in self._blobs or blob_id in self._marked_blobs

    def add_pack(self, pack: PackInfo, marked_at: float | None = None) -> None:
        if marked_at is not None:
            if pack.pack_id in self.packs:
                return  # listed live by another segment: live wins
            self.marked[pack.pack_id] = marked_at
            target = self._marked_blobs
        else:
            if pack.pack_id in self.marked:
                self._unmark(pack.pack_id)
            self.packs[pack.pack_id] = pack
            target = self._blobs
        for blob_id, offset, length, raw_length in pack.blobs:
            # Several packs may hold the same blob (concurrent backups); any copy will do.
            if blob_id not in target:
                target[blob_id] = IndexEntry(
                    pack.pack_id, pack.blob_type, offset, length, raw_length
                )
        if marked_at is not None:
            self.marked_packs[pack.pack_id] = pack

    def _unmark(self, pack_id: str) -> None:
        self.marked.pop(pack_id, None)
        pack = self.marked_packs.pop(pack_id, None)
        if pack is not None:
            for blob_id, *_ in pack.blobs:
                entry = self._marked_blobs.get(blob_id)
                if entry is not None and entry.pack_id == pack_id:
                    del self._marked_blobs[blob_id]

    def all_packs(self) -> dict[str, PackInfo]:
        """Live and marked packs: everything the index says is stored."""
        return {**self.marked_packs, **self.packs}

    def add_segment(self, segment: IndexSegment) -> None:
        for pack in segment.packs:
            self.add_pack(pack, segment.marked.get(pack.pack_id))

    def blob_ids(self) -> Iterator[bytes]:
        return iter(self._blobs)

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        return self._blobs.items()
