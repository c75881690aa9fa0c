"""Sealed blobs and documents are bound to their ID, type and kind: no swapping."""

from __future__ import annotations

import pytest

from bbackup.crypto.aead import BlobType, Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import IntegrityError


@pytest.fixture
def cipher() -> Cipher:
    return Cipher(MasterKey.generate())


def test_a_blob_opens_under_the_id_and_type_it_was_sealed_with(cipher: Cipher) -> None:
    blob_id = cipher.blob_id(b"content")
    sealed = cipher.seal_blob(BlobType.DATA, blob_id, b"payload")

    assert cipher.open_blob(BlobType.DATA, blob_id, sealed) == b"payload"


def test_a_blob_sealed_as_data_cannot_be_opened_as_a_tree(cipher: Cipher) -> None:
    blob_id = cipher.blob_id(b"content")
    sealed = cipher.seal_blob(BlobType.DATA, blob_id, b"payload")

    with pytest.raises(IntegrityError):
        cipher.open_blob(BlobType.TREE, blob_id, sealed)


def test_a_blob_cannot_be_opened_as_another_blob(cipher: Cipher) -> None:
    blob_id, other_id = cipher.blob_id(b"content"), cipher.blob_id(b"other content")
    sealed = cipher.seal_blob(BlobType.DATA, blob_id, b"payload")

    with pytest.raises(IntegrityError):
        cipher.open_blob(BlobType.DATA, other_id, sealed)


def test_a_blob_cannot_be_opened_with_another_master_key(cipher: Cipher) -> None:
    blob_id = cipher.blob_id(b"content")
    sealed = cipher.seal_blob(BlobType.DATA, blob_id, b"payload")

    with pytest.raises(IntegrityError):
        Cipher(MasterKey.generate()).open_blob(BlobType.DATA, blob_id, sealed)


def test_a_tampered_blob_fails_authentication(cipher: Cipher) -> None:
    blob_id = cipher.blob_id(b"content")
    sealed = bytearray(cipher.seal_blob(BlobType.DATA, blob_id, b"payload"))
    sealed[-1] ^= 0x01

    with pytest.raises(IntegrityError):
        cipher.open_blob(BlobType.DATA, blob_id, bytes(sealed))


def test_sealing_the_same_blob_twice_gives_different_bytes(cipher: Cipher) -> None:
    blob_id = cipher.blob_id(b"content")

    first = cipher.seal_blob(BlobType.DATA, blob_id, b"payload")
    second = cipher.seal_blob(BlobType.DATA, blob_id, b"payload")

    assert first != second
    assert b"payload" not in first


def test_a_document_cannot_be_opened_as_another_kind(cipher: Cipher) -> None:
    sealed = cipher.seal_document("snapshot", b"document body")

    assert cipher.open_document("snapshot", sealed) == b"document body"
    for kind in ("index", "config", "lock", "pack-header"):
        with pytest.raises(IntegrityError):
            cipher.open_document(kind, sealed)


@pytest.mark.parametrize("cut", [0, 10, 43])
def test_a_truncated_document_fails_with_integrity_error(cipher: Cipher, cut: int) -> None:
    sealed = cipher.seal_document("snapshot", b"document body")

    with pytest.raises(IntegrityError):
        cipher.open_document("snapshot", sealed[:cut])


def test_blob_ids_are_keyed_so_the_store_cannot_confirm_known_content() -> None:
    data = b"a well-known file everyone has"

    ids = {Cipher(MasterKey.generate()).blob_id(data) for _ in range(3)}

    assert len(ids) == 3
