"""The index segment format: the stored document (kind "index") that lists packs and the
blobs in each, as `IndexSegment.to_bytes` / `from_bytes` write and read it.

docs/format.md describes the bytes; the in-memory map built from segments is `index.Index`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgpack

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository._table import encode_rows

INDEX_KIND = "index"


@dataclass(slots=True)
class PackInfo:
    """One pack as an index segment lists it."""

    pack_id: str
    blob_type: BlobType
    size: int
    blobs: list[tuple[bytes, int, int, int]] = field(default_factory=list)  # id, off, len, raw


@dataclass(slots=True)
class IndexSegment:
    """One stored index document.

    `supersedes` lets prune replace old segments with a rewritten one without a moment
    where blobs are missing. Prune's first phase *marks* unreferenced packs: a marked
    pack stays listed (with the time it was marked) so its blobs can still be read, but
    backups do not deduplicate against it.
    """

    packs: list[PackInfo] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)
    #: pack ID → epoch seconds when prune marked it for deletion (its PackInfo is in `packs`).
    marked: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                # msgpack writes tuples as arrays: the same bytes as lists, without copying.
                "packs": [[p.pack_id, int(p.blob_type), p.size, p.blobs] for p in self.packs],
                "supersedes": self.supersedes,
                "marked": self.marked,
            }
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> IndexSegment:
        try:
            # Arrays as tuples: each blob arrives as the (id, offset, length, raw length)
            # tuple PackInfo holds, with no Python code per blob. encode_rows checks them
            # as the in-memory index will store them, so a segment that loads also indexes.
            raw = msgpack.unpackb(data, use_list=False)
            if type(raw) is not dict or type(raw.get("marked", {})) is not dict:
                raise TypeError("an index segment and its marks are maps")
            packs = []
            for pid, t, size, blobs in raw["packs"]:
                blobs = list(blobs)
                encode_rows(blobs, 0)
                packs.append(PackInfo(_object_id(pid), BlobType(t), pack_size(size), blobs))
            marked = {_object_id(k): _seconds(v) for k, v in raw.get("marked", {}).items()}
            return cls(packs, [_object_id(s) for s in raw.get("supersedes", ())], marked)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise IntegrityError("index segment is malformed") from exc

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)


def pack_size(value: object) -> int:
    """`value` if it is a valid pack size (a non-negative int); ValueError otherwise."""
    if not isinstance(value, int) or value < 0:
        raise ValueError("a pack size is a non-negative integer")  # no repr: it may nest deep
    return value


def _object_id(value: object) -> str:
    """A pack or segment ID: 64 lowercase hex digits (it becomes part of an object name)."""
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError("a pack or segment ID is 64 hex digits")
    return value


def _seconds(value: object) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a time is a finite number of seconds")
    return float(value)
