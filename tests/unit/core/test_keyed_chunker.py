"""Keyed content-defined chunking: boundaries follow content, and depend on the key."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from bbackup.chunking import KEEP_BUFFER, Chunker, ChunkerParams, MiB
from bbackup.crypto.keys import MasterKey
from map_memory import resident_bytes

PARAMS = ChunkerParams()  # the repository default: 512 KiB / 1 MiB / 8 MiB


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(20261124).randbytes(12 * MiB)


def chunks(seed: int, data: bytes) -> list[bytes]:
    return [bytes(c) for c in Chunker(seed, PARAMS).chunk_buffer(data)]


def boundaries(seed: int, data: bytes) -> list[int]:
    ends, position = [], 0
    for chunk in chunks(seed, data):
        position += len(chunk)
        ends.append(position)
    return ends


def test_chunks_reassemble_the_input_within_the_size_bounds(data: bytes) -> None:
    pieces = chunks(MasterKey.generate().chunker_seed, data)

    assert b"".join(pieces) == data
    assert len(pieces) > 4
    assert all(PARAMS.min_size <= len(p) <= PARAMS.max_size for p in pieces[:-1])


def test_stream_and_buffer_chunking_agree(data: bytes) -> None:
    seed = MasterKey.generate().chunker_seed

    streamed = [bytes(c) for c in Chunker(seed, PARAMS).chunk_stream(io.BytesIO(data))]

    assert streamed == chunks(seed, data)


def test_chunking_a_file_cuts_as_one_pass_and_gives_its_buffer_back(
    data: bytes, tmp_path: Path
) -> None:
    """A file is read through a buffer shorter than itself, the chunk cut short at the
    buffer's end carried over: the same chunks as one pass over all of it. Past the part
    kept for the next file, the buffer's memory is given back once the file is done."""
    seed = MasterKey.generate().chunker_seed
    path = tmp_path / "large"
    path.write_bytes(data)
    chunker = Chunker(seed, PARAMS)
    buffer = chunker._buffer

    small = tmp_path / "small"
    small.write_bytes(data[: 600 * 1024])
    with open(small, "rb") as file:
        # Usually one chunk; FastCDC may cut it past the minimum size (512 KiB).
        assert [bytes(c) for c in chunker.chunk_fd(file.fileno())] == chunks(
            seed, data[: 600 * 1024]
        )
    assert resident_bytes(buffer) <= KEEP_BUFFER  # a small file fills only its pages

    with open(path, "rb") as file:
        pieces = chunker.chunk_fd(file.fileno())
        assert [bytes(c) for c in pieces] == chunks(seed, data)
    assert len(data) > len(buffer)
    assert resident_bytes(buffer) <= KEEP_BUFFER


def test_boundaries_differ_between_master_keys_so_they_do_not_fingerprint_files(
    data: bytes,
) -> None:
    first, second = MasterKey.generate(), MasterKey.generate()

    ours, theirs = boundaries(first.chunker_seed, data), boundaries(second.chunker_seed, data)

    # The last "boundary" is the end of the data; the cut points before it should not meet.
    shared = set(ours[:-1]) & set(theirs[:-1])
    assert len(shared) <= len(ours) // 4, f"{len(shared)} of {len(ours)} boundaries coincide"


def test_the_same_key_always_cuts_the_same_boundaries(data: bytes) -> None:
    seed = MasterKey.generate().chunker_seed

    assert boundaries(seed, data) == boundaries(seed, data)


def test_inserting_a_byte_at_the_start_changes_only_the_first_chunk(data: bytes) -> None:
    seed = MasterKey.generate().chunker_seed

    before, after = chunks(seed, data), chunks(seed, b"!" + data)

    assert after[0] == b"!" + before[0]
    assert after[1:] == before[1:]


def test_inserting_a_byte_in_the_middle_leaves_other_chunks_alone(data: bytes) -> None:
    seed = MasterKey.generate().chunker_seed
    middle = len(data) // 2

    before, after = chunks(seed, data), chunks(seed, data[:middle] + b"!" + data[middle:])

    assert len(set(after) - set(before)) <= 2
    assert len(set(before) & set(after)) >= len(before) - 2
