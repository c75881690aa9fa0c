"""The index segment format: the bytes stored under index/ stay as docs/format.md says,
and a segment loads back into the in-memory index unchanged."""

from __future__ import annotations

import gc
import random
import tracemalloc

import msgpack
import pytest

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository.index import Index
from bbackup.repository.index_segment import IndexSegment, PackInfo

DATA, TREE = BlobType.DATA, BlobType.TREE

#: A segment as bbackup wrote it before the segment format had a module of its own
#: (commit 6e36367): two packs, one with a length over 32 bits, one empty and marked.
WRITTEN_BY_6E36367 = bytes.fromhex(
    "83a57061636b739294d940" + "6162" * 32 + "00ce000111709294c420" + bytes(range(32)).hex()
    + "00ce00010000ce0001117094c420" + bytes(range(32, 64)).hex()
    + "ce00010000cf00000002000000000794d940" + "6364" * 32 + "010c90aa7375706572736564657391d940"
    + "6566" * 32 + "a66d61726b656481d940" + "6364" * 32 + "cb41d954fc40200000"
)  # fmt: skip


def the_segment() -> IndexSegment:
    return IndexSegment(
        [
            PackInfo(
                "ab" * 32,
                DATA,
                70_000,
                [(bytes(range(32)), 0, 65_536, 70_000), (bytes(range(32, 64)), 65_536, 2**33, 7)],
            ),
            PackInfo("cd" * 32, TREE, 12, []),
        ],
        ["ef" * 32],
        {"cd" * 32: 1_700_000_000.5},
    )


def test_segment_bytes_are_those_existing_repositories_hold() -> None:
    assert the_segment().to_bytes() == WRITTEN_BY_6E36367
    loaded = IndexSegment.from_bytes(WRITTEN_BY_6E36367)
    assert loaded == the_segment()
    assert loaded.to_bytes() == WRITTEN_BY_6E36367


def test_a_loaded_segment_indexes_its_live_and_marked_packs() -> None:
    index = Index()
    index.add_segment(IndexSegment.from_bytes(WRITTEN_BY_6E36367))
    entry = index.get(bytes(range(32, 64)))
    assert entry is not None and (entry.pack_id, entry.length) == ("ab" * 32, 2**33)
    assert index.marked == {"cd" * 32: 1_700_000_000.5}
    assert list(index.all_packs().values()) == [the_segment().packs[1], the_segment().packs[0]]
    assert the_segment().blob_count == 2


def test_lists_written_as_lists_read_the_same() -> None:
    """Other writers (and older bbackup) send each blob as a list: the bytes are equal."""
    segment = the_segment()
    as_lists = msgpack.packb(
        {
            "packs": [
                [p.pack_id, int(p.blob_type), p.size, [list(b) for b in p.blobs]]
                for p in segment.packs
            ],
            "supersedes": segment.supersedes,
            "marked": segment.marked,
        }
    )
    assert as_lists == segment.to_bytes()


@pytest.mark.parametrize(
    "document",
    [
        {"packs": [["a" * 64, 0, -1, []]]},
        {"packs": [["a" * 64, 7, 10, []]]},
        {"packs": [["a" * 64, 0, 10]]},
        {"pack": []},
        {"packs": [["a" * 64, 0, 10, []]], "marked": {"a" * 64: "soon"}},
    ],
    ids=["negative-size", "unknown-type", "no-blob-list", "no-packs", "bad-mark-time"],
)
def test_malformed_segments_are_refused_by_name(document: dict[str, object]) -> None:
    with pytest.raises(IntegrityError, match="index segment is malformed"):
        IndexSegment.from_bytes(msgpack.packb(document))


# ---- loading in bulk ----------------------------------------------------------------------


def blob_id(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


def assert_same_index(bulk: Index, one_by_one: Index, probes: list[bytes]) -> None:
    assert len(bulk) == len(one_by_one)
    for b in probes:
        assert (b in bulk) == (b in one_by_one)
        assert bulk.get(b) == one_by_one.get(b) and bulk.has(b) == one_by_one.has(b)
        if one_by_one.has(b):
            assert bulk.lookup(b) == one_by_one.lookup(b)
    assert list(bulk.marked.items()) == list(one_by_one.marked.items())
    assert list(bulk.all_packs().items()) == list(one_by_one.all_packs().items())
    assert list(bulk.packs.items()) == list(one_by_one.packs.items())
    assert list(bulk.items()) == list(one_by_one.items())


@pytest.mark.parametrize("seed", range(8))
def test_loaded_segments_index_as_their_packs_added_one_by_one(seed: int) -> None:
    """`add_segment` copies a loaded segment's rows in bulk: the answers are those of
    adding its packs in order (packs listed again, twice in one segment, marked, empty,
    with numbers over 32 bits, at damaged locations)."""
    rng = random.Random(seed)
    pool = [blob_id(n) for n in range(200)]
    made: list[PackInfo] = []
    segments: list[IndexSegment] = []
    for _ in range(6):
        packs = []
        for _ in range(rng.randint(0, 12)):
            if made and rng.random() < 0.25:
                packs.append(rng.choice(made))  # listed again, maybe in this segment
                continue
            numbers = [
                (b, rng.choice([0, 7, 2**32 - 1, 2**40]), rng.randint(1, 99), rng.randint(1, 99))
                for b in rng.sample(pool, rng.randint(0, 9))
            ]
            made.append(PackInfo(f"{len(made):064x}", rng.choice([DATA, TREE]), 10**6, numbers))
            packs.append(made[-1])
        marked = {p.pack_id: float(rng.randint(1, 9)) for p in packs if rng.random() < 0.3}
        segments.append(IndexSegment(packs, [], marked))
    damaged = {p.pack_id: frozenset(b[0] for b in p.blobs[:1]) for p in made[::5]}

    bulk, one_by_one = Index(), Index()
    bulk.set_damaged(damaged)
    one_by_one.set_damaged(damaged)
    for segment in segments:
        loaded = IndexSegment.from_bytes(segment.to_bytes())
        assert loaded.pack_rows is not None and loaded.blob_count == segment.blob_count
        bulk.add_segment(loaded)
        for p in segment.packs:
            one_by_one.add_pack(p, segment.marked.get(p.pack_id))
        assert_same_index(bulk, one_by_one, rng.sample(pool, 30))
    assert_same_index(bulk, one_by_one, pool)


def test_a_loaded_segment_lists_its_packs_when_asked() -> None:
    loaded = IndexSegment.from_bytes(WRITTEN_BY_6E36367)
    assert loaded.packs == the_segment().packs  # built from the rows, which are dropped
    assert loaded.pack_rows is None
    index = Index()
    index.add_segment(loaded)  # from the packs now
    assert index.get(bytes(range(32))) is not None and index.marked == the_segment().marked


def test_loading_keeps_memory_small_while_and_after() -> None:
    """All of a repository's segments are decoded before any joins the index
    (`load_index`): decoded, they hold rows, not a Python object per blob."""
    n, per_pack = 64_000, 16
    packs = [
        PackInfo(
            f"{p:064x}",
            DATA,
            16 << 20,
            [(blob_id(i), 0, 999_000, 1 << 20) for i in range(p * per_pack, (p + 1) * per_pack)],
        )
        for p in range(n // per_pack)
    ]
    encoded = [IndexSegment(packs[i : i + 1000]).to_bytes() for i in range(0, len(packs), 1000)]
    del packs
    gc.collect()
    tracemalloc.start()
    try:
        segments = [IndexSegment.from_bytes(data) for data in encoded]
        index = Index()
        for segment in segments:
            index.add_segment(segment)
        del segments
        assert len(index) == n
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current / n <= 100
    assert peak / n <= 200


@pytest.mark.parametrize(
    "packs",
    [
        [["a" * 63, 0, 10, []]],
        [["A" * 64, 0, 10, []]],
        [["g" * 64, 0, 10, []]],
        [[b"a" * 64, 0, 10, []]],
        [["a" * 64, 2, 10, []]],
        [["a" * 64, "0", 10, []]],
        [["a" * 64, 0.0, 10, []]],
        [["a" * 64, 0, None, []]],
        [["a" * 64, 0, 1.5, []]],
        [["a" * 64, 0, 10, [], 1]],
        [["a" * 64, 0, 10, []], ["b" * 64, 0, 10]],
        [["a" * 64, 0, 10, {"x": 1}]],
        [["a" * 64, 0, 10, [b"\x01" * 32]]],
        [["a" * 64, 0, 10, [[b"\x01" * 32, 0, -1, 5]]]],
        [["a" * 64, 0, 10, [[b"\x01" * 32, 0, 1, 1]]], ["b" * 64, 0, 9, [[b"\x02" * 31, 0, 1, 1]]]],
        {"a" * 64: [0, 10, []]},
        [7],
    ],
    ids=[
        "short-pack-id", "uppercase-pack-id", "not-hex", "bytes-pack-id", "unknown-type",
        "str-type", "float-type", "no-size", "float-size", "5-fields", "3-fields",
        "blobs-as-map", "blob-not-a-list", "negative-length", "short-id-in-a-later-pack",
        "packs-as-map", "pack-not-a-list",
    ],
)  # fmt: skip
def test_malformed_packs_are_refused_by_name(packs: object) -> None:
    with pytest.raises(IntegrityError, match="index segment is malformed"):
        IndexSegment.from_bytes(msgpack.packb({"packs": packs}))
