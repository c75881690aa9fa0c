"""The index in memory: blob ID → (pack, offset, length, raw length, type), the union of
the stored index segments (`index_segment`), with the packs each segment lists. `Index`
is built in layers: `index_packs` stores the packs and their rows, `index_tables` fills the
tables that find a blob's row, and this module looks blobs up.

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
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository._table import (
    ID_SIZE,
    ROW_SIZE,
    TAG_BITS,
    WIDE,
    find,
    ids_of,
    probe,
    unpack_numbers,
)
from bbackup.repository.index_packs import BLOB_TYPES, TYPE_BITS, TYPE_MASK
from bbackup.repository.index_segment import INDEX_KIND, IndexSegment, PackInfo
from bbackup.repository.index_tables import IndexTables

__all__ = ["INDEX_KIND", "Index", "IndexEntry", "IndexSegment", "PackInfo"]

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


class Index(IndexTables):
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
                self._pack_ids[key >> TYPE_BITS],
                BLOB_TYPES[key & TYPE_MASK],
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
