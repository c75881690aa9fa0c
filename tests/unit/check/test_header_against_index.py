"""check --read-data compares each pack's header with what the index says the pack holds."""

from __future__ import annotations

from bbackup.crypto.aead import BlobType
from bbackup.ops.check_read_data import compare_header_with_index
from bbackup.repository import PackedBlob, PackInfo

A, B, C = (bytes([n]) * 32 for n in (1, 2, 3))


def header(*blobs: tuple[bytes, int, int, int]) -> list[PackedBlob]:
    return [PackedBlob(BlobType.DATA, i, o, n, r) for i, o, n, r in blobs]


def pack(*blobs: tuple[bytes, int, int, int]) -> PackInfo:
    return PackInfo("p" * 64, BlobType.DATA, 1000, list(blobs))


def test_a_header_that_lists_what_the_index_lists_is_no_problem() -> None:
    blobs = ((A, 0, 100, 90), (B, 100, 50, 200))

    assert compare_header_with_index(pack(*blobs), header(*reversed(blobs))) == []


def test_a_blob_only_the_header_lists_is_named() -> None:
    problems = compare_header_with_index(
        pack((A, 0, 100, 90)), header((A, 0, 100, 90), (B, 100, 50, 50))
    )

    assert problems == [f"blob {B.hex()[:16]} is in the pack but not in the index"]


def test_a_blob_only_the_index_lists_is_named() -> None:
    problems = compare_header_with_index(
        pack((A, 0, 100, 90), (C, 100, 10, 10)), header((A, 0, 100, 90))
    )

    assert problems == [f"blob {C.hex()[:16]} is in the index but not in the pack"]


def test_an_index_entry_at_another_offset_length_or_raw_length_is_named() -> None:
    for wrong in ((A, 4, 100, 90), (A, 0, 99, 90), (A, 0, 100, 91)):
        problems = compare_header_with_index(pack(wrong), header((A, 0, 100, 90)))

        assert problems == [
            f"blob {A.hex()[:16]}: the index and the pack header place it differently"
        ]


def test_a_tree_blob_in_a_data_pack_is_named() -> None:
    tree_blob = [PackedBlob(BlobType.TREE, A, 0, 100, 90)]

    problems = compare_header_with_index(pack((A, 0, 100, 90)), tree_blob)

    assert problems == [f"blob {A.hex()[:16]} is a tree blob in a data pack"]
