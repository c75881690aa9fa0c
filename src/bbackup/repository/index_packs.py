"""The packs the in-memory index lists and their rows: adding packs (live or marked, one at
a time or a loaded segment's in bulk) and reading a pack back as a `PackInfo`.

`IndexPacks` stores; the tables that find a blob's row are `index_tables`, the lookups
`index.Index` (whose docstring tells how rows, marks and threads work).
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator, Mapping
from itertools import chain, compress, repeat
from operator import lshift, or_, sub

from bbackup.crypto.aead import BlobType
from bbackup.repository._table import ROW_SIZE, decode_blobs, encode_rows, ids_of, with_keys
from bbackup.repository.index_segment import IndexSegment, PackInfo, PackRows, pack_size

#: A row's first number is pack number << TYPE_BITS | blob type.
BLOB_TYPES = tuple(BlobType(t) for t in range(len(BlobType)))
TYPE_BITS = (len(BLOB_TYPES) - 1).bit_length()
TYPE_MASK = (1 << TYPE_BITS) - 1

_LIVE = 1
_MARKED = 2


class IndexPacks:
    """The packs of an index, by number, and the rows of their blobs; `Index` builds on it.

    Adding a pack stores its rows and, if it is live, leaves them pending for the live
    table (`index_tables`); any thread may add (see "Threads" in `index`).
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
        # serialises writers and filling (lookups may come from several threads); it is
        # reentrant for _IndexWithLockedReads, whose reads fill tables holding it.
        self._lock = threading.RLock()
        self._pending = array("Q")  # first, end row of each live pack not in _live yet
        self._marked_changes = 0  # add_pack counts changes to the marked packs
        self.packs: Mapping[str, PackInfo] = _PackView(self, _LIVE)
        self.marked_packs: Mapping[str, PackInfo] = _PackView(self, _MARKED)
        # Damaged locations (`set_damaged`): kept out of the live and marked tables, found last.
        self._damaged: dict[str, frozenset[bytes]] = {}
        self._damaged_rows: list[int] = []  # sorted

    # ---- packs --------------------------------------------------------------------------

    def add_pack(self, pack: PackInfo, marked_at: float | None = None) -> None:
        """Add a pack, live or (with `marked_at`) marked for deletion.

        A pack listed live wins over a mark, whichever comes first; several packs may
        hold the same blob, and the first copy added (live, or among marked packs) is
        the one `get` and `lookup` return. Any thread may call it (see "Threads" in `index`).
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
        keys = array("I", map(or_, map(lshift, pack_numbers, repeat(TYPE_BITS)), types))
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
        self._pack_types += map(BLOB_TYPES.__getitem__, types)
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
        encoded, wide = encode_rows(pack.blobs, p << TYPE_BITS | blob_type)
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


class _PackView(Mapping[str, PackInfo]):
    """Read-only pack ID → PackInfo over the packs of an Index in some states."""

    __slots__ = ("_index", "_states")

    def __init__(self, index: IndexPacks, states: int) -> None:
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
