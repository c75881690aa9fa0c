"""The index in memory: blob ID → (pack, offset, length, raw length, type), the union of
the stored index segments (`index_segment`), with the packs each segment lists.

Prune's first phase *marks* unreferenced packs: a marked pack stays listed (with the time
it was marked) so its blobs can still be read, but backups do not deduplicate against it,
so no new snapshot starts to depend on a pack that is about to be deleted.

Damage records (`damage`) name *damaged locations*: a blob at its place in one pack that
failed verification. A damaged location is in neither table: a backup does not find the
blob there (so it uploads it again), and `lookup` returns a good copy wherever one is,
falling back to the damaged location only when there is no other (the read then fails and
names the pack, as it would have).

Memory (issue #5, "Scale": millions of blobs, so no Python object per blob): every
(pack, blob) pair the segments list is a 48-byte *row* (`_table` describes rows and hash
tables). Rows are numbered from 1 in the order packs are added, and each pack's rows are
contiguous; per pack the index keeps its ID string, type, size and first row. One table
holds the first live copy of each blob, the other the first copy in a marked pack; both
are filled lazily (adding a pack stores its rows, the next lookup enters them), so that
loading thousands of segments builds each table once, at its final size. `IndexEntry`
and `PackInfo` objects are built when asked for. About 70 bytes per blob. A pack's
content is fixed by its ID, so when a pack is listed again (by another segment) its blob
list is not read again. A segment read from storage arrives as rows (`PackRows`), which
`add_segment` copies in one piece: loading builds no Python object per blob but msgpack's.

Threads. Writers (`add_pack`, `add_segment`; in a backup the event loop adds each
uploaded pack) and the lookups that fill a table hold `_lock`, so writes never interleave
and any thread may write. Readers (`in`, `get`, `lookup`, `has`, `len`, the pack views;
in a backup the worker threads ask `in` for every chunk) take no lock, as an uncontended
`with lock:` costs about as much as a lookup on the benchmark VM. They see a blob whole
or not at all: rows are written before a table word names them and stay "pending" until
then; a table word (row and tag) is published with one store; a table that grows is
replaced whole, never resized in place. Each of these is one step only because the GIL
serialises the bytecodes: without it (free-threaded CPython) a reader could read `_rows`
while a writer reallocates it to append, or see a table word before the row it names.
There `Index()` builds `_IndexWithLockedReads`, whose readers hold `_lock` too.
"""

from __future__ import annotations

import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain, compress, repeat
from operator import lshift, or_, sub
from typing import NamedTuple

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository._table import (
    ID_SIZE,
    ROW_SIZE,
    TAG_BITS,
    WIDE,
    Table,
    decode_blobs,
    empty_table,
    encode_rows,
    find,
    has_room,
    ids_of,
    insert,
    probe,
    rehash,
    runs,
    unpack_numbers,
    with_keys,
)
from bbackup.repository.index_segment import (
    INDEX_KIND,
    IndexSegment,
    PackInfo,
    PackRows,
    pack_size,
)

__all__ = ["INDEX_KIND", "Index", "IndexEntry", "IndexSegment", "PackInfo"]

#: A row's first number is pack number << _TYPE_BITS | blob type.
_TYPES = tuple(BlobType(t) for t in range(len(BlobType)))
_TYPE_BITS = (len(_TYPES) - 1).bit_length()
_TYPE_MASK = (1 << _TYPE_BITS) - 1

_LIVE = 1
_MARKED = 2

_new_tuple = tuple.__new__  # builds an IndexEntry without the NamedTuple __new__ call

#: False on a free-threaded CPython running without the GIL (see "Threads" above).
_GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


class IndexEntry(NamedTuple):
    """Where one blob can be read."""

    pack_id: str
    blob_type: BlobType
    offset: int
    length: int
    raw_length: int


class Index:
    """The in-memory union of index segments.

    `in` and `get` see live packs only (what backups deduplicate against); `lookup` also
    finds blobs in packs marked for deletion, so every snapshot stays readable.

    `packs`, `marked_packs` and `all_packs()` are read-only mappings pack ID → `PackInfo`
    that follow the index as it changes; a `PackInfo` is built each time one is looked up.
    """

    def __new__(cls) -> Index:
        # Without the GIL the lock-free reads are not safe: see "Threads" above.
        if cls is Index and not _GIL_ENABLED:
            return object.__new__(_IndexWithLockedReads)
        return object.__new__(cls)

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
        # serialises writers and filling (lookups may come from several threads); it is
        # reentrant for _IndexWithLockedReads, whose reads fill tables holding it.
        self._lock = threading.RLock()
        self._live: Table = empty_table(0, 0)  # first live copy of each blob
        self._live_count = 0
        self._pending = array("Q")  # first, end row of each live pack not in _live yet
        self._marked_table: Table = empty_table(0, 0)  # first copy in a marked pack
        self._marked_changes = 0  # add_pack counts changes to the marked packs
        self._marked_built = 0  # _marked_table is as of this many changes
        self.packs: Mapping[str, PackInfo] = _PackView(self, _LIVE)
        self.marked_packs: Mapping[str, PackInfo] = _PackView(self, _MARKED)
        # Damaged locations (`set_damaged`): kept out of both tables, found last.
        self._damaged: dict[str, frozenset[bytes]] = {}
        self._damaged_rows: list[int] = []  # sorted
        self._damaged_table: Table = empty_table(0, 0)
        self._damaged_built = -1  # _damaged_table is as of this many rows (-1: never)

    # ---- blobs --------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._pending:
            self._enter_pending()
        return self._live_count

    # The hot reads (backup asks `in` for every chunk, restore `lookup` for every blob)
    # call `probe` directly rather than through `find`: a call costs as much as a probe
    # step. Each reads `self._live` once: a table may be replaced meanwhile.

    def __contains__(self, blob_id: object) -> bool:
        if self._pending:
            self._enter_pending()
        table = self._live
        return table[0][probe(table, self._rows, blob_id, hash(blob_id))] != 0

    def get(self, blob_id: bytes) -> IndexEntry | None:
        if self._pending:
            self._enter_pending()
        table = self._live
        row = table[0][probe(table, self._rows, blob_id, hash(blob_id))] >> TAG_BITS
        return self._entry(row) if row else None

    def lookup(self, blob_id: bytes) -> IndexEntry:
        """Where a blob is, from a live pack if one has it, else from a marked pack."""
        if self._pending:
            self._enter_pending()
        h = hash(blob_id)
        table = self._live
        row = table[0][probe(table, self._rows, blob_id, h)] >> TAG_BITS
        if not row and self.marked:
            row = find(self._marked_lookup(), self._rows, blob_id, h)
        if not row and self._damaged_rows:
            row = find(self._damaged_lookup(), self._rows, blob_id, h)
        if not row:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the index")
        return self._entry(row)

    def has(self, blob_id: bytes) -> bool:
        """True if the index lists the blob (live or marked pack, or only at a damaged
        location: `check` reports those as damage, not as missing)."""
        if blob_id in self:
            return True
        h = hash(blob_id)
        if self.marked and find(self._marked_lookup(), self._rows, blob_id, h):
            return True
        if self._damaged_rows:
            return find(self._damaged_lookup(), self._rows, blob_id, h) != 0
        return False

    # ---- damaged locations --------------------------------------------------------------

    @property
    def damaged(self) -> Mapping[str, frozenset[bytes]]:
        """Pack ID → blobs known damaged there (from damage records, `set_damaged`)."""
        return self._damaged

    def set_damaged(self, locations: Mapping[str, frozenset[bytes]]) -> None:
        """Treat these (pack, blob) places as damaged: never deduplicated against, read
        only when no other copy exists. Replaces any earlier set. Call it before other
        threads read the index (as load_index does): the live table is rebuilt."""
        with self._lock:
            self._damaged = {p: frozenset(b) for p, b in locations.items() if b}
            rows: list[int] = []
            for pack_id in self._damaged:
                p = self._pack_numbers.get(pack_id)
                if p is not None:
                    rows.extend(self._damaged_rows_of(p))
            rows.sort()
            self._damaged_rows = rows
            self._damaged_built = -1
            self._rebuild_tables()

    def _damaged_rows_of(self, p: int) -> list[int]:
        blobs = self._damaged.get(self._pack_ids[p])
        if not blobs:
            return []
        first, end = self._pack_rows[p], self._pack_rows[p + 1]
        return [
            row
            for row, blob_id in enumerate(ids_of(self._rows, first, end), first)
            if blob_id in blobs
        ]

    def _rebuild_tables(self) -> None:
        """Enter every live pack's rows again (without damaged ones), in pack order."""
        ranges = array("Q")
        for p in self._live_order:
            first, end = self._pack_rows[p], self._pack_rows[p + 1]
            if first != end:
                ranges += array("Q", (first, end))
        self._live = empty_table(0, 0)
        self._live_count = 0
        self._pending = ranges
        self._enter_pending()
        self._marked_changes += 1

    def _without_damaged(self, first: int, end: int) -> Iterator[tuple[int, int]]:
        """The row range [first, end) split around damaged rows."""
        rows = self._damaged_rows
        i = bisect_left(rows, first)
        while i < len(rows) and rows[i] < end:
            if rows[i] > first:
                yield first, rows[i]
            first = rows[i] + 1
            i += 1
        if first < end:
            yield first, end

    def _damaged_lookup(self) -> Table:
        """The table of damaged locations (first copy of each), rebuilt if they changed."""
        if self._damaged_built != len(self._damaged_rows):
            with self._lock:
                rows = self._damaged_rows
                if self._damaged_built != len(rows):
                    table = empty_table(len(rows), self._pack_rows[-1])
                    for row in rows:
                        insert(table, self._rows, ids_of(self._rows, row, row + 1), row)
                    self._damaged_table = table
                    self._damaged_built = len(rows)
        return self._damaged_table

    def blob_ids(self) -> Iterator[bytes]:
        return (blob_id for blob_id, _row in self._live_rows())

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        return ((blob_id, self._entry(row)) for blob_id, row in self._live_rows())

    def _entry(self, row: int) -> IndexEntry:
        key, offset, length, raw_length = unpack_numbers(self._rows, row * ROW_SIZE + ID_SIZE)
        if offset == WIDE and row in self._wide:
            offset, length, raw_length = self._wide[row]
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
        the one `get` and `lookup` return. Any thread may call it (see "Threads").
        """
        with self._lock:
            self._add_pack(pack, marked_at)

    def _add_pack(self, pack: PackInfo, marked_at: float | None) -> None:
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
        packs = segment.pack_rows
        with self._lock:
            if packs is None:
                for pack in segment.packs:
                    self._add_pack(pack, segment.marked.get(pack.pack_id))
            else:
                self._add_pack_rows(packs, segment.marked)

    def _add_pack_rows(self, packs: PackRows, marked: Mapping[str, float]) -> None:
        """What `_add_pack` does for each of `packs` in turn, with the packs the index
        does not list yet (all of them, as a rule) added in bulk."""
        ids = packs.pack_ids
        known = self._pack_numbers
        if known.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
            self._append_pack_rows(packs, 0, len(ids), marked)
            return
        # Some are listed already (or twice here): those go one by one, in their place.
        start = 0
        seen: set[str] = set()
        for i, pack_id in enumerate(ids):
            if pack_id in known or pack_id in seen:
                self._append_pack_rows(packs, start, i, marked)
                self._add_pack(packs.pack_info(i), marked.get(pack_id))
                start = i + 1
            seen.add(pack_id)
        self._append_pack_rows(packs, start, len(ids), marked)

    def _append_pack_rows(
        self, packs: PackRows, start: int, end: int, marked: Mapping[str, float]
    ) -> None:
        """`_add_pack` for packs[start:end], none of which the index lists: their rows
        copied in one piece, with each row's pack key set on the way."""
        if start == end:
            return
        p0, first = len(self._pack_ids), self._pack_rows[-1]
        ids = packs.pack_ids[start:end]
        types = packs.blob_types[start:end]
        row0, ends = packs.first_row(start), packs.ends[start:end]
        pack_numbers = range(p0, p0 + len(ids))
        keys = array("I", map(or_, map(lshift, pack_numbers, repeat(_TYPE_BITS)), types))
        counts = map(sub, ends, chain((row0,), ends))
        self._rows += with_keys(
            packs.rows[row0 * ROW_SIZE : ends[-1] * ROW_SIZE],
            array("I", chain.from_iterable(map(repeat, keys, counts))),
        )
        for row, wide in packs.wide.items():
            if row0 <= row < ends[-1]:
                self._wide[first - row0 + row] = wide
        self._pack_rows.extend(map((first - row0).__add__, ends))
        self._pack_ids += ids
        self._pack_types += map(_TYPES.__getitem__, types)
        self._pack_sizes += packs.sizes[start:end]
        numbers = dict(zip(ids, pack_numbers, strict=True))
        marked_numbers = sorted(map(numbers.__getitem__, marked.keys() & numbers.keys()))
        state = bytearray((_LIVE,)) * len(ids)
        for p in marked_numbers:
            state[p - p0] = _MARKED
        self._pack_state += state  # before the numbers: a reader finds a pack's state
        self._pack_numbers.update(numbers)
        if self._damaged and not self._damaged.keys().isdisjoint(ids):
            for p in pack_numbers:  # rows of new packs come after every other
                self._damaged_rows.extend(self._damaged_rows_of(p))
        for p in marked_numbers:
            self.marked[self._pack_ids[p]] = marked[self._pack_ids[p]]
        if marked_numbers:
            self._marked_changes += 1
        # The live ones, in order: their rows enter the live table at the next lookup.
        ranges = array("Q")
        if not marked_numbers:
            live = array("Q", pack_numbers)
            if self._pack_rows[-1] != first:
                ranges += array("Q", (first, self._pack_rows[-1]))
        else:
            live = array("Q", compress(pack_numbers, map(_LIVE.__eq__, state)))
            for p in live:
                first_row, end_row = self._pack_rows[p], self._pack_rows[p + 1]
                if ranges and ranges[-1] == first_row:
                    ranges[-1] = end_row
                elif first_row != end_row:
                    ranges += array("Q", (first_row, end_row))
        self._live_order += live
        self._pending += ranges  # one step: never half there

    def all_packs(self) -> Mapping[str, PackInfo]:
        """Live and marked packs: everything the index says is stored."""
        return _PackView(self, _LIVE | _MARKED)

    def _append_pack(self, pack: PackInfo) -> int:
        """Store a new pack and its rows, in no table yet; return its number."""
        p = len(self._pack_ids)
        blob_type = BlobType(pack.blob_type)
        encoded, wide = encode_rows(pack.blobs, p << _TYPE_BITS | blob_type)
        size = pack_size(pack.size)
        first = self._pack_rows[-1]
        self._rows += encoded
        for i, numbers in wide.items():
            self._wide[first + i] = numbers
        self._pack_rows.append(first + len(encoded) // ROW_SIZE)
        self._pack_ids.append(pack.pack_id)
        self._pack_types.append(blob_type)
        self._pack_sizes.append(size)
        self._pack_state.append(0)
        self._pack_numbers[pack.pack_id] = p
        if pack.pack_id in self._damaged:  # rows of a new pack come after every other
            self._damaged_rows.extend(self._damaged_rows_of(p))
        return p

    def _enter_pending(self) -> None:
        """Enter the rows of packs added live since the last lookup in the live table."""
        with self._lock:
            count = len(self._pending)
            if not count:
                return  # another thread did it
            batch = self._pending[:count]
            entries = self._live_count + sum(batch[1::2]) - sum(batch[::2])
            table = self._live
            if not has_room(table, entries, max(batch)):
                table = self._live = rehash(table, self._rows, entries, max(batch))
            ranges: Iterable[tuple[int, int]] = zip(batch[::2], batch[1::2], strict=True)
            if self._damaged_rows:
                ranges = [r for f, e in ranges for r in self._without_damaged(f, e)]
            added = 0
            for first, end in runs(ranges):
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
                    if self._damaged_rows:
                        ranges = [r for f, e in ranges for r in self._without_damaged(f, e)]
                    rows = sum(end - first for first, end in ranges)
                    table = empty_table(rows, self._pack_rows[-1])
                    for first, end in runs(ranges):
                        insert(table, self._rows, ids_of(self._rows, first, end), first)
                    self._marked_table = table
                    self._marked_built = changes
        return self._marked_table

    def _pack_info(self, p: int) -> PackInfo:
        blobs = decode_blobs(self._rows, self._pack_rows[p], self._pack_rows[p + 1], self._wide)
        return PackInfo(self._pack_ids[p], self._pack_types[p], self._pack_sizes[p], blobs)

    # The pack views read the packs through these (and _pack_info) only.

    def _pack_number(self, pack_id: object, states: int) -> int | None:
        p: int | None = self._pack_numbers.get(pack_id)  # type: ignore[call-overload]
        if p is None or not self._pack_state[p] & states:
            return None
        return p

    def _pack_ids_in(self, states: int) -> Iterator[str]:
        live = map(self._pack_ids.__getitem__, self._live_order)
        if states == _LIVE:
            return live
        if states == _MARKED:
            return iter(self.marked)
        return chain(self.marked, live)  # marked first, like {**marked_packs, **packs}

    def _pack_count(self, states: int) -> int:
        live = len(self._live_order) if states & _LIVE else 0
        return live + (len(self.marked) if states & _MARKED else 0)


class _IndexWithLockedReads(Index):
    """The Index for an interpreter without the GIL: readers hold `_lock` as writers do.

    Every read of the rows, tables and pack lists goes through these methods (the pack
    views call the `_pack_*` ones), so none can see them half written.
    """

    def __len__(self) -> int:
        with self._lock:
            return super().__len__()

    def __contains__(self, blob_id: object) -> bool:
        with self._lock:
            return super().__contains__(blob_id)

    def get(self, blob_id: bytes) -> IndexEntry | None:
        with self._lock:
            return super().get(blob_id)

    def lookup(self, blob_id: bytes) -> IndexEntry:
        with self._lock:
            return super().lookup(blob_id)

    def has(self, blob_id: bytes) -> bool:
        with self._lock:
            return super().has(blob_id)

    def _live_rows(self) -> Iterator[tuple[bytes, int]]:
        with self._lock:  # a snapshot: a generator cannot hold the lock between items
            return iter(list(super()._live_rows()))

    def items(self) -> Iterable[tuple[bytes, IndexEntry]]:
        with self._lock:  # the entries too, as they read the rows
            return list(super().items())

    def _pack_info(self, p: int) -> PackInfo:
        with self._lock:
            return super()._pack_info(p)

    def _pack_number(self, pack_id: object, states: int) -> int | None:
        with self._lock:
            return super()._pack_number(pack_id, states)

    def _pack_ids_in(self, states: int) -> Iterator[str]:
        with self._lock:
            return iter(list(super()._pack_ids_in(states)))

    def _pack_count(self, states: int) -> int:
        with self._lock:
            return super()._pack_count(states)


class _PackView(Mapping[str, PackInfo]):
    """Read-only pack ID → PackInfo over the packs of an Index in some states."""

    __slots__ = ("_index", "_states")

    def __init__(self, index: Index, states: int) -> None:
        self._index = index
        self._states = states

    def __getitem__(self, pack_id: str) -> PackInfo:
        p = self._index._pack_number(pack_id, self._states)
        if p is None:
            raise KeyError(pack_id)
        return self._index._pack_info(p)

    def __contains__(self, pack_id: object) -> bool:
        return self._index._pack_number(pack_id, self._states) is not None

    def __iter__(self) -> Iterator[str]:
        return self._index._pack_ids_in(self._states)

    def __len__(self) -> int:
        return self._index._pack_count(self._states)

    def __repr__(self) -> str:
        return f"<{len(self)} packs>"
