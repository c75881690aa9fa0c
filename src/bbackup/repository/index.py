"""The index: blob ID → (pack, offset, length, raw length, type), and its stored segments.

An index *segment* is a document of kind "index" listing packs and the blobs in each.
The in-memory `Index` is the union of all segments; `supersedes` lets prune replace old
segments with a rewritten one without a moment where blobs are missing.

Prune's first phase *marks* unreferenced packs: a marked pack stays listed (with the time
it was marked) so its blobs can still be read, but backups do not deduplicate against it,
so no new snapshot starts to depend on a pack that is about to be deleted.

Memory layout (issue #5, "Scale": millions of blobs, so no Python object per blob).
Every (pack, blob) pair the segments list is a *row*: 48 bytes in one `bytearray`, the
32-byte blob ID then four native 32-bit integers (pack number and blob type, offset,
length, raw length; numbers over 32 bits go to a side table). Rows are numbered from 1 in
the order packs are added, and each pack's rows are contiguous; per pack the index keeps
its ID string, type, size and first row. Blobs are found through open-addressing hash
tables keyed by `hash(blob_id)`: an `array` of row numbers (0 = empty) a power of two
long, at most 70% full, linear probing, plus an 8-bit tag per slot from other hash bits
so that a probe seldom reads a row it does not want. A probe always compares the full
32-byte ID with the row, so IDs sharing a prefix or a hash are never confused. One table
holds the first live copy of each blob, the other the first copy in a marked pack; both
are filled lazily (adding a pack stores its rows, the next lookup enters them), so that
loading thousands of segments builds each table once, at its final size. `IndexEntry`
and `PackInfo` objects are built when asked for. About 70-80 bytes per blob in all.

Blob IDs are exactly 32 bytes. A pack's content is fixed by its ID, so when a pack is
listed again (by another segment) its blob list is not read again.

Threads: `in`, `get`, `lookup` and `has` may run in other threads while `add_pack` runs
in one (the writer checks for known blobs from worker threads). Rows are written before
they are entered in a table, a table is replaced whole (never resized in place), filling
a table is serialised by a lock, and rows stay "pending" until they are entered, so a
lookup finds a blob completely or, while it is being added, possibly not at all.
"""

from __future__ import annotations

import struct
import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import NamedTuple

import msgpack

from bbackup.crypto import BlobType
from bbackup.errors import IntegrityError

INDEX_KIND = "index"

ID_SIZE = 32
_ROW = struct.Struct("=32s4I")  # blob ID, pack key, offset, length, raw length
ROW_SIZE = _ROW.size
_unpack_row = _ROW.unpack_from
_unpack_numbers = struct.Struct("=4I").unpack_from  # at row start + ID_SIZE
#: A row's first number is pack number << _TYPE_BITS | blob type.
_TYPES = tuple(BlobType(t) for t in range(len(BlobType)))
_TYPE_BITS = (len(_TYPES) - 1).bit_length()
_TYPE_MASK = (1 << _TYPE_BITS) - 1
_BLOB = struct.Struct("=32s4x3I")  # a row as PackInfo lists it: ID, offset, length, raw
_ID = struct.Struct("=32s16x")
_unpack_id = struct.Struct("=32s").unpack_from
_first = itemgetter(0)
_WIDE = 0xFFFFFFFF  # offset, length and raw length of a row whose values are in Index._wide

_LIVE = 1
_MARKED = 2
_MAX_LOAD = 0.7  # a table doubles before it would be fuller than this
_MIN_SLOTS = 16

_new_tuple = tuple.__new__  # builds an IndexEntry without the NamedTuple __new__ call


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
            # tuple PackInfo holds, with no Python code per blob; _encode_rows checks them.
            raw = msgpack.unpackb(data, use_list=False)
            packs = []
            for pid, t, size, blobs in raw["packs"]:
                blobs = list(blobs)
                _encode_rows(blobs, 0)
                packs.append(PackInfo(str(pid), BlobType(t), _count(size), blobs))
            marked = {str(k): float(v) for k, v in raw.get("marked", {}).items()}
            return cls(packs, [str(s) for s in raw.get("supersedes", ())], marked)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError("index segment is malformed") from exc

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)


def _count(value: object) -> int:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _encode_rows(
    blobs: Sequence[tuple[bytes, int, int, int]], key: int
) -> tuple[Sequence[bytes], bytes, list[tuple[int, int, int, int]]]:
    """Check a pack's blob list and encode its rows, `key` being their first number.

    Returns the blob IDs, the rows, and (i, offset, length, raw length) for each blob i
    whose numbers do not fit in 32 bits. Raises ValueError or TypeError. The usual case
    runs no Python code per blob.
    """
    if not blobs:
        return (), b"", []
    try:
        ids, offsets, lengths, raw_lengths = zip(*blobs, strict=True)
    except ValueError:
        raise ValueError("a blob is listed as (id, offset, length, raw length)") from None
    if set(map(type, ids)) != {bytes}:
        raise TypeError("blob IDs must be bytes")
    if min(map(len, ids)) != ID_SIZE or max(map(len, ids)) != ID_SIZE:
        raise ValueError(f"blob IDs must be {ID_SIZE} bytes")
    try:
        return ids, b"".join(map(_ROW.pack, ids, repeat(key), offsets, lengths, raw_lengths)), []
    except struct.error:
        pass
    rows: list[bytes] = []
    wide: list[tuple[int, int, int, int]] = []
    for i, (blob_id, offset, length, raw_length) in enumerate(blobs):
        numbers = (offset, length, raw_length)
        if not all(isinstance(n, int) and n >= 0 for n in numbers):
            raise ValueError("blob offsets and lengths must be non-negative integers")
        if max(numbers) > _WIDE:
            wide.append((i, offset, length, raw_length))
            numbers = (_WIDE, _WIDE, _WIDE)
        try:
            rows.append(_ROW.pack(blob_id, key, *numbers))
        except struct.error as exc:
            raise ValueError(str(exc)) from None
    return ids, b"".join(rows), wide


# ---- tables -------------------------------------------------------------------------------
#
# A table is (slots, tags, mask): `slots` an array of row numbers (0 = empty) whose length
# is a power of two, mask = length - 1, and `tags[i]` eight bits of the hash of the ID in
# slot i, so that a probe past the first slot rarely reads a row it does not want. Readers
# take the tuple at once, so they never mix two tables; writers set a slot's tag before
# its row number.

_Table = tuple["array[int]", bytearray, int]
_TAG_SHIFT = 40  # the tag is bits 40-47 of the hash; slot numbers use the low bits


def _empty_table(entries: int, max_row: int) -> _Table:
    """A table with room for `entries` rows numbered up to `max_row`."""
    slots = _MIN_SLOTS
    while entries > slots * _MAX_LOAD:
        slots *= 2
    typecode = "I" if max_row <= 0xFFFFFFFF else "Q"
    return array(typecode, (0,)) * slots, bytearray(slots), slots - 1


def _has_room(table: _Table, entries: int, max_row: int) -> bool:
    slots, _tags, mask = table
    return entries <= (mask + 1) * _MAX_LOAD and (max_row <= 0xFFFFFFFF or slots.itemsize >= 8)


def _probe(table: _Table, rows: bytearray, blob_id: object, h: int, i: int) -> int:
    """The row of `blob_id` (hash `h`), searching from slot i + 1 on, or 0."""
    slots, tags, mask = table
    tag = (h >> _TAG_SHIFT) & 0xFF
    i = (i + 1) & mask
    row = slots[i]
    while row:
        if tags[i] == tag:
            at = row * ROW_SIZE
            if rows[at : at + ID_SIZE] == blob_id:
                return row
        i = (i + 1) & mask
        row = slots[i]
    return 0


def _find(table: _Table, rows: bytearray, blob_id: object, h: int | None = None) -> int:
    """The row of `blob_id` (whose hash is `h`, if given) in `table`, or 0."""
    if h is None:
        h = hash(blob_id)
    i = h & table[2]
    row = table[0][i]
    if not row:
        return 0
    at = row * ROW_SIZE
    if rows[at : at + ID_SIZE] == blob_id:
        return row
    return _probe(table, rows, blob_id, h, i)


def _insert(table: _Table, rows: bytearray, blob_ids: Iterable[bytes], first_row: int) -> int:
    """Enter rows first_row, first_row + 1, … holding `blob_ids`, except IDs already in the
    table (the first copy wins). The table must have room. Returns how many were entered."""
    slots, tags, mask = table
    added = 0
    for row, blob_id in enumerate(blob_ids, first_row):
        h = hash(blob_id)
        tag = (h >> _TAG_SHIFT) & 0xFF
        i = h & mask
        other = slots[i]
        while other:
            if tags[i] == tag:
                at = other * ROW_SIZE
                if rows[at : at + ID_SIZE] == blob_id:
                    break
            i = (i + 1) & mask
            other = slots[i]
        else:
            tags[i] = tag
            slots[i] = row
            added += 1
    return added


def _rehash(table: _Table, rows: bytearray, entries: int, max_row: int) -> _Table:
    """A new table with the entries of `table` and room for `entries` in all."""
    new = _empty_table(entries, max_row)
    slots, tags, mask = new
    for row, tag in zip(table[0], table[1], strict=True):
        if row:
            i = hash(_unpack_id(rows, row * ROW_SIZE)[0]) & mask
            while slots[i]:
                i = (i + 1) & mask
            tags[i] = tag
            slots[i] = row
    return new


def _ids_of(rows: bytearray, first_row: int, end_row: int) -> list[bytes]:
    return list(map(_first, _ID.iter_unpack(rows[first_row * ROW_SIZE : end_row * ROW_SIZE])))


_RUN = 1 << 12  # rows entered at a time (their IDs are materialised as bytes meanwhile)


def _runs(ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The row ranges [first, end) in order, adjacent ones joined, none over _RUN rows."""
    run_first = run_end = 0
    for first, end in ranges:
        if first == run_end and end - run_first <= _RUN:
            run_end = end
            continue
        if run_end > run_first:
            yield run_first, run_end
        while end - first > _RUN:
            yield first, first + _RUN
            first += _RUN
        run_first, run_end = first, end
    if run_end > run_first:
        yield run_first, run_end


class Index:
    """The in-memory union of index segments.

    `in` and `get` see live packs only (what backups deduplicate against); `lookup` also
    finds blobs in packs marked for deletion, so every snapshot stays readable.

    `packs`, `marked_packs` and `all_packs()` are read-only mappings pack ID → `PackInfo`
    that follow the index as it changes; a `PackInfo` is built each time one is looked up.
    """

    def __init__(self) -> None:
        # Packs, by number.
        self._pack_ids: list[str] = []
        self._pack_types: list[BlobType] = []
        self._pack_sizes = array("Q")
        self._pack_rows = array("Q", [1])  # pack p has rows [_pack_rows[p], _pack_rows[p + 1])
        self._pack_state = bytearray()  # _LIVE or _MARKED
        self._pack_numbers: dict[str, int] = {}
        self._live_order = array("Q")  # live packs in the order they became live
        #: pack ID → epoch seconds when prune marked it (the marked packs, in marking order)
        self.marked: dict[str, float] = {}
        # Rows; row 0 is a placeholder, so that 0 can mean "empty" in a table.
        self._rows = bytearray(ROW_SIZE)
        self._wide: dict[int, tuple[int, int, int]] = {}  # row → numbers over 32 bits
        # The tables are filled lazily: adding a pack only stores its rows, and the next
        # lookup enters them, so loading many segments sizes the table once. _lock
        # serialises filling (lookups may come from several threads).
        self._lock = threading.Lock()
        self._live: _Table = _empty_table(0, 0)  # first live copy of each blob
        self._live_count = 0
        self._pending = array("Q")  # first, end row of each live pack not in _live yet
        self._marked_table: _Table = _empty_table(0, 0)  # first copy in a marked pack
        self._marked_changes = 0  # add_pack counts changes to the marked packs
        self._marked_built = 0  # _marked_table is as of this many changes
        self.packs: Mapping[str, PackInfo] = _PackView(self, _LIVE)
        self.marked_packs: Mapping[str, PackInfo] = _PackView(self, _MARKED)

    # ---- blobs --------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._pending:
            self._enter_pending()
        return self._live_count

    # `in` and `get` run the first probe inline: most lookups end there.

    def __contains__(self, blob_id: object) -> bool:
        if self._pending:
            self._enter_pending()
        slots, _tags, mask = table = self._live
        h = hash(blob_id)
        i = h & mask
        row = slots[i]
        if not row:
            return False
        at = row * ROW_SIZE
        rows = self._rows
        return rows[at : at + ID_SIZE] == blob_id or _probe(table, rows, blob_id, h, i) != 0

    def get(self, blob_id: bytes) -> IndexEntry | None:
        if self._pending:
            self._enter_pending()
        slots, _tags, mask = table = self._live
        h = hash(blob_id)
        i = h & mask
        row = slots[i]
        if not row:
            return None
        found, key, offset, length, raw_length = _unpack_row(self._rows, row * ROW_SIZE)
        if found == blob_id and offset != _WIDE:
            return _new_tuple(
                IndexEntry,
                (
                    self._pack_ids[key >> _TYPE_BITS],
                    _TYPES[key & _TYPE_MASK],
                    offset,
                    length,
                    raw_length,
                ),
            )
        if found != blob_id:
            row = _probe(table, self._rows, blob_id, h, i)
        return self._entry(row) if row else None

    def lookup(self, blob_id: bytes) -> IndexEntry:
        # get's fast path again, inline: restore and prune call this for every blob.
        if self._pending:
            self._enter_pending()
        slots, _tags, mask = table = self._live
        h = hash(blob_id)
        i = h & mask
        row = slots[i]
        if row:
            found, key, offset, length, raw_length = _unpack_row(self._rows, row * ROW_SIZE)
            if found == blob_id and offset != _WIDE:
                return _new_tuple(
                    IndexEntry,
                    (
                        self._pack_ids[key >> _TYPE_BITS],
                        _TYPES[key & _TYPE_MASK],
                        offset,
                        length,
                        raw_length,
                    ),
                )
            if found != blob_id:
                row = _probe(table, self._rows, blob_id, h, i)
        if not row and self.marked:
            row = _find(self._marked_lookup(), self._rows, blob_id, h)
        if not row:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the index")
        return self._entry(row)

    def has(self, blob_id: bytes) -> bool:
        """True if the blob can be read (live or marked pack)."""
        if blob_id in self:
            return True
        return bool(self.marked) and _find(self._marked_lookup(), self._rows, blob_id) != 0

    def blob_ids(self) -> Iterator[bytes]:
        return (blob_id for blob_id, _row in self._live_rows())

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        return ((blob_id, self._entry(row)) for blob_id, row in self._live_rows())

    def _entry(self, row: int) -> IndexEntry:
        key, offset, length, raw_length = _unpack_numbers(self._rows, row * ROW_SIZE + ID_SIZE)
        if offset == _WIDE and row in self._wide:
            offset, length, raw_length = self._wide[row]
        return IndexEntry(
            self._pack_ids[key >> _TYPE_BITS], _TYPES[key & _TYPE_MASK], offset, length, raw_length
        )

    def _live_rows(self) -> Iterator[tuple[bytes, int]]:
        """(blob ID, row) of each live blob's first copy, in the order they were added."""
        if self._pending:
            self._enter_pending()
        for p in self._live_order:
            first, end = self._pack_rows[p], self._pack_rows[p + 1]
            for row, blob_id in enumerate(_ids_of(self._rows, first, end), first):
                if _find(self._live, self._rows, blob_id) == row:
                    yield blob_id, row

    # ---- packs --------------------------------------------------------------------------

    def add_pack(self, pack: PackInfo, marked_at: float | None = None) -> None:
        """Add a pack, live or (with `marked_at`) marked for deletion.

        A pack listed live wins over a mark, whichever comes first; several packs may
        hold the same blob, and the first copy added (live, or among marked packs) is
        the one `get` and `lookup` return.
        """
        p = self._pack_numbers.get(pack.pack_id)
        if marked_at is not None:
            if p is None:
                p = self._append_pack(pack)
                self.marked[pack.pack_id] = marked_at
                self._pack_state[p] = _MARKED
                self._marked_changes += 1
            elif self._pack_state[p] == _MARKED:
                self.marked[pack.pack_id] = marked_at
            # else listed live by another segment: live wins
            return
        unmark = p is not None
        if p is None:
            p = self._append_pack(pack)
        elif self._pack_state[p] == _LIVE:
            return
        self._pack_state[p] = _LIVE
        self._live_order.append(p)
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        if first != end:
            self._pending += array("Q", (first, end))  # one step: never half there
        if unmark:  # it was marked; now listed live. (Unmarked last, so that a lookup in
            # another thread always finds its blobs in one table or the other.)
            del self.marked[pack.pack_id]
            self._marked_changes += 1

    def add_segment(self, segment: IndexSegment) -> None:
        for pack in segment.packs:
            self.add_pack(pack, segment.marked.get(pack.pack_id))

    def all_packs(self) -> Mapping[str, PackInfo]:
        """Live and marked packs: everything the index says is stored."""
        return _PackView(self, _LIVE | _MARKED)

    def _append_pack(self, pack: PackInfo) -> int:
        """Store a new pack and its rows, in no table yet; return its number."""
        p = len(self._pack_ids)
        blob_type = BlobType(pack.blob_type)
        blob_ids, encoded, wide = _encode_rows(pack.blobs, p << _TYPE_BITS | blob_type)
        size = _count(pack.size)
        first = self._pack_rows[-1]
        self._rows += encoded
        for i, offset, length, raw_length in wide:
            self._wide[first + i] = (offset, length, raw_length)
        self._pack_rows.append(first + len(blob_ids))
        self._pack_ids.append(pack.pack_id)
        self._pack_types.append(blob_type)
        self._pack_sizes.append(size)
        self._pack_state.append(0)
        self._pack_numbers[pack.pack_id] = p
        return p

    def _enter_pending(self) -> None:
        """Enter the rows of packs added live since the last lookup in the live table."""
        with self._lock:
            count = len(self._pending)
            if not count:
                return  # another thread did it
            batch = self._pending[:count]  # add_pack only appends meanwhile
            entries = self._live_count + sum(batch[1::2]) - sum(batch[::2])
            table = self._live
            if not _has_room(table, entries, max(batch)):
                table = self._live = _rehash(table, self._rows, entries, max(batch))
            added = 0
            for first, end in _runs(zip(batch[::2], batch[1::2], strict=True)):
                added += _insert(table, self._rows, _ids_of(self._rows, first, end), first)
            self._live_count += added
            del self._pending[:count]  # only now: until then, other lookups wait

    def _marked_lookup(self) -> _Table:
        """The table of first copies in marked packs, rebuilt if they changed."""
        if self._marked_built != self._marked_changes:
            with self._lock:
                changes = self._marked_changes
                if self._marked_built != changes:
                    ranges = [
                        (self._pack_rows[p], self._pack_rows[p + 1])
                        for p in map(self._pack_numbers.__getitem__, list(self.marked))
                    ]
                    rows = sum(end - first for first, end in ranges)
                    table = _empty_table(rows, self._pack_rows[-1])
                    for first, end in _runs(ranges):
                        _insert(table, self._rows, _ids_of(self._rows, first, end), first)
                    self._marked_table = table
                    self._marked_built = changes
        return self._marked_table

    def _pack_info(self, p: int) -> PackInfo:
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        blobs = list(_BLOB.iter_unpack(self._rows[first * ROW_SIZE : end * ROW_SIZE]))
        if self._wide:
            for i, blob in enumerate(blobs):
                if blob[1] == _WIDE and first + i in self._wide:
                    blobs[i] = (blob[0], *self._wide[first + i])
        return PackInfo(self._pack_ids[p], self._pack_types[p], self._pack_sizes[p], blobs)


class _PackView(Mapping[str, PackInfo]):
    """Read-only pack ID → PackInfo over the packs of an Index in some states."""

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
        live = map(index._pack_ids.__getitem__, index._live_order)
        if self._states == _LIVE:
            return live
        if self._states == _MARKED:
            return iter(index.marked)
        return chain(index.marked, live)  # marked first, like {**marked_packs, **packs}

    def __len__(self) -> int:
        index = self._index
        live = len(index._live_order) if self._states & _LIVE else 0
        return live + (len(index.marked) if self._states & _MARKED else 0)

    def __repr__(self) -> str:
        return f"<{len(self)} packs>"
