"""The index: blob ID → (pack, offset, length, raw length, type), and its stored segments.

An index *segment* is a document of kind "index" listing packs and the blobs in each.
The in-memory `Index` is the union of all segments; `supersedes` lets prune replace old
segments with a rewritten one without a moment where blobs are missing.
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

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "packs": [
                    [p.pack_id, int(p.blob_type), p.size, [list(b) for b in p.blobs]]
                    for p in self.packs
                ],
                "supersedes": self.supersedes,
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
            return cls(packs, [str(s) for s in raw.get("supersedes", [])])
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError("index segment is malformed") from exc

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)


class Index:
    """The in-memory union of index segments."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, IndexEntry] = {}
        self.packs: dict[str, PackInfo] = {}

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> IndexEntry | None:
        return self._blobs.get(blob_id)

    def lookup(self, blob_id: bytes) -> IndexEntry:
        entry = self._blobs.get(blob_id)
        if entry is None:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the index")
        return entry

    def add_pack(self, pack: PackInfo) -> None:
        self.packs[pack.pack_id] = pack
        for blob_id, offset, length, raw_length in pack.blobs:
            # Several packs may hold the same blob (concurrent backups); any copy will do.
            if blob_id not in self._blobs:
                self._blobs[blob_id] = IndexEntry(
                    pack.pack_id, pack.blob_type, offset, length, raw_length
                )

    def add_segment(self, segment: IndexSegment) -> None:
        for pack in segment.packs:
            self.add_pack(pack)

    def blob_ids(self) -> Iterator[bytes]:
        return iter(self._blobs)

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        return self._blobs.items()
