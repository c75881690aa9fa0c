"""Rows and hash tables of the in-memory index: how a (pack, blob) pair is stored in 48
bytes, and the open-addressing tables that find the row of a blob ID.

A row is the 32-byte blob ID then four native 32-bit integers (pack number and blob type,
offset, length, raw length; numbers over 32 bits are marked WIDE and kept aside by the
index). A table is an `array` of words a power of two long, keyed by `hash(blob_id)`, at
most 70% full, linear probing; each word is a row number and an 8-bit tag from other
hash bits, so that a probe seldom reads a row it does not want. A probe always compares
the full 32-byte ID with the row, so IDs sharing a prefix or a hash are never confused.
`probe` is the one loop that walks a table: finding, inserting and rehashing go through
it. `Index` (in `index`, built on `index_packs` and `index_tables`) owns the rows and tables.

A lookup that finds a blob reads memory in three unrelated places, one after the other:
a table word, the row, and the pack's ID string (which the `IndexEntry` holds). With
millions of blobs each is a cache and TLB miss; at 5 M blobs that is about half the time
a `lookup` takes (scripts/bench_index.py compares IDs in random and in stored order).
PyPI's `borghash` was measured in this place and not adopted (docs/bench/history.md,
"Index: borghash vs our table").
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat, starmap
from operator import itemgetter

ID_SIZE = 32
ROW = struct.Struct("=32s4I")  # blob ID, pack key, offset, length, raw length
ROW_SIZE = ROW.size
unpack_numbers = struct.Struct("=4I").unpack_from  # at row start + ID_SIZE
unpack_id = struct.Struct("=32s").unpack_from
BLOB = struct.Struct("=32s4x3I")  # a row as PackInfo lists it: ID, offset, length, raw
_ID = struct.Struct("=32s16x")
_first = itemgetter(0)
_KEY_WORD = ID_SIZE // 4  # a row's pack key, counted in 32-bit words
_SEQUENCES = (tuple, list)
#: The offset, length and raw length of a row whose numbers do not fit in 32 bits; the
#: index keeps the real ones aside.
WIDE = 0xFFFFFFFF


def encode_blobs(blobs: Sequence[object]) -> tuple[bytes, dict[int, tuple[int, int, int]]]:
    """Check blob entries (id, offset, length, raw length) and encode them as rows whose
    pack key is 0, in one pass: `struct` checks the numbers (non-negative, 32 bits) as it
    packs them, and only the ID lengths take a pass of their own.

    Returns the rows and, by row (from 0), the numbers of each blob whose numbers do not
    fit in 32 bits (its row says WIDE). Raises ValueError or TypeError. The usual case runs
    no Python code per blob.
    """
    if not blobs:
        return b"", {}
    # (starmap would spread a string or a map as readily as a tuple)
    if not all(map(isinstance, blobs, repeat(_SEQUENCES))):
        raise TypeError("a blob is listed as (id, offset, length, raw length)")
    try:
        rows = b"".join(starmap(BLOB.pack, blobs))  # type: ignore[arg-type]
    except struct.error:
        return _encode_wide_blobs(blobs)  # type: ignore[arg-type]
    # `struct` pads or cuts an ID of another length, and a short ID list packs too.
    if set(map(len, map(_first, blobs))) != {ID_SIZE}:  # type: ignore[arg-type]
        raise ValueError(f"blob IDs must be {ID_SIZE} bytes")
    return rows, {}


def _encode_wide_blobs(
    blobs: Sequence[Sequence[object]],
) -> tuple[bytes, dict[int, tuple[int, int, int]]]:
    """`encode_blobs` blob by blob, for a list with numbers over 32 bits (or a bad entry)."""
    rows: list[bytes] = []
    wide: dict[int, tuple[int, int, int]] = {}
    for i, blob in enumerate(blobs):
        if len(blob) != 4:
            raise ValueError("a blob is listed as (id, offset, length, raw length)")
        blob_id, *numbers = blob
        if type(blob_id) is not bytes or len(blob_id) != ID_SIZE:
            raise ValueError(f"blob IDs must be {ID_SIZE} bytes")
        offset, length, raw_length = (n if type(n) is int and n >= 0 else -1 for n in numbers)
        if min(offset, length, raw_length) < 0:
            raise ValueError("blob offsets and lengths must be non-negative integers")
        if max(offset, length, raw_length) > WIDE:
            wide[i] = (offset, length, raw_length)
            offset = length = raw_length = WIDE
        rows.append(BLOB.pack(blob_id, offset, length, raw_length))
    return b"".join(rows), wide


def encode_rows(
    blobs: Sequence[tuple[bytes, int, int, int]], key: int
) -> tuple[bytes, dict[int, tuple[int, int, int]]]:
    """`encode_blobs` with `key` as the rows' first number (one pack's blobs)."""
    rows, wide = encode_blobs(blobs)
    return with_keys(rows, array("I", (key,)) * (len(rows) // ROW_SIZE)), wide


def with_keys(rows: bytes, keys: array[int]) -> bytes:
    """`rows` (pack key 0) with row i's key set to keys[i]."""
    words = array("I")
    words.frombytes(rows)
    words[_KEY_WORD :: ROW_SIZE // 4] = keys
    return words.tobytes()


def decode_blobs(
    rows: bytes | bytearray, first_row: int, end_row: int, wide: Mapping[int, tuple[int, int, int]]
) -> list[tuple[bytes, int, int, int]]:
    """(id, offset, length, raw length) of rows [first_row, end_row), `wide` holding the
    numbers of WIDE rows by row number."""
    blobs = list(BLOB.iter_unpack(rows[first_row * ROW_SIZE : end_row * ROW_SIZE]))
    if wide:
        for i, blob in enumerate(blobs):
            if blob[1] == WIDE and first_row + i in wide:
                blobs[i] = (blob[0], *wide[first_row + i])
    return blobs


def ids_of(rows: bytearray, first_row: int, end_row: int) -> list[bytes]:
    """The blob IDs of rows [first_row, end_row)."""
    return list(map(_first, _ID.iter_unpack(rows[first_row * ROW_SIZE : end_row * ROW_SIZE])))


# ---- tables -------------------------------------------------------------------------------
#
# A table is (words, mask): `words` an array whose length is a power of two, mask = length
# - 1. A word is 0 (empty) or row << TAG_BITS | tag, where the tag is eight bits of the
# hash of the row's blob ID from above the slot bits. Probing compares tags first, so a
# probe past another blob's slot seldom reads that blob's row (a cache miss), and tag and
# row number share one word: one read, and one write that is never seen half done.

Table = tuple["array[int]", int]
TAG_BITS = 8
TAG_MASK = (1 << TAG_BITS) - 1
TAG_SHIFT = 56  # the tag is bits 56-63 of the hash; slot numbers use the low bits
_NARROW_ROWS = 1 << (32 - TAG_BITS)  # rows below this fit a 32-bit word
_MAX_LOAD = 0.7  # a table doubles before it would be fuller than this
_MIN_SLOTS = 16


def empty_table(entries: int, max_row: int) -> Table:
    """A table with room for `entries` rows numbered up to `max_row`."""
    slots = _MIN_SLOTS
    while entries > slots * _MAX_LOAD:
        slots *= 2
    typecode = "I" if max_row < _NARROW_ROWS else "Q"
    return array(typecode, (0,)) * slots, slots - 1


def has_room(table: Table, entries: int, max_row: int) -> bool:
    words, mask = table
    return entries <= (mask + 1) * _MAX_LOAD and (max_row < _NARROW_ROWS or words.itemsize >= 8)


def probe(table: Table, rows: bytearray, blob_id: object, h: int) -> int:
    """The slot of `table` that holds `blob_id` (whose hash is `h`), or else the empty
    slot where it would go. The table must have an empty slot (it never fills up)."""
    words, mask = table
    i = h & mask
    word = words[i]
    tag = h >> TAG_SHIFT & TAG_MASK
    while word:
        if word & TAG_MASK == tag and unpack_id(rows, (word >> TAG_BITS) * ROW_SIZE)[0] == blob_id:
            return i
        i = (i + 1) & mask
        word = words[i]
    return i


def find(table: Table, rows: bytearray, blob_id: object, h: int) -> int:
    """The row of `blob_id`, whose hash is `h`, in `table`, or 0."""
    word: int = table[0][probe(table, rows, blob_id, h)]
    return word >> TAG_BITS


def insert(table: Table, rows: bytearray, blob_ids: Iterable[bytes], first_row: int) -> int:
    """Enter rows first_row, first_row + 1, … holding `blob_ids`, except IDs already in the
    table (the first copy wins). The table must have room. Returns how many were entered."""
    words, mask = table
    added = 0
    for row, blob_id in enumerate(blob_ids, first_row):
        h = hash(blob_id)
        i = h & mask
        # Most slots are empty (the table is at most 70% full): probe only when one is not,
        # as a call costs about as much as the rest of the loop.
        if words[i]:
            i = probe(table, rows, blob_id, h)
            if words[i]:
                continue
        # Tag and row in one word, written in one store: see the Index docstring.
        words[i] = row << TAG_BITS | h >> TAG_SHIFT & TAG_MASK
        added += 1
    return added


def rehash(table: Table, rows: bytearray, entries: int, max_row: int) -> Table:
    """A new table with the entries of `table` and room for `entries` in all."""
    new = empty_table(entries, max_row)
    words = new[0]
    for word in table[0]:
        if word:
            blob_id = unpack_id(rows, (word >> TAG_BITS) * ROW_SIZE)[0]
            words[probe(new, rows, blob_id, hash(blob_id))] = word
    return new


RUN = 1 << 12  # rows entered at a time (their IDs are materialised as bytes meanwhile)


def runs(ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The row ranges [first, end) in order, adjacent ones joined, none over RUN rows."""
    run_first = run_end = 0
    for first, end in ranges:
        if first == run_end and end - run_first <= RUN:
            run_end = end
            continue
        if run_end > run_first:
            yield run_first, run_end
        while end - first > RUN:
            yield first, first + RUN
            first += RUN
        run_first, run_end = first, end
    if run_end > run_first:
        yield run_first, run_end
