"""Packs: many sealed blobs in one stored object, with an encrypted header at the end.

    pack = blob₀ ‖ blob₁ ‖ … ‖ sealed header ‖ header length (uint32, little endian)

The header is a document of kind "pack-header" listing every blob's type, ID, offset,
sealed length and raw length, so a lost index can be rebuilt from the packs alone. The
pack ID is the SHA-256 of the stored bytes: anyone can verify a pack without the password.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import struct
from dataclasses import dataclass

import msgpack

from bbackup.crypto.aead import BlobType, Cipher
from bbackup.errors import IntegrityError

_TRAILER = struct.Struct("<I")
HEADER_KIND = "pack-header"


@dataclass(frozen=True, slots=True)
class PackedBlob:
    """Where one blob sits inside a pack."""

    blob_type: BlobType
    blob_id: bytes
    offset: int
    length: int  # sealed bytes in the pack
    raw_length: int  # plaintext bytes


def pack_object_name(blob_type: BlobType, pack_id: str) -> str:
    return f"{blob_type.directory}/{pack_id[:2]}/{pack_id}"


#: Transparent huge pages are this large on x86-64 and arm64 (4 KiB base pages); a map
#: whose length is a multiple of it starts on such a boundary (Linux 6.7 and later).
HUGE_PAGE = 2 * 1024 * 1024


def map_length(capacity: int) -> int:
    """The length of the map that holds a pack of `capacity` bytes: whole huge pages."""
    return -(-capacity // HUGE_PAGE) * HUGE_PAGE


def new_pack_map(capacity: int, body: int | None = None) -> mmap.mmap:
    """A private anonymous map for a pack, its first `body` bytes (all by default) in 2
    MiB pages where the kernel offers them (transparent huge pages in "madvise" mode,
    Linux's common default): a 16 MiB pack then takes 8 page faults as it fills, not
    4,096, which makes giving a stored pack's memory back (`give_back`) and faulting it in
    again for the next pack cheap. What lies past the body (the slack that the last blob
    and the header run into) stays in small pages: a full pack always ends a little past
    its size, and a huge page there would hold 2 MiB for those few bytes."""
    length = map_length(capacity)
    buffer = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE)
    hugepage = getattr(mmap, "MADV_HUGEPAGE", None)
    huge = length if body is None else min(length, body // HUGE_PAGE * HUGE_PAGE)
    if hugepage is not None and huge:
        with contextlib.suppress(OSError):  # a kernel without transparent huge pages
            buffer.madvise(hugepage, 0, huge)
    return buffer


def give_back(buffer: mmap.mmap) -> None:
    """Return the memory of a map whose pack is stored, keeping the map: a kept map that
    held its pages would double what the next pack holds while the one before it is
    still being written (peak RSS of a first backup: two full packs, not one). Where the
    kernel refuses, the pages stay: this must never fail the store that freed the slot."""
    with contextlib.suppress(OSError):
        buffer.madvise(mmap.MADV_DONTNEED)


class PackBuilder:
    """One pack being filled: blobs are sealed straight into it, by several threads at once.

    The bytes live in an anonymous memory map of fixed `capacity`: a blob's place is
    reserved under the owner's lock (`reserve`), then sealed into that view without it, so
    no blob is copied again and no join is needed. Pages are committed only as they are
    written, so the slack kept for a last large blob and the header costs address space,
    not memory; they come in huge pages where the kernel has them (`new_pack_map`). A map
    also starts on a page, which lets the local backend write the pack around the page
    cache (`storage.direct_io`). The owner counts `writers` (places reserved, not yet
    written) and calls `finish` once the pack is closed and they are all done.
    """

    def __init__(
        self,
        blob_type: BlobType,
        capacity: int,
        buffer: mmap.mmap | None = None,
        *,
        body: int | None = None,
    ) -> None:
        """A pack in a new map for `capacity` bytes (`body` of them expected to fill:
        `new_pack_map`), or in `buffer` (a map of that length that held an earlier pack:
        every byte the pack stores is written again)."""
        self.blob_type = blob_type
        self.capacity = capacity
        self.buffer: mmap.mmap | None = (
            buffer if buffer is not None else new_pack_map(capacity, body)
        )
        self.view = memoryview(self.buffer)
        self.blobs: list[PackedBlob] = []
        self.size = 0
        self.writers = 0
        self.closed = False

    def release(self) -> mmap.mmap | None:
        """Let go of the pack once it is stored; return its map if nothing else uses it.

        A view still alive elsewhere keeps the map from being reused (it is unmapped
        when that view goes); the returned map may hold another pack.
        """
        self.view.release()
        buffer, self.buffer = self.buffer, None
        if buffer is None:
            return None
        try:
            buffer.resize(len(buffer))  # refused while any buffer of the map is exported
        except (BufferError, OSError, SystemError):
            return None
        return buffer

    def fits(self, length: int) -> bool:
        return self.size + length <= self.capacity

    def reserve(self, blob_id: bytes, length: int, raw_length: int) -> memoryview:
        """The view to write a sealed blob of `length` bytes into; one more writer."""
        offset = self.size
        self.blobs.append(PackedBlob(self.blob_type, blob_id, offset, length, raw_length))
        self.size = offset + length
        self.writers += 1
        return self.view[offset : self.size]

    def finish(self, cipher: Cipher) -> tuple[str, memoryview | bytes]:
        """Append the header; return (pack ID, stored bytes). Meant for a worker thread."""
        header = msgpack.packb(
            [(int(b.blob_type), b.blob_id, b.offset, b.length, b.raw_length) for b in self.blobs]
        )
        sealed_header = cipher.seal_document(HEADER_KIND, header)
        trailer = _TRAILER.pack(len(sealed_header))
        end = self.size + len(sealed_header) + len(trailer)
        data: memoryview | bytes
        if end <= self.capacity:
            self.view[self.size : end] = sealed_header + trailer
            data = self.view[:end]
        else:  # a header larger than the slack (a great many tiny blobs): one copy
            data = b"".join((self.view[: self.size], sealed_header, trailer))
        return hashlib.sha256(data).hexdigest(), data


def verify_pack_id(pack_id: str, data: bytes | bytearray | memoryview) -> None:
    if hashlib.sha256(data).hexdigest() != pack_id:
        raise IntegrityError(f"pack {pack_id}: content does not match its ID (SHA-256)")


def header_length(trailer: bytes) -> int:
    """The sealed header's length from the pack's last 4 bytes."""
    if len(trailer) != _TRAILER.size:
        raise IntegrityError("pack trailer is truncated")
    (length,) = _TRAILER.unpack(trailer)
    return int(length)


def parse_header(cipher: Cipher, sealed_header: bytes | memoryview) -> list[PackedBlob]:
    plain = cipher.open_document(HEADER_KIND, sealed_header)
    try:
        rows = msgpack.unpackb(plain)
        if type(rows) is not list:
            raise TypeError("a pack header is a list")
        return [_packed_blob(*row) for row in rows]
    except (ValueError, TypeError) as exc:
        raise IntegrityError("pack header is malformed") from exc


def _packed_blob(t: object, i: object, o: object, n: object, r: object) -> PackedBlob:
    """One header row, checked: (type, 32-byte ID, offset, length, raw length)."""
    if not (isinstance(t, int) and isinstance(i, bytes) and len(i) == 32):
        raise TypeError("a pack header row starts with a blob type and a 32-byte ID")
    if not (isinstance(o, int) and isinstance(n, int) and isinstance(r, int)) or min(o, n, r) < 0:
        raise TypeError("blob offsets and lengths are non-negative integers")
    return PackedBlob(BlobType(t), i, o, n, r)


def parse_pack(cipher: Cipher, data: bytes | bytearray | memoryview) -> list[PackedBlob]:
    """Read the header of a whole pack held in memory."""
    view = memoryview(data)
    if len(view) < _TRAILER.size:
        raise IntegrityError("pack is truncated")
    length = header_length(bytes(view[-_TRAILER.size :]))
    start = len(view) - _TRAILER.size - length
    if start < 0:
        raise IntegrityError("pack header length exceeds the pack")
    blobs = parse_header(cipher, view[start : len(view) - _TRAILER.size])
    for blob in blobs:
        if blob.offset + blob.length > start:
            raise IntegrityError("pack header points past the blob area")
    return blobs
