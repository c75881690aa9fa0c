"""Packs: what PackBuilder stores, parse_pack reads back; tampering is detected."""

from __future__ import annotations

import os

import pytest

from bbackup.compression import compress, decompress
from bbackup.crypto.aead import BLOB_OVERHEAD, BlobType, Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import IntegrityError
from bbackup.repository import parse_pack, verify_pack_id
from bbackup.repository.pack import HUGE_PAGE, PackBuilder, give_back, map_length, new_pack_map
from map_memory import huge_page_bytes, resident_bytes


@pytest.fixture
def cipher() -> Cipher:
    return Cipher(MasterKey.generate())


def build_pack(cipher: Cipher, contents: list[bytes], capacity: int = 1 << 20) -> tuple[str, bytes]:
    builder = PackBuilder(BlobType.DATA, capacity)
    for data in contents:
        blob_id = cipher.blob_id(data)
        payload = compress(data)
        target = builder.reserve(blob_id, len(payload) + BLOB_OVERHEAD, len(data))
        cipher.seal_blob_into(BlobType.DATA, blob_id, payload, target)
    pack_id, stored = builder.finish(cipher)
    return pack_id, bytes(stored)


CONTENTS = [b"", b"short", b"compressible " * 5000, os.urandom(100_000)]


def test_parse_pack_returns_every_blob_written_and_each_opens_to_its_content(
    cipher: Cipher,
) -> None:
    pack_id, data = build_pack(cipher, CONTENTS)

    verify_pack_id(pack_id, data)
    blobs = parse_pack(cipher, data)

    assert [b.blob_id for b in blobs] == [cipher.blob_id(c) for c in CONTENTS]
    assert [b.raw_length for b in blobs] == [len(c) for c in CONTENTS]
    assert all(b.blob_type is BlobType.DATA for b in blobs)
    for blob, content in zip(blobs, CONTENTS, strict=True):
        sealed = data[blob.offset : blob.offset + blob.length]
        payload = cipher.open_blob(blob.blob_type, blob.blob_id, sealed)
        assert decompress(payload, blob.raw_length) == content


def test_a_header_that_does_not_fit_the_slack_is_still_stored_whole(cipher: Cipher) -> None:
    contents = [os.urandom(64) for _ in range(100)]
    fitting_id, fitting = build_pack(cipher, contents)
    tight_id, tight = build_pack(cipher, contents, capacity=100 * (64 + BLOB_OVERHEAD))

    for pack_id, data in ((fitting_id, fitting), (tight_id, tight)):
        verify_pack_id(pack_id, data)
        assert [b.blob_id for b in parse_pack(cipher, data)] == [
            cipher.blob_id(c) for c in contents
        ]


@pytest.mark.parametrize("from_end", [5, 20, 40])
def test_a_tampered_pack_header_fails_with_integrity_error(cipher: Cipher, from_end: int) -> None:
    _, data = build_pack(cipher, CONTENTS)
    tampered = bytearray(data)
    tampered[-from_end] ^= 0x01  # inside the sealed header (the trailer is the last 4 bytes)

    with pytest.raises(IntegrityError):
        parse_pack(cipher, bytes(tampered))


@pytest.mark.parametrize("length", [0, 1, 10**9])
def test_a_wrong_header_length_fails_with_integrity_error(cipher: Cipher, length: int) -> None:
    _, data = build_pack(cipher, CONTENTS)

    with pytest.raises(IntegrityError):
        parse_pack(cipher, data[:-4] + length.to_bytes(4, "little"))


def test_a_truncated_pack_fails_with_integrity_error(cipher: Cipher) -> None:
    with pytest.raises(IntegrityError):
        parse_pack(cipher, b"\x01\x02")


def test_a_pack_cannot_be_read_with_another_repositorys_key(cipher: Cipher) -> None:
    _, data = build_pack(cipher, CONTENTS)

    with pytest.raises(IntegrityError):
        parse_pack(Cipher(MasterKey.generate()), data)


def test_a_flipped_bit_in_a_blob_fails_the_pack_id_and_the_blob(cipher: Cipher) -> None:
    pack_id, data = build_pack(cipher, CONTENTS)
    last = parse_pack(cipher, data)[-1]
    tampered = bytearray(data)
    tampered[last.offset + last.length // 2] ^= 0x80

    with pytest.raises(IntegrityError):
        verify_pack_id(pack_id, bytes(tampered))
    sealed = bytes(tampered[last.offset : last.offset + last.length])
    with pytest.raises(IntegrityError):
        cipher.open_blob(last.blob_type, last.blob_id, sealed)


def test_a_pack_map_is_given_back_and_its_slack_holds_no_huge_page() -> None:
    """A pack's body may come in huge pages; the slack past it (where a full pack's last
    blob and header end) in small ones, so those bytes do not hold 2 MiB; and a stored
    pack's map gives all of its memory back."""
    body, capacity = 4 * HUGE_PAGE, 4 * HUGE_PAGE + 9 * 1024 * 1024
    buffer = new_pack_map(capacity, body)
    assert len(buffer) == map_length(capacity) and len(buffer) % HUGE_PAGE == 0
    buffer[: body + 4096] = b"\x01" * (body + 4096)  # a full pack: a page past its body

    assert huge_page_bytes(buffer) <= body  # none of it in the slack
    assert resident_bytes(buffer) <= body + 2 * 4096

    give_back(buffer)
    assert resident_bytes(buffer) == 0
    assert buffer[:16] == b"\0" * 16  # the next pack finds zeroes, not the last one's bytes
