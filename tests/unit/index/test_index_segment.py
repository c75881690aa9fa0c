"""The index segment format: the bytes stored under index/ stay as docs/format.md says,
and a segment loads back into the in-memory index unchanged."""

from __future__ import annotations

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
