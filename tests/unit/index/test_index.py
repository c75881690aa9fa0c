"""The compact in-memory Index behaves exactly like the plain-dict one it replaced.

`ReferenceIndex` below is the previous implementation, kept as the specification: a
random sequence of operations must give the same answers from both.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Iterator

import msgpack
import pytest

import bbackup.repository._table as table_module
import bbackup.repository.index as index_module
from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository.index import Index, IndexEntry, IndexSegment, PackInfo

DATA, TREE = BlobType.DATA, BlobType.TREE


class ReferenceIndex:
    """The dict-based Index as it was before the compact one (the specification)."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, IndexEntry] = {}
        self._marked_blobs: dict[bytes, IndexEntry] = {}
        self.packs: dict[str, PackInfo] = {}
        self.marked: dict[str, float] = {}
        self.marked_packs: dict[str, PackInfo] = {}

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> IndexEntry | None:
        return self._blobs.get(blob_id)

    def lookup(self, blob_id: bytes) -> IndexEntry:
        entry = self._blobs.get(blob_id) or self._marked_blobs.get(blob_id)
        if entry is None:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the index")
        return entry

    def has(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs or blob_id in self._marked_blobs

    def add_pack(self, pack: PackInfo, marked_at: float | None = None) -> None:
        if marked_at is not None:
            if pack.pack_id in self.packs:
                return
            self.marked[pack.pack_id] = marked_at
            target = self._marked_blobs
        else:
            if pack.pack_id in self.marked:
                self._unmark(pack.pack_id)
            self.packs[pack.pack_id] = pack
            target = self._blobs
        for blob_id, offset, length, raw_length in pack.blobs:
            if blob_id not in target:
                target[blob_id] = IndexEntry(
                    pack.pack_id, pack.blob_type, offset, length, raw_length
                )
        if marked_at is not None:
            self.marked_packs[pack.pack_id] = pack

    def _unmark(self, pack_id: str) -> None:
        self.marked.pop(pack_id, None)
        pack = self.marked_packs.pop(pack_id, None)
        if pack is not None:
            for blob_id, *_ in pack.blobs:
                entry = self._marked_blobs.get(blob_id)
                if entry is not None and entry.pack_id == pack_id:
                    del self._marked_blobs[blob_id]

    def all_packs(self) -> dict[str, PackInfo]:
        return {**self.marked_packs, **self.packs}

    def blob_ids(self) -> Iterator[bytes]:
        return iter(self._blobs)

    def items(self) -> list[tuple[bytes, IndexEntry]]:
        return list(self._blobs.items())


def blob(n: int, prefix: bytes = b"") -> bytes:
    """A 32-byte ID: `prefix`, then n, padded."""
    return (prefix + n.to_bytes(8, "big")).ljust(32, b"\xee")[:32]


def pack(name: str, blobs: list[bytes], blob_type: BlobType = DATA) -> PackInfo:
    return PackInfo(
        name * (64 // len(name)),
        blob_type,
        1000 + 10 * len(blobs),
        [(b, 10 * i, 7 + i, 100 + i) for i, b in enumerate(blobs)],
    )


def assert_same(index: Index, ref: ReferenceIndex, probes: list[bytes]) -> None:
    assert len(index) == len(ref)
    for b in probes:
        assert (b in index) == (b in ref)
        assert index.get(b) == ref.get(b)
        assert index.has(b) == ref.has(b)
        try:
            expected = ref.lookup(b)
        except IntegrityError:
            with pytest.raises(IntegrityError):
                index.lookup(b)
        else:
            assert index.lookup(b) == expected
            assert type(index.lookup(b)) is IndexEntry
    assert index.marked == ref.marked
    assert list(index.marked.items()) == list(ref.marked.items())
    assert list(index.packs.items()) == list(ref.packs.items())
    assert list(index.marked_packs.items()) == list(ref.marked_packs.items())
    assert list(index.all_packs().items()) == list(ref.all_packs().items())
    assert len(index.packs) == len(ref.packs)
    assert len(index.marked_packs) == len(ref.marked_packs)
    assert len(index.all_packs()) == len(ref.all_packs())
    assert list(index.blob_ids()) == list(ref.blob_ids())
    assert list(index.items()) == ref.items()


# ---- behaviour ------------------------------------------------------------------------


def test_empty_index_knows_nothing() -> None:
    index = Index()
    assert len(index) == 0
    assert b"\x01" * 32 not in index
    assert index.get(b"\x01" * 32) is None
    assert not index.has(b"\x01" * 32)
    with pytest.raises(IntegrityError, match="not in the index"):
        index.lookup(b"\x01" * 32)
    assert dict(index.packs) == {} and dict(index.marked_packs) == {}
    assert dict(index.all_packs()) == {} and index.marked == {}
    assert list(index.blob_ids()) == [] and list(index.items()) == []


def test_a_live_pack_is_found_with_every_field() -> None:
    index = Index()
    info = pack("a", [blob(1), blob(2)], TREE)
    index.add_pack(info)

    entry = index.get(blob(2))
    assert entry == IndexEntry("a" * 64, TREE, 10, 8, 101)
    assert type(entry) is IndexEntry and entry is not None
    assert entry.blob_type is BlobType.TREE and entry.pack_id == "a" * 64
    assert entry._replace(offset=0).offset == 0
    assert blob(1) in index and index.has(blob(1)) and len(index) == 2
    assert index.lookup(blob(1)) == IndexEntry("a" * 64, TREE, 0, 7, 100)
    assert index.packs["a" * 64] == info
    assert "a" * 64 in index.packs and "b" * 64 not in index.packs
    assert list(index.packs) == ["a" * 64]
    assert index.all_packs()["a" * 64] == info
    with pytest.raises(KeyError):
        index.packs["b" * 64]


def test_the_first_live_copy_wins_and_each_pack_keeps_its_own_list() -> None:
    index, ref = Index(), ReferenceIndex()
    for info in (pack("a", [blob(1), blob(2)]), pack("b", [blob(2), blob(3)])):
        index.add_pack(info)
        ref.add_pack(info)

    entry = index.get(blob(2))
    assert entry is not None and entry.pack_id == "a" * 64
    assert len(index) == 3
    assert [b[0] for b in index.packs["b" * 64].blobs] == [blob(2), blob(3)]
    assert_same(index, ref, [blob(n) for n in range(5)])


def test_a_marked_pack_is_readable_but_not_deduplicated_against() -> None:
    index = Index()
    index.add_pack(pack("a", [blob(1)]))
    index.add_pack(pack("m", [blob(1), blob(2)]), marked_at=123.0)

    assert blob(2) not in index and index.get(blob(2)) is None
    assert index.has(blob(2)) and index.lookup(blob(2)).pack_id == "m" * 64
    assert index.lookup(blob(1)).pack_id == "a" * 64  # live copies first
    assert len(index) == 1
    assert index.marked == {"m" * 64: 123.0}
    assert list(index.marked_packs) == ["m" * 64] and "m" * 64 not in index.packs
    assert list(index.all_packs()) == ["m" * 64, "a" * 64]  # marked first


def test_listing_a_marked_pack_live_unmarks_it_and_live_wins_over_a_mark() -> None:
    index, ref = Index(), ReferenceIndex()
    ops: list[tuple[PackInfo, float | None]] = [
        (pack("m", [blob(1), blob(2)]), 5.0),
        (pack("n", [blob(2), blob(3)]), 6.0),
        (pack("m", [blob(1), blob(2)]), None),  # another segment lists m live: unmarked
        (pack("m", [blob(1), blob(2)]), 7.0),  # a mark no longer applies: live wins
        (pack("n", [blob(2), blob(3)]), 8.0),  # marked again: the newer time
    ]
    for info, marked_at in ops:
        index.add_pack(info, marked_at)
        ref.add_pack(info, marked_at)
        assert_same(index, ref, [blob(n) for n in range(5)])

    assert index.marked == {"n" * 64: 8.0}
    assert blob(1) in index and blob(3) not in index and index.has(blob(3))
    assert index.lookup(blob(3)).pack_id == "n" * 64


def test_ids_sharing_a_prefix_are_never_confused() -> None:
    index = Index()
    shared8 = [b"\x42" * 8 + bytes([n]) * 24 for n in range(50)]
    shared31 = [b"\x17" * 31 + bytes([n]) for n in range(0, 256, 2)]
    index.add_pack(pack("a", shared8 + shared31))

    for i, b in enumerate(shared8 + shared31):
        entry = index.get(b)
        assert entry is not None and entry.offset == 10 * i
    for absent in (b"\x42" * 8 + b"\xff" * 24, b"\x17" * 31 + b"\x01", b"\x42" * 32):
        assert absent not in index and index.get(absent) is None
        assert not index.has(absent)


@pytest.mark.parametrize(
    "fake_hash",
    [lambda b: 0x5EED, lambda b: int.from_bytes(b[:8], "big")],
    ids=["every-id-collides", "hash-of-the-8-byte-prefix"],
)
def test_colliding_hashes_still_compare_the_whole_id(
    monkeypatch: pytest.MonkeyPatch, fake_hash: object
) -> None:
    # The tables hash with their modules' `hash`: make whole probe chains collide (and
    # wrap around the end of the table), tags included.
    for module in (index_module, table_module):
        monkeypatch.setattr(module, "hash", fake_hash, raising=False)
    index, ref = Index(), ReferenceIndex()
    ids = [b"\x01" * 8 + bytes([n]) * 24 for n in range(40)] + [blob(n) for n in range(40)]
    for k in range(0, 80, 8):
        info = pack(f"{k:02d}", ids[k : k + 8])
        index.add_pack(info, marked_at=1.0 if k % 16 else None)
        ref.add_pack(info, marked_at=1.0 if k % 16 else None)
        assert_same(index, ref, [*ids[: k + 10], b"\x01" * 8 + b"\xff" * 24])


def test_absent_and_odd_keys() -> None:
    index = Index()
    index.add_pack(pack("a", [blob(n) for n in range(20)]))
    for key in (b"", blob(1)[:31], blob(1) + b"\x00", blob(99), "a" * 64, 7, None):
        assert key not in index
    for key in (b"", blob(1)[:31], blob(99)):
        assert index.get(key) is None and not index.has(key)
        with pytest.raises(IntegrityError):
            index.lookup(key)
    with pytest.raises(TypeError):  # unhashable, as with a dict
        bytearray(blob(1)) in index  # noqa: B015


def test_lookups_between_incremental_adds() -> None:
    """The writer adds a pack at a time and looks up in between."""
    index, ref = Index(), ReferenceIndex()
    seen: list[bytes] = []
    for p in range(300):
        ids = [blob(p * 7 + i) for i in range(10)]  # overlaps the previous pack
        info = pack(f"{p:04x}", ids)
        index.add_pack(info)
        ref.add_pack(info)
        seen += ids
        assert all(b in index for b in ids)
        assert len(index) == len(ref)
    assert_same(index, ref, [*seen[::7], blob(10_000)])


def test_tables_widen_when_row_numbers_outgrow_32_bit_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table word holds a row number and a tag; past 2**24 rows the words are 64-bit.

    The limit is lowered here so that a small index crosses it, between lookups and in
    the marked table too.
    """
    monkeypatch.setattr(table_module, "_NARROW_ROWS", 100)
    index, ref = Index(), ReferenceIndex()
    seen: list[bytes] = []
    for p in range(40):
        ids = [blob(p * 5 + i) for i in range(8)]
        info = pack(f"{p:04x}", ids)
        marked_at = float(p) if p % 4 == 3 else None
        index.add_pack(info, marked_at)
        ref.add_pack(info, marked_at)
        seen += ids
        assert_same(index, ref, [*seen[-12:], blob(10_000)])
    assert index._live[0].itemsize == 8 and index._marked_lookup()[0].itemsize == 8
    assert_same(index, ref, [*seen, blob(10_000)])


def test_empty_packs_are_listed() -> None:
    index = Index()
    index.add_pack(PackInfo("e" * 64, TREE, 5))
    index.add_pack(PackInfo("f" * 64, DATA, 6), marked_at=1.0)
    assert len(index) == 0
    assert index.packs["e" * 64] == PackInfo("e" * 64, TREE, 5, [])
    assert index.all_packs()["f" * 64] == PackInfo("f" * 64, DATA, 6, [])


def test_numbers_beyond_32_bits_round_trip() -> None:
    index = Index()
    big = [(blob(1), 2**40, 2**33, 2**35), (blob(2), 2**32 - 1, 5, 6), (blob(3), 1, 2, 3)]
    index.add_pack(PackInfo("a" * 64, DATA, 2**45, big))
    assert index.get(blob(1)) == IndexEntry("a" * 64, DATA, 2**40, 2**33, 2**35)
    assert index.get(blob(2)) == IndexEntry("a" * 64, DATA, 2**32 - 1, 5, 6)
    assert index.packs["a" * 64] == PackInfo("a" * 64, DATA, 2**45, big)


@pytest.mark.parametrize(
    "blobs",
    [
        [(b"\x01" * 31, 0, 1, 1)],
        [(b"\x01" * 33, 0, 1, 1)],
        [(b"\x01" * 31, 0, 1, 1), (b"\x01" * 33, 0, 1, 1)],
        [("x" * 32, 0, 1, 1)],
        [(b"\x01" * 32, -1, 1, 1)],
        [(b"\x01" * 32, 0.5, 1, 1)],
        [(b"\x01" * 32, 0, 1)],
        [(b"\x01" * 32, 0, 1, 1, 1)],
    ],
    ids=["short-id", "long-id", "lengths-even-out", "str-id", "negative", "float", "3", "5"],
)
def test_malformed_blob_lists_are_refused_and_change_nothing(
    blobs: list[tuple[bytes, int, int, int]],
) -> None:
    index = Index()
    index.add_pack(pack("a", [blob(1)]))
    with pytest.raises((ValueError, TypeError)):
        index.add_pack(PackInfo("b" * 64, DATA, 10, blobs))
    assert list(index.all_packs()) == ["a" * 64] and len(index) == 1
    encoded = msgpack.packb({"packs": [["b" * 64, 0, 10, [list(b) for b in blobs]]]})
    with pytest.raises(IntegrityError, match="malformed"):
        IndexSegment.from_bytes(encoded)


def test_views_behave_like_the_dicts_callers_used() -> None:
    index = Index()
    index.add_pack(pack("a", [blob(1)]))
    index.add_pack(pack("m", [blob(2)]), marked_at=3.0)
    merged = {**index.marked_packs, **index.packs}
    assert merged == dict(index.all_packs()) == index.all_packs()
    assert [p.pack_id for p in index.all_packs().values()] == ["m" * 64, "a" * 64]
    assert sorted(index.all_packs()) == ["a" * 64, "m" * 64]
    assert index.all_packs().get("z" * 64) is None
    assert "m" * 64 in index.all_packs() and "m" * 64 not in index.packs
    assert len(index.packs) == 1 and len(index.marked_packs) == 1


@pytest.mark.parametrize("gil", [True, False], ids=["with-gil", "without-gil"])
@pytest.mark.parametrize("seed", range(12))
def test_random_histories_match_the_reference(
    seed: int, gil: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the GIL, Index() is the variant whose reads lock: it must answer the same.
    monkeypatch.setattr(index_module, "_GIL_ENABLED", gil)
    rng = random.Random(seed)
    # A small ID pool (with shared 8-byte prefixes) so that packs overlap a lot.
    pool = [blob(n, prefix=b"\x99" * 8 if n % 3 == 0 else b"") for n in range(150)]
    contents: dict[str, PackInfo] = {}
    index, ref = Index(), ReferenceIndex()
    for step in range(120):
        if contents and rng.random() < 0.3:  # list a known pack again (another segment)
            info = contents[rng.choice(sorted(contents))]
        else:
            name = f"{len(contents):04x}"
            info = pack(name, rng.sample(pool, rng.randint(0, 12)), rng.choice([DATA, TREE]))
            contents[info.pack_id] = info
        marked_at = None if rng.random() < 0.6 else float(step)
        index.add_pack(info, marked_at)
        ref.add_pack(info, marked_at)
        if step % 10 == 0 or rng.random() < 0.2:
            assert_same(index, ref, [*rng.sample(pool, 40), blob(999)])
    assert_same(index, ref, pool)


def test_memory_per_blob_stays_small() -> None:
    """Issue #5: at most 100 bytes per blob, pack bookkeeping included (~70 here).

    Measured with tracemalloc, which counts exactly the memory Python allocates.
    """
    n, per_pack = 100_000, 16
    packs = [
        PackInfo(
            f"{p:064x}",
            DATA,
            16 << 20,
            [
                (blob(i), i * 1000, 999_000, 1 << 20)
                for i in range(p * per_pack, (p + 1) * per_pack)
            ],
        )
        for p in range(n // per_pack)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        index = Index()
        for info in packs:
            index.add_pack(info)
        assert len(index) == n  # the table is filled at the first lookup
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current / n <= 100
    assert peak / n <= 110
