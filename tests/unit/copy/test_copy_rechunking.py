"""Re-chunking a file's content as it arrives, a run of blobs at a time, gives exactly the
boundaries of one pass over the whole file."""

from __future__ import annotations

import os
import random

import pytest

from bbackup.chunking import Chunker, ChunkerParams, KiB
from bbackup.ops.copy_content import Rechunker

SMALL = ChunkerParams(min_size=16 * KiB, avg_size=64 * KiB, max_size=256 * KiB)


@pytest.mark.parametrize("seed", [1, 2**61 + 12345])
def test_rechunking_in_pieces_cuts_where_one_pass_over_the_whole_file_cuts(seed: int) -> None:
    data = os.urandom(3 * 1024 * 1024) + bytes(600 * KiB)  # a zero run forces max-size cuts
    whole = [bytes(c) for c in Chunker(seed, SMALL).chunk_buffer(data)]
    rng = random.Random(seed)
    for _ in range(5):
        # Old chunks of any size, handed over in runs of any length, split at any point.
        cuts = sorted(rng.sample(range(1, len(data)), 60))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        rechunker = Rechunker(Chunker(seed, SMALL))
        got: list[bytes] = []
        while pieces:
            k = rng.randint(1, 8)
            run, pieces = pieces[:k], pieces[k:]
            got += [bytes(c) for c in rechunker.cut(run, last=not pieces)]
        assert got == whole


def test_a_content_smaller_than_the_minimum_chunk_is_one_chunk() -> None:
    rechunker = Rechunker(Chunker(7, SMALL))
    assert rechunker.cut([b"abc", b"def"], last=False) == []
    assert [bytes(c) for c in rechunker.cut([b"g"], last=True)] == [b"abcdefg"]
