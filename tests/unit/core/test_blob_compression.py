"""Per-blob compression: zstd when it helps, raw (flagged) when it does not."""

from __future__ import annotations

import os

import pytest

from bbackup.compression import RAW, ZSTD, compress, decompress


def test_incompressible_data_is_stored_raw_and_not_larger_than_one_flag_byte() -> None:
    data = os.urandom(256 * 1024)

    stored = compress(data, 3)

    assert stored[0] == RAW
    assert len(stored) == len(data) + 1
    assert decompress(stored, len(data)) == data


def test_compressible_data_is_stored_compressed_and_round_trips() -> None:
    data = b"the same line again and again\n" * 10_000

    stored = compress(data, 3)

    assert stored[0] == ZSTD
    assert len(stored) < len(data) // 20
    assert decompress(stored, len(data)) == data


def test_level_zero_turns_compression_off() -> None:
    data = b"a" * 10_000

    assert compress(data, 0) == bytes([RAW]) + data


@pytest.mark.parametrize("data", [b"", b"x", b"tiny but repetitive " * 2])
def test_tiny_blobs_round_trip(data: bytes) -> None:
    assert decompress(compress(data, 3), len(data)) == data


def test_a_blob_that_inflates_past_its_recorded_raw_length_is_rejected() -> None:
    # 1 MiB of zeros is 51 bytes of zstd: the recorded raw length, not the frame's own
    # claim, must bound how much memory decompressing a blob can take.
    stored = compress(b"\x00" * (1024 * 1024), 3)

    with pytest.raises(ValueError):
        decompress(stored, 1024)


def test_an_unknown_compression_flag_is_rejected() -> None:
    with pytest.raises(ValueError):
        decompress(b"\x07payload", 7)
