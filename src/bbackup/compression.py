"""Per-blob zstd compression; blobs that do not shrink are stored as they are.

No flag byte is needed: compression is kept only when it saves more than 16 bytes, so a
payload is a zstd frame exactly when it is shorter than the blob's recorded raw length.
"""

from __future__ import annotations

import threading

import zstandard

DEFAULT_LEVEL = 3
#: zstd's highest level; 0 stores blobs uncompressed.
MAX_LEVEL = 22
#: Compress this much of a large blob first; if that does not shrink, skip the rest.
SAMPLE_SIZE = 64 * 1024
_MIN_SAVING = 16
#: The most `decompress` allocates at once: the largest data chunk a repository may use
#: (`repository.config` bounds the chunker's max_size by it). Tree blobs have no such
#: bound, so a larger blob is read in steps of this size rather than refused.
MAX_STEP = 16 * 1024 * 1024

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstd contexts are not thread-safe; keep one per thread and level.
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dctx is None:
        dctx = _local.decompressor = zstandard.ZstdDecompressor()
    return dctx


def compress(
    data: bytes | bytearray | memoryview, level: int = DEFAULT_LEVEL
) -> bytes | bytearray | memoryview:
    """A zstd frame if that is more than 16 bytes smaller, else `data` itself (no copy).

    Level 0 disables compression. Large blobs whose first 64 KiB do not compress at
    level 1 (encrypted, already compressed or random data) are not tried in full.
    """
    size = len(data)
    if level <= 0 or size < 64:
        return data
    if size > 4 * SAMPLE_SIZE:
        sample = memoryview(data)[:SAMPLE_SIZE]
        if len(_compressor(1).compress(sample)) > SAMPLE_SIZE * 0.97:
            return data
    packed: bytes = _compressor(level).compress(data)
    return packed if len(packed) < size - _MIN_SAVING else data


def decompress(payload: bytes | memoryview, raw_length: int) -> bytes:
    """Invert `compress`; the output can never exceed `raw_length`.

    `raw_length` comes from the index, which may be damaged: memory is taken as the frame
    really inflates, in steps of at most `MAX_STEP`, never at once for the length claimed.
    A claim the payload does not bear out is a ValueError, however large.
    """
    if len(payload) == raw_length:
        return bytes(payload)
    if len(payload) > raw_length:
        raise ValueError("payload is longer than the blob's raw length")
    if raw_length <= MAX_STEP and zstandard.frame_content_size(payload) == raw_length:
        # The frame states the size we expect: one-shot decompression, bounded by it.
        out_once: bytes = _decompressor().decompress(payload, max_output_size=raw_length)
        if len(out_once) != raw_length:
            raise ValueError("blob does not decompress to its recorded length")
        return out_once
    # Otherwise max_output_size would not bind (zstd trusts a stated size), and a read
    # sized by the claim would allocate it: read through a bounded stream, step by step,
    # so a blob can neither inflate past its recorded length nor claim memory it lacks.
    pieces: list[bytes] = []
    produced = 0
    with _decompressor().stream_reader(bytes(payload), read_across_frames=True) as reader:
        while produced <= raw_length:
            piece: bytes = reader.read(min(raw_length + 1 - produced, MAX_STEP))
            if not piece:
                break
            pieces.append(piece)
            produced += len(piece)
    if produced != raw_length:
        raise ValueError(
            f"blob does not decompress to its recorded length ({produced:,} bytes"
            f"{' or more' if produced > raw_length else ''}, the index says {raw_length:,})"
        )
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
