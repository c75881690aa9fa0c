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
tables keyed by `hash(blob_id)` (`_table`): an `array` of words a power of two long, at
most 70% full, linear probing, each word a row number and an 8-bit tag from other hash
bits, so that a probe seldom reads a row it does not want. A probe always compares the
full 32-byte ID with the row, so IDs sharing a prefix or a hash are never confused. One
table holds the first live copy of each blob, the other the first copy in a marked pack;
both are filled lazily (adding a pack stores its rows, the next lookup enters them), so
that loading thousands of segments builds each table once, at its final size.
`IndexEntry` and `PackInfo` objects are built when asked for. About 70 bytes per blob.

A lookup that finds a blob reads memory in three unrelated places, one after the other:
a table word, the row, and the pack's ID string (which the `IndexEntry` holds). With
millions of blobs each is a cache and TLB miss; at 5 M blobs that is about half the time
a `lookup` takes (scripts/bench_index.py compares IDs in random and in stored order).

Blob IDs are exactly 32 bytes. A pack's content is fixed by its ID, so when a pack is
listed again (by another segment) its blob list is not read again.

Threads: `in`, `get`, `lookup` and `has` may run in other threads while `add_pack` runs
in one (the writer checks for known blobs from worker threads). Rows are written before
they are entered in a table, a table is replaced whole (never resized in place), a
table word (row and tag) is written in one store, filling a table is serialised by a
lock, and rows stay "pending" until they are entered, so a lookup finds a blob
completely or, while it is being added, possibly not at all.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple

import msgpack

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository._table import (
    BLOB,
    ID_SIZE,
    ROW_SIZE,
    TAG_BITS,
    TAG_MASK,
    TAG_SHIFT,
    WIDE,
    Table,
    empty_table,
    encode_rows,
    find,
    has_room,
    ids_of,
    insert,
    rehash,
    runs,
    unpack_id,
    unpack_numbers,
    unpack_row,
)

INDEX_KIND = "index"

#: A row's first number is pack number << _TYPE_BITS | blob type.
_TYPES = tuple(BlobType(t) for t in range(len(BlobType)))
_TYPE_BITS = (len(_TYPES) - 1).bit_length()
_TYPE_MASK = (1 << _TYPE_BITS) - 1

_LIVE = 1
_MARKED = 2

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
            # tuple PackInfo holds, with no Python code per blob; encode_rows checks them.
            raw = msgpack.unpackb(data, use_list=False)
            packs = []
            for pid, t, size, blobs in raw["packs"]:
                blobs = list(blobs)
                encode_rows(blobs, 0)
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
        self._live: Table = empty_table(0, 0)  # first live copy of each blob
        self._live_count = 0
        self._pending = array("Q")  # first, end row of each live pack not in _live yet
        self._marked_table: Table = empty_table(0, 0)  # first copy in a marked pack
        self._marked_changes = 0  # add_pack counts changes to the marked packs
        self._marked_built = 0  # _marked_table is as of this many changes
        self.packs: Mapping[str, PackInfo] = _PackView(self, _LIVE)
        self.marked_packs: Mapping[str, PackInfo] = _PackView(self, _MARKED)

    # ---- blobs --------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._pending:
            self._enter_pending()
        return self._live_count

    # `in`, `get` and `lookup` repeat `_table.find` inline: a call costs as much as a
    # probe step, and backup asks `in` for every chunk, restore `lookup` for every blob.

    def __contains__(self, blob_id: object) -> bool:
        if self._pending:
            self._enter_pending()
        words, mask = self._live
        h = hash(blob_id)
        i = h & mask
        word = words[i]
        if not word:
            return False
        tag = h >> TAG_SHIFT & TAG_MASK
        rows = self._rows
        while True:
            if (
                word & TAG_MASK == tag
                and unpack_id(rows, (word >> TAG_BITS) * ROW_SIZE)[0] == blob_id
            ):
                return True
            i = (i + 1) & mask
            word = words[i]
            if not word:
                return False

    def get(self, blob_id: bytes) -> IndexEntry | None:
        if self._pending:
            self._enter_pending()
        words, mask = self._live
        h = hash(blob_id)
        i = h & mask
        word = words[i]
        if not word:
            return None
        tag = h >> TAG_SHIFT & TAG_MASK
        while True:
            if word & TAG_MASK == tag:
                found, key, offset, length, raw_length = unpack_row(
                    self._rows, (word >> TAG_BITS) * ROW_SIZE
                )
                if found == blob_id:
                    if offset == WIDE:
                        return self._entry(word >> TAG_BITS)
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
            i = (i + 1) & mask
            word = words[i]
            if not word:
                return None

    def lookup(self, blob_id: bytes) -> IndexEntry:
        # get, inline again, then the marked packs.
        if self._pending:
            self._enter_pending()
        words, mask = self._live
        h = hash(blob_id)
        i = h & mask
        word = words[i]
        tag = h >> TAG_SHIFT & TAG_MASK
        while word:
            if word & TAG_MASK == tag:
                found, key, offset, length, raw_length = unpack_row(
                    self._rows, (word >> TAG_BITS) * ROW_SIZE
                )
                if found == blob_id:
                    if offset == WIDE:
                        return self._entry(word >> TAG_BITS)
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
            i = (i + 1) & mask
            word = words[i]
        row = find(self._marked_lookup(), self._rows, blob_id, h) if self.marked else 0
        if not row:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the index")
        return self._entry(row)

    def has(self, blob_id: bytes) -> bool:
        """True if the blob can be read (live or marked pack)."""
        if blob_id in self:
            return True
        return (
            bool(self.marked)
            and find(self._marked_lookup(), self._rows, blob_id, hash(blob_id)) != 0
        )

    def blob_ids(self) -> Iterator[bytes]:
        return (blob_id for blob_id, _row in self._live_rows())

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        return ((blob_id, self._entry(row)) for blob_id, row in self._live_rows())

    def _entry(self, row: int) -> IndexEntry:
        key, offset, length, raw_length = unpack_numbers(self._rows, row * ROW_SIZE + ID_SIZE)
        if offset == WIDE and row in self._wide:
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
            for row, blob_id in enumerate(ids_of(self._rows, first, end), first):
                if find(self._live, self._rows, blob_id, hash(blob_id)) == row:
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
        blob_ids, encoded, wide = encode_rows(pack.blobs, p << _TYPE_BITS | blob_type)
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
            if not has_room(table, entries, max(batch)):
                table = self._live = rehash(table, self._rows, entries, max(batch))
            added = 0
            for first, end in runs(zip(batch[::2], batch[1::2], strict=True)):
                added += insert(table, self._rows, ids_of(self._rows, first, end), first)
            self._live_count += added
            del self._pending[:count]  # only now: until then, other lookups wait

    def _marked_lookup(self) -> Table:
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
                    table = empty_table(rows, self._pack_rows[-1])
                    for first, end in runs(ranges):
                        insert(table, self._rows, ids_of(self._rows, first, end), first)
                    self._marked_table = table
                    self._marked_built = changes
        return self._marked_table

    def _pack_info(self, p: int) -> PackInfo:
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        blobs = list(BLOB.iter_unpack(self._rows[first * ROW_SIZE : end * ROW_SIZE]))
        if self._wide:
            for i, blob in enumerate(blobs):
                if blob[1] == WIDE and first + i in self._wide:
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
