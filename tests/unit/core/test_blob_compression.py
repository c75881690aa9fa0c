"""Per-blob compression: zstd when it helps, the bytes unchanged when it does not."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from bbackup.compression import compress, decompress


def test_incompressible_data_is_stored_as_is_without_growing() -> None:
    data = os.urandom(1024 * 1024)

    stored = compress(data, 3)

    assert len(stored) == len(data)
    assert bytes(stored) == data
    assert decompress(stored, len(data)) == data


def test_compressible_data_is_stored_compressed_and_round_trips() -> None:
    data = b"the same line of text, over and over\n" * 30000

    stored = compress(data, 3)

    assert len(stored) < len(data) // 10
    assert decompress(stored, len(data)) == data


def test_compressible_tail_behind_a_random_sample_is_not_compressed() -> None:
    # The 64 KiB probe decides for a large blob: the cost of that is a worse ratio on
    # such rare mixtures, never a wrong round trip.
    data = os.urandom(64 * 1024) + b"\0" * (1024 * 1024)

    assert decompress(compress(data, 3), len(data)) == data


def test_level_zero_turns_compression_off() -> None:
    data = b"a" * 10000

    assert bytes(compress(data, 0)) == data


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 4096, 300_000])
def test_round_trip_at_edge_sizes(size: int) -> None:
    data = (b"abc" * size)[:size]

    assert decompress(compress(data, 3), len(data)) == data


def test_a_blob_that_inflates_past_its_recorded_raw_length_is_rejected() -> None:
    # Memory bound: a damaged or hostile index cannot make one blob inflate without limit.
    stored = compress(b"\x00" * (1024 * 1024), 3)

    with pytest.raises(ValueError):
        decompress(stored, 1024 * 1024 - 1)


def test_a_payload_longer_than_its_raw_length_is_rejected() -> None:
    with pytest.raises(ValueError):
        decompress(b"payload", 3)


@pytest.mark.parametrize("claimed", [2**40, 2**34, 64 * 1024 * 1024 + 3])
def test_an_index_claiming_a_huge_raw_length_is_refused_without_allocating_it(
    claimed: int,
) -> None:
    # A damaged or hostile index entry: the allocation follows what the frame really
    # inflates to (1 MiB here), never the claim, and the refusal is a plain ValueError
    # (which Repository.decode_blob reports as a damaged blob), not a MemoryError.
    stored = compress(b"\x00" * (1024 * 1024), 3)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="does not decompress to its recorded length"):
            decompress(stored, claimed)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024


def test_a_blob_larger_than_one_read_step_round_trips() -> None:
    # Tree blobs have no size bound: one larger than a step is read in several.
    data = b"one directory entry, many times " * (20 * 1024 * 1024 // 32)

    assert decompress(compress(data, 1), len(data)) == data
