"""Damaged locations in the Index: a blob known damaged in one pack is not there for
deduplication, and reads go to a good copy wherever one is, whatever order the packs,
marks and damage records arrive in."""

from __future__ import annotations

import pytest

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.repository.index import Index, PackInfo

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32
BAD, GOOD, OTHER = "1" * 64, "2" * 64, "3" * 64


def pack(pack_id: str, *blobs: bytes) -> PackInfo:
    return PackInfo(pack_id, BlobType.DATA, 1000, [(b, i * 10, 10, 5) for i, b in enumerate(blobs)])


def test_a_damaged_blob_is_not_there_for_dedup_but_its_neighbours_are() -> None:
    index = Index()
    index.add_pack(pack(BAD, A, B, C))
    assert B in index  # the table is built before the record arrives
    index.set_damaged({BAD: frozenset({B})})

    assert A in index and C in index
    assert B not in index and index.get(B) is None
    # Still listed: check calls it damaged, not missing; a read names the pack.
    assert index.has(B) and index.lookup(B).pack_id == BAD
    assert len(index) == 2


@pytest.mark.parametrize("record_first", [True, False])
def test_a_good_copy_added_later_wins_over_the_damaged_one(record_first: bool) -> None:
    index = Index()
    if record_first:
        index.set_damaged({BAD: frozenset({B})})
    index.add_pack(pack(BAD, A, B))
    if not record_first:
        index.set_damaged({BAD: frozenset({B})})
    assert B not in index
    index.add_pack(pack(GOOD, B))  # what the next backup uploads

    assert B in index and index.get(B).pack_id == GOOD  # type: ignore[union-attr]
    assert index.lookup(B).pack_id == GOOD
    assert index.lookup(A).pack_id == BAD
    assert dict(index.items())[B].pack_id == GOOD


def test_a_good_copy_in_a_marked_pack_is_read_before_a_damaged_live_one() -> None:
    index = Index()
    index.add_pack(pack(BAD, B))
    index.add_pack(pack(GOOD, B), marked_at=5.0)
    index.add_pack(pack(OTHER, B), marked_at=6.0)
    index.set_damaged({BAD: frozenset({B}), GOOD: frozenset({B})})

    assert B not in index
    assert index.lookup(B).pack_id == OTHER


def test_no_damage_left_restores_the_first_copy_rule() -> None:
    index = Index()
    index.add_pack(pack(BAD, A))
    index.add_pack(pack(GOOD, A))
    index.set_damaged({BAD: frozenset({A})})
    assert index.lookup(A).pack_id == GOOD
    index.set_damaged({})
    assert index.lookup(A).pack_id == BAD


def test_a_blob_only_at_damaged_places_or_nowhere() -> None:
    index = Index()
    index.set_damaged({BAD: frozenset({A}), OTHER: frozenset({C})})  # OTHER is not indexed
    index.add_pack(pack(BAD, A))
    assert A not in index and index.lookup(A).pack_id == BAD
    with pytest.raises(IntegrityError):
        index.lookup(C)
    assert not index.has(C)
