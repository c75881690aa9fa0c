"""The index segment format: the stored document (kind "index") that lists packs and the
blobs in each, as `IndexSegment.to_bytes` / `from_bytes` write and read it.

docs/format.md describes the bytes; the in-memory map built from segments is `index.Index`.
"""

from __future__ import annotations

import gc
import math
from array import array
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Any

import msgpack

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository._table import ROW_SIZE, decode_blobs, encode_blobs

INDEX_KIND = "index"

_TYPES = tuple(BlobType(t) for t in range(len(BlobType)))
_TYPE_NUMBERS = frozenset(map(int, BlobType))
_HEX_DIGITS = "0123456789abcdef"


@dataclass(slots=True)
class PackInfo:
    """One pack as an index segment lists it."""

    pack_id: str
    blob_type: BlobType
    size: int
    blobs: list[tuple[bytes, int, int, int]] = field(default_factory=list)  # id, off, len, raw


@dataclass(frozen=True, slots=True)
class PackRows:
    """The packs of a loaded segment as the index stores them, with no Python object per
    blob: each pack's ID, type and size, and all their blobs' rows (`_table`; pack key 0)
    one pack after the other. Pack i has rows [ends[i - 1], ends[i]) (from 0)."""

    pack_ids: list[str]
    blob_types: bytes
    sizes: array[int]
    ends: array[int]
    rows: bytes
    #: Row → (offset, length, raw length) of the rows whose numbers exceed 32 bits.
    wide: dict[int, tuple[int, int, int]]

    def first_row(self, i: int) -> int:
        return self.ends[i - 1] if i else 0

    def pack_info(self, i: int) -> PackInfo:
        blobs = decode_blobs(self.rows, self.first_row(i), self.ends[i], self.wide)
        return PackInfo(self.pack_ids[i], _TYPES[self.blob_types[i]], self.sizes[i], blobs)

    @classmethod
    def decode(cls, packs: object) -> PackRows:
        """Check the "packs" array of a segment and encode it, in bulk: a pass over the
        packs for each check, one over all their blobs (`encode_blobs`). ValueError,
        TypeError or OverflowError if anything in it is malformed."""
        if type(packs) is not tuple:
            raise TypeError("a segment's packs are an array")
        if not packs:
            return cls([], b"", array("Q"), array("Q"), b"", {})
        if set(map(type, packs)) != {tuple}:
            raise TypeError("a pack is listed as [id, type, size, blobs]")
        pack_ids, types, sizes, blob_lists = zip(*packs, strict=True)
        if (
            set(map(type, pack_ids)) != {str}
            or set(map(len, pack_ids)) != {64}
            or "".join(pack_ids).strip(_HEX_DIGITS)
        ):
            raise ValueError("a pack or segment ID is 64 hex digits")
        if not set(types) <= _TYPE_NUMBERS:
            raise ValueError("a pack's blob type is unknown")
        if set(map(type, blob_lists)) != {tuple}:
            raise TypeError("a pack's blobs are an array")
        ends = array("Q", accumulate(map(len, blob_lists)))
        rows, wide = encode_blobs(tuple(chain.from_iterable(blob_lists)))
        # array("Q") refuses a negative size, one over 64 bits and one that is no integer.
        return cls(list(pack_ids), bytes(types), array("Q", sizes), ends, rows, wide)


class IndexSegment:
    """One stored index document.

    `supersedes` lets prune replace old segments with a rewritten one without a moment
    where blobs are missing. Prune's first phase *marks* unreferenced packs: a marked
    pack stays listed (with the time it was marked) so its blobs can still be read, but
    backups do not deduplicate against it.

    A segment read by `from_bytes` keeps its packs as `PackRows`, which `Index.add_segment`
    copies in bulk; its `packs` are built when first asked for (and the rows dropped).
    """

    __slots__ = ("_packs", "_rows", "marked", "supersedes")

    def __init__(
        self,
        packs: list[PackInfo] | None = None,
        supersedes: list[str] | None = None,
        marked: dict[str, float] | None = None,
    ) -> None:
        self._packs: list[PackInfo] = [] if packs is None else packs
        self._rows: PackRows | None = None
        self.supersedes: list[str] = [] if supersedes is None else supersedes
        #: pack ID → epoch seconds when prune marked it for deletion (its pack is listed).
        self.marked: dict[str, float] = {} if marked is None else marked

    @property
    def packs(self) -> list[PackInfo]:
        if self._rows is not None:
            rows, self._rows = self._rows, None
            self._packs = [rows.pack_info(i) for i in range(len(rows.pack_ids))]
        return self._packs

    @property
    def pack_rows(self) -> PackRows | None:
        """The packs as a loaded segment holds them, until `packs` is asked for."""
        return self._rows

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndexSegment):
            return NotImplemented
        mine = (self.packs, self.supersedes, self.marked)
        return mine == (other.packs, other.supersedes, other.marked)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"IndexSegment(packs={self.packs!r}, supersedes={self.supersedes!r}, "
            f"marked={self.marked!r})"
        )

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
            raw = _unpack(data)
            if type(raw) is not dict or type(raw.get("marked", {})) is not dict:
                raise TypeError("an index segment and its marks are maps")
            rows = PackRows.decode(raw["packs"])
            marked = {_object_id(k): _seconds(v) for k, v in raw.get("marked", {}).items()}
            segment = cls(None, [_object_id(s) for s in raw.get("supersedes", ())], marked)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise IntegrityError("index segment is malformed") from exc
        segment._rows = rows
        return segment

    @property
    def blob_count(self) -> int:
        if self._rows is not None:
            return len(self._rows.rows) // ROW_SIZE
        return sum(len(p.blobs) for p in self.packs)


def _unpack(data: bytes) -> Any:
    """The msgpack document, arrays as tuples (no Python code per blob).

    The collector is paused meanwhile: a segment is a few hundred thousand fresh tuples
    and no cycle, and the collections they would set off took 40% of the decoding time
    (0.6 against 0.35 µs a blob, scripts/bench_index.py --load-segments).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return msgpack.unpackb(data, use_list=False)
    finally:
        if enabled:
            gc.enable()


def pack_size(value: object) -> int:
    """`value` if it is a valid pack size (a non-negative int); ValueError otherwise."""
    if not isinstance(value, int) or value < 0:
        raise ValueError("a pack size is a non-negative integer")  # no repr: it may nest deep
    return value


def _object_id(value: object) -> str:
    """A pack or segment ID: 64 lowercase hex digits (it becomes part of an object name)."""
    if not isinstance(value, str) or len(value) != 64 or value.strip(_HEX_DIGITS):
        raise ValueError("a pack or segment ID is 64 hex digits")
    return value


def _seconds(value: object) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a time is a finite number of seconds")
    return float(value)
