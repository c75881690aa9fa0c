"""Per-blob compression: zstd when it helps, the bytes unchanged when it does not."""

from __future__ import annotations

import os

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
