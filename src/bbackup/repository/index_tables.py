"""The lookup tables of the in-memory index, filled lazily from its rows: the live table
(first live copy of each blob), the table of marked packs and that of damaged locations.

`IndexTables` adds them to `IndexPacks`; `index.Index` looks blobs up in them.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping

from bbackup.repository._table import Table, empty_table, has_room, ids_of, insert, rehash, runs
from bbackup.repository.index_packs import IndexPacks


class IndexTables(IndexPacks):
    """The packs and rows of an index with the tables that find a blob's row; `Index`
    builds its lookups on it. Each table is filled under `_lock` by the first lookup that
    needs it after packs were added or marked (`set_damaged` rebuilds the live one at once)."""

    def __init__(self) -> None:
        super().__init__()
        self._live: Table = empty_table(0, 0)  # first live copy of each blob
        self._live_count = 0
        self._marked_table: Table = empty_table(0, 0)  # first copy in a marked pack
        self._marked_built = 0  # _marked_table is as of this many changes
        self._damaged_table: Table = empty_table(0, 0)
        self._damaged_built = -1  # _damaged_table is as of this many rows (-1: never)

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

    # ---- live and marked tables ---------------------------------------------------------

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
