"""How the restorer groups the blobs it needs from one pack into ranged reads."""

from __future__ import annotations

from bbackup.crypto.aead import BlobType
from bbackup.ops.restore_reads import NeededBlob, PackRead, plan_reads
from bbackup.repository import IndexEntry

KiB = 1024
MiB = 1024 * KiB


def blob(offset: int, length: int) -> NeededBlob:
    entry = IndexEntry("p" * 64, BlobType.DATA, offset, length, length)
    return NeededBlob(offset.to_bytes(32, "big"), entry)


def spans(reads: list[PackRead]) -> list[tuple[int, int]]:
    return [(read.start, read.end) for read in reads]


def test_adjacent_blobs_are_read_together_in_pack_order() -> None:
    reads = plan_reads([blob(300, 100), blob(0, 100), blob(100, 200)])

    assert spans(reads) == [(0, 400)]
    assert [b.entry.offset for b in reads[0].blobs] == [0, 100, 300]


def test_a_large_gap_of_unneeded_blobs_starts_another_read() -> None:
    reads = plan_reads([blob(0, 100), blob(100 + 2 * MiB, 100)], max_gap=MiB)

    assert spans(reads) == [(0, 100), (100 + 2 * MiB, 200 + 2 * MiB)]


def test_a_small_gap_is_read_through() -> None:
    reads = plan_reads([blob(0, 100), blob(100 + 64 * KiB, 100)], max_gap=MiB)

    assert spans(reads) == [(0, 200 + 64 * KiB)]


def test_reads_span_at_most_max_bytes_and_larger_blobs_are_read_alone() -> None:
    blobs = [blob(0, MiB), blob(MiB, MiB), blob(2 * MiB, 3 * MiB), blob(5 * MiB, 100)]

    reads = plan_reads(blobs, max_bytes=2 * MiB)

    assert spans(reads) == [(0, 2 * MiB), (2 * MiB, 5 * MiB), (5 * MiB, 5 * MiB + 100)]


def test_without_max_bytes_a_whole_pack_is_one_read() -> None:
    blobs = [blob(i * MiB, MiB) for i in range(16)]

    assert spans(plan_reads(blobs)) == [(0, 16 * MiB)]
