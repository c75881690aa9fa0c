"""Per-blob zstd compression; blobs that do not shrink are stored raw, with a flag byte."""

from __future__ import annotations

import threading

import zstandard

RAW = 0
ZSTD = 1
DEFAULT_LEVEL = 3

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


def compress(data: bytes | bytearray | memoryview, level: int = DEFAULT_LEVEL) -> bytes:
    """Return flag byte ‖ body: zstd if that is smaller, else the raw bytes.

    Level 0 disables compression.
    """
    if level > 0 and len(data) >= 64:
        packed: bytes = _compressor(level).compress(data)
        if len(packed) < len(data) - 16:
            return bytes([ZSTD]) + packed
    return bytes([RAW]) + bytes(data)


def decompress(payload: bytes | memoryview, raw_length: int) -> bytes:
    """Invert `compress`; `raw_length` bounds the output so a bad blob cannot balloon."""
    view = memoryview(payload)
    if not view:
        raise ValueError("empty payload")
    if view[0] == RAW:
        return bytes(view[1:])
    if view[0] == ZSTD:
        # max_output_size is ignored when the frame states its content size: read through
        # a bounded stream instead, so a blob cannot inflate past its recorded length.
        with _decompressor().stream_reader(bytes(view[1:]), read_across_frames=True) as reader:
            out: bytes = reader.read(raw_length + 1)
        if len(out) > raw_length:
            raise ValueError("blob inflates past its recorded length")
        return out
    raise ValueError(f"unknown compression flag {view[0]}")
