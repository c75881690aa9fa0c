"""The index: blob ID → (pack, offset, length, raw length, type), and its stored segments.

An index *segment* is a document of kind "index" listing packs and the blobs in each.
The in-memory `Index` is the union of all segments; `supersedes` lets prune replace old
segments with a rewritten one without a moment where blobs are missing.

Prune's first phase *marks* unreferenced packs: a marked pack stays listed (with the time
it was marked) so its blobs can still be read, but backups do not deduplicate against it,
so no new snapshot starts to depend on a pack that is about to be deleted.

Memory layout (issue #5, "Scale"): the `Index` must hold millions of blobs, so it keeps no
Python object per blob. Every (pack, blob) pair is a *row*; rows are numbered from 1 in the
order packs are added, and a pack's rows are contiguous. A row is 48 bytes: its 32-byte
blob ID in one `bytearray` and four 32-bit columns (pack number, offset, length, raw
length; a column widens to 64 bits if a value needs it). Packs are numbered too; per pack
the index keeps its ID string, type, size and first row. Blob lookups go through
open-addressing hash tables (`array` of row numbers, 0 = empty, linear probing, at most
70% full) keyed by `hash(blob_id)`; a probe always compares the full 32-byte ID against the
row, so two IDs that share a prefix or a hash are never confused. One table holds the
first live copy of each blob, another the first copy in a marked pack. `PackInfo` and
`IndexEntry` objects are built when asked for.

Blob IDs are exactly 32 bytes; a pack's content is fixed by its ID, so when a pack is
listed again (by another segment) its blob list is not read again.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple

import msgpack

from bbackup.crypto import BlobType
from bbackup.errors import IntegrityError

INDEX_KIND = "index"

ID_SIZE = 32
_LIVE = 1
_MARKED = 2
_MAX_LOAD = 0.7  # a hash table grows (doubles) when it would be fuller than this
_MIN_SLOTS = 16
_U32 = 0xFFFFFFFF


class IndexEntry(NamedTuple):
    """Where one blob can be read."""

    pack_id: str
    blob_type: BlobType
    offset: int
    length: int
    raw_length: int


_new_tuple = tuple.__new__  # builds an IndexEntry without the NamedTuple __new__ call


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
            # Arrays as tuples: each blob arrives as the (id, offset, length, raw) tuple
            # PackInfo holds, with no per-blob Python code; _blob_columns validates them.
            raw = msgpack.unpackb(data, use_list=False)
            packs = []
            for pid, t, size, blobs in raw["packs"]:
                blobs = list(blobs)
                _blob_columns(blobs)
                packs.append(PackInfo(str(pid), BlobType(t), _size(size), blobs))
            marked = {str(k): float(v) for k, v in raw.get("marked", {}).items()}
            return cls(packs, [str(s) for s in raw.get("supersedes", ())], marked)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError("index segment is malformed") from exc

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)


def _size(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"pack size {value!r} is not a non-negative integer")
    return value


def _column(values: Sequence[int]) -> array[int]:
    """`values` as 32-bit unsigned integers, or 64-bit if one needs it."""
    try:
        return array("I", values)
    except OverflowError:
        pass
    try:
        return array("Q", values)
    except OverflowError:
        raise ValueError("blob offsets and lengths must be non-negative integers") from None


def _blob_columns(
    blobs: Sequence[tuple[bytes, int, int, int]],
) -> tuple[tuple[bytes, ...], bytes, array[int], array[int], array[int]]:
    """Validate a pack's blob list; return its IDs, them joined, and the three int columns.

    Raises ValueError or TypeError; everything runs in C, nothing per blob in Python.
    """
    if not blobs:
        empty = array("I")
        return (), b"", empty, empty, empty
    try:
        ids, offsets, lengths, raw_lengths = zip(*blobs, strict=True)
    except ValueError:
        raise ValueError("a blob is listed as (id, offset, length, raw length)") from None
    if set(map(type, ids)) != {bytes}:
        raise TypeError("blob IDs must be bytes")
    joined = b"".join(ids)
    if len(joined) != ID_SIZE * len(ids) or min(map(len, ids)) != ID_SIZE:
        raise ValueError(f"blob IDs must be {ID_SIZE} bytes")
    return ids, joined, _column(offsets), _column(lengths), _column(raw_lengths)


# ---- open-addressing tables -------------------------------------------------------------
#
# A table is a pair (slots, mask): `slots` is an array of row numbers (0 = empty) whose
# length is a power of two, mask = length - 1. It is replaced as a whole (never resized in
# place) so a reader in another thread always sees a consistent pair; rows are written
# before they are entered in a table, so a row a reader finds is complete.

_Table = tuple["array[int]", int]


def _empty_table(entries: int, max_row: int) -> _Table:
    """A table with room for `entries` entries of rows up to `max_row`."""
    slots = _MIN_SLOTS
    while entries > slots * _MAX_LOAD:
        slots *= 2
    typecode = "I" if max_row <= _U32 else "Q"
    return array(typecode, bytes(array(typecode).itemsize * slots)), slots - 1


def _has_room(table: _Table, entries: int, max_row: int) -> bool:
    slots, mask = table
    return entries <= (mask + 1) * _MAX_LOAD and (max_row <= _U32 or slots.typecode == "Q")


def _find(table: _Table, ids: bytearray, blob_id: object) -> int:
    """The row of `blob_id` in `table`, or 0."""
    slots, mask = table
    i = hash(blob_id) & mask
    row = slots[i]
    while row:
        at = row << 5
        if ids[at : at + ID_SIZE] == blob_id:
            return row
        i = (i + 1) & mask
        row = slots[i]
    return 0


def _insert(table: _Table, ids: bytearray, blob_ids: Iterable[bytes], first_row: int) -> int:
    """Enter rows first_row, first_row + 1, … holding `blob_ids`, unless the ID is already
    in the table (the first copy wins). The table must have room. Returns how many
    were entered."""
    slots, mask = table
    added = 0
    for row, blob_id in enumerate(blob_ids, first_row):
        i = hash(blob_id) & mask
        other = slots[i]
        while other:
            at = other << 5
            if ids[at : at + ID_SIZE] == blob_id:
                break
            i = (i + 1) & mask
            other = slots[i]
        else:
            slots[i] = row
            added += 1
    return added


def _rehash(table: _Table, ids: bytearray, entries: int, max_row: int) -> _Table:
    """A copy of `table` with room for `entries` entries."""
    new = _empty_table(entries, max_row)
    slots, mask = new
    for row in table[0]:
        if row:
            at = row << 5
            i = hash(bytes(ids[at : at + ID_SIZE])) & mask
            while slots[i]:
                i = (i + 1) & mask
            slots[i] = row
    return new


def _ids_of(ids: bytearray, first_row: int, end_row: int) -> list[bytes]:
    chunk = bytes(ids[first_row << 5 : end_row << 5])
    return [chunk[at : at + ID_SIZE] for at in range(0, len(chunk), ID_SIZE)]


class Index:
    """The in-memory union of index segments.

    `in` and `get` see live packs only (what backups deduplicate against); `lookup` also
    finds blobs in packs marked for deletion, so every snapshot stays readable.

    `packs`, `marked_packs` and `all_packs()` are read-only mappings pack ID → `PackInfo`
    that follow the index as it changes; each `PackInfo` is built when looked up.
    """

    def __init__(self) -> None:
        # Packs, by number p.
        self._pack_ids: list[str] = []
        self._pack_types: list[BlobType] = []
        self._pack_sizes = array("Q")
        self._pack_rows = array("Q", [1])  # pack p has rows [_pack_rows[p], _pack_rows[p + 1])
        self._pack_state = bytearray()  # _LIVE or _MARKED
        self._pack_numbers: dict[str, int] = {}
        self._live_order = array("I")  # live packs, in the order they became live
        #: pack ID → epoch seconds when prune marked it (the marked packs, in marking order)
        self.marked: dict[str, float] = {}
        # Rows; row 0 is a placeholder so that 0 can mean "empty" in a table.
        self._ids = bytearray(ID_SIZE)
        self._row_pack = array("I", [0])
        self._row_offset = array("I", [0])
        self._row_length = array("I", [0])
        self._row_raw = array("I", [0])
        # Tables: first live copy of each blob; first copy in a marked pack.
        self._live: _Table = _empty_table(0, 0)
        self._live_count = 0
        self._marked_table: _Table = _empty_table(0, 0)
        self._marked_entries = 0
        self._marked_stale = False  # a pack was unmarked: rebuild _marked_table when needed
        self.packs: Mapping[str, PackInfo] = _PackView(self, _LIVE)
        self.marked_packs: Mapping[str, PackInfo] = _PackView(self, _MARKED)

    # ---- blobs ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._live_count

    def __contains__(self, blob_id: object) -> bool:
        slots, mask = self._live
        i = hash(blob_id) & mask
        row = slots[i]
        ids = self._ids
        while row:
            at = row << 5
            if ids[at : at + ID_SIZE] == blob_id:
                return True
            i = (i + 1) & mask
            row = slots[i]
        return False

    def get(self, blob_id: bytes) -> IndexEntry | None:
        slots, mask = self._live
        i = hash(blob_id) & mask
        row = slots[i]
        ids = self._ids
        while row:
            at = row << 5
            if ids[at : at + ID_SIZE] == blob_id:
                p = self._row_pack[row]
                return _new_tuple(
                    IndexEntry,
                    (
                        self._pack_ids[p],
                        self._pack_types[p],
                        self._row_offset[row],
                        self._row_length[row],
                        self._row_raw[row],
                    ),
                )
            i = (i + 1) & mask
            row = slots[i]
        return None

    def lookup(self, blob_id: bytes) -> IndexEntry:
        entry = self.get(blob_id)
        if entry is not None:
            return entry
        if self.marked:
            row = _find(self._marked_lookup(), self._ids, blob_id)
            if row:
                return self._entry(row)
        raise IntegrityError(f"blob {blob_id.hex()} is not in the index")

    def has(self, blob_id: bytes) -> bool:
        """True if the blob can be read (live or marked pack)."""
        return blob_id in self or (
            bool(self.marked) and _find(self._marked_lookup(), self._ids, blob_id) != 0
        )

    def blob_ids(self) -> Iterator[bytes]:
        return (blob_id for blob_id, _row in self._live_rows())

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        return ((blob_id, self._entry(row)) for blob_id, row in self._live_rows())

    def _entry(self, row: int) -> IndexEntry:
        p = self._row_pack[row]
        return IndexEntry(
            self._pack_ids[p],
            self._pack_types[p],
            self._row_offset[row],
            self._row_length[row],
            self._row_raw[row],
        )

    def _live_rows(self) -> Iterator[tuple[bytes, int]]:
        """(blob ID, row) of each live blob's first copy, in the order they were added."""
        for p in self._live_order:
            first, end = self._pack_rows[p], self._pack_rows[p + 1]
            for row, blob_id in enumerate(_ids_of(self._ids, first, end), first):
                if _find(self._live, self._ids, blob_id) == row:
                    yield blob_id, row

    # ---- packs ------------------------------------------------------------------------

    def add_pack(self, pack: PackInfo, marked_at: float | None = None) -> None:
        p = self._pack_numbers.get(pack.pack_id)
        blob_ids: Sequence[bytes] | None = None
        if marked_at is not None:
            if p is None:
                p, blob_ids = self._append_pack(pack)
                self.marked[pack.pack_id] = marked_at
                self._pack_state[p] = _MARKED
                if not self._marked_stale:
                    self._enter_marked(p, blob_ids)
            elif self._pack_state[p] == _MARKED:
                self.marked[pack.pack_id] = marked_at
            # else: listed live by another segment: live wins
            return
        if p is None:
            p, blob_ids = self._append_pack(pack)
        elif self._pack_state[p] == _LIVE:
            return
        else:  # listed live now: unmark it
            del self.marked[pack.pack_id]
            self._marked_stale = True
        self._pack_state[p] = _LIVE
        self._live_order.append(p)
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        if first == end:
            return
        if blob_ids is None:
            blob_ids = _ids_of(self._ids, first, end)
        entries = self._live_count + (end - first)
        if not _has_room(self._live, entries, end):
            self._live = _rehash(self._live, self._ids, entries, end)
        self._live_count += _insert(self._live, self._ids, blob_ids, first)

    def add_segment(self, segment: IndexSegment) -> None:
        for pack in segment.packs:
            self.add_pack(pack, segment.marked.get(pack.pack_id))

    def all_packs(self) -> Mapping[str, PackInfo]:
        """Live and marked packs: everything the index says is stored."""
        return _PackView(self, _LIVE | _MARKED)

    def _append_pack(self, pack: PackInfo) -> tuple[int, tuple[bytes, ...]]:
        """Store a new pack and its rows (entered in no table yet); return its number
        and blob IDs."""
        blob_ids, joined, offsets, lengths, raw_lengths = _blob_columns(pack.blobs)
        size = _size(pack.size)
        blob_type = BlobType(pack.blob_type)
        p = len(self._pack_ids)
        first = self._pack_rows[-1]
        end = first + len(blob_ids)
        self._ids += joined
        self._row_pack = _extend(self._row_pack, _column([p]) * len(blob_ids))
        self._row_offset = _extend(self._row_offset, offsets)
        self._row_length = _extend(self._row_length, lengths)
        self._row_raw = _extend(self._row_raw, raw_lengths)
        self._pack_rows.append(end)
        self._pack_ids.append(pack.pack_id)
        self._pack_types.append(blob_type)
        self._pack_sizes.append(size)
        self._pack_state.append(0)
        self._pack_numbers[pack.pack_id] = p
        return p, blob_ids

    def _enter_marked(self, p: int, blob_ids: Sequence[bytes]) -> None:
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        if first == end:
            return
        entries = self._marked_entries + (end - first)
        if not _has_room(self._marked_table, entries, end):
            self._marked_table = _rehash(self._marked_table, self._ids, entries, end)
        self._marked_entries += _insert(self._marked_table, self._ids, blob_ids, first)

    def _marked_lookup(self) -> _Table:
        """The marked-copies table, rebuilt first if a pack was unmarked since."""
        if self._marked_stale:
            numbers = [self._pack_numbers[pack_id] for pack_id in self.marked]
            rows = sum(self._pack_rows[p + 1] - self._pack_rows[p] for p in numbers)
            table = _empty_table(rows, self._pack_rows[-1])
            entries = 0
            for p in numbers:
                first, end = self._pack_rows[p], self._pack_rows[p + 1]
                entries += _insert(table, self._ids, _ids_of(self._ids, first, end), first)
            self._marked_table, self._marked_entries = table, entries
            self._marked_stale = False
        return self._marked_table

    def _pack_info(self, p: int) -> PackInfo:
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        return PackInfo(
            self._pack_ids[p],
            self._pack_types[p],
            self._pack_sizes[p],
            list(
                zip(
                    _ids_of(self._ids, first, end),
                    self._row_offset[first:end],
                    self._row_length[first:end],
                    self._row_raw[first:end],
                    strict=True,
                )
            ),
        )


def _extend(column: array[int], values: array[int]) -> array[int]:
    """`column` with `values` appended (in place unless it had to widen to 64 bits)."""
    if column.typecode == values.typecode:
        column += values
    elif column.typecode == "Q":
        column.extend(values.tolist())
    else:
        column = array("Q", column)
        column += values
    return column


class _PackView(Mapping[str, PackInfo]):
    """Read-only pack ID → PackInfo over the packs of an Index in the given states."""

    __slots__ = ("_index", "_states")

    def __init__(self, index: Index, states: int) -> None:
        self._index = index
        self._states = states

    def _number(self, pack_id: object) -> int | None:
        p: int | None = self._index._pack_numbers.get(pack_id)  # type: ignore[call-overload]
        if p is None or not self._index._pack_state[p] & self._states:
            return None
        return p

    def __getitem__(self, pack_id: str) -> PackInfo:
        p = self._number(pack_id)
        if p is None:
            raise KeyError(pack_id)
        return self._index._pack_info(p)

    def __contains__(self, pack_id: object) -> bool:
        return self._number(pack_id) is not None

    def __iter__(self) -> Iterator[str]:
        index = self._index
        live = (index._pack_ids[p] for p in index._live_order)
        if self._states == _LIVE:
            return live
        if self._states == _MARKED:
            return iter(index.marked)
        return chain(index.marked, live)  # marked first, as {**marked_packs, **packs}

    def __len__(self) -> int:
        index = self._index
        live = len(index._live_order) if self._states & _LIVE else 0
        return live + (len(index.marked) if self._states & _MARKED else 0)

    def __repr__(self) -> str:
        return f"<{len(self)} packs>"
