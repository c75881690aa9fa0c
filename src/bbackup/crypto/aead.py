"""Keyed blob IDs and authenticated encryption of blobs and documents.

Subkeys come from BLAKE3 in keyed mode: a blob's subkey is keyed on its type and ID, a
document's on a random 16-byte salt stored in front of it. Each subkey therefore only ever
seals one plaintext, so even a repeated random nonce cannot leak anything. The blob type
and ID (or the document kind) are bound as associated data: a blob cannot be swapped for
another, nor a snapshot for an index.

    blob      = nonce(12) ‖ AES-256-GCM(subkey(type, id), nonce, payload, ad=type ‖ id)
    document  = salt(16) ‖ nonce(12) ‖ AES-256-GCM(subkey(kind, salt), nonce, payload, ad=kind)
"""

from __future__ import annotations

import enum
import os
from typing import Protocol

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bbackup.errors import IntegrityError

NONCE_SIZE = 12
SALT_SIZE = 16
TAG_SIZE = 16
#: Bytes that encryption adds to a blob.
BLOB_OVERHEAD = NONCE_SIZE + TAG_SIZE


class BlobType(enum.IntEnum):
    """What a blob holds; also the pack directory it is stored under."""

    DATA = 0
    TREE = 1

    @property
    def directory(self) -> str:
        return "data" if self is BlobType.DATA else "tree"


class CipherKeys(Protocol):
    """The two secrets a Cipher needs (a `MasterKey` has them; a seal worker gets only
    these, so it need not load the key-file code)."""

    @property
    def encryption_key(self) -> bytes: ...

    @property
    def id_key(self) -> bytes: ...


class Cipher:
    """Seals and opens blobs and documents with one master key. Thread-safe."""

    def __init__(self, master: CipherKeys) -> None:
        self._id_key = master.id_key
        self._blob_root = blake3.blake3(
            master.encryption_key, derive_key_context="bbackup 2026-11 blob subkeys"
        ).digest()
        self._doc_root = blake3.blake3(
            master.encryption_key, derive_key_context="bbackup 2026-11 document subkeys"
        ).digest()

    def blob_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """Keyed BLAKE3-256 of the plaintext: the store cannot confirm known content."""
        digest: bytes = blake3.blake3(data, key=self._id_key, max_threads=1).digest()
        return digest

    def _blob_key(self, blob_type: BlobType, blob_id: bytes) -> tuple[AESGCM, bytes]:
        ad = bytes([blob_type]) + blob_id
        return AESGCM(blake3.blake3(ad, key=self._blob_root).digest()), ad

    def seal_blob(
        self, blob_type: BlobType, blob_id: bytes, payload: bytes | bytearray | memoryview
    ) -> bytearray:
        sealed = bytearray(BLOB_OVERHEAD + len(payload))
        self.seal_blob_into(blob_type, blob_id, payload, memoryview(sealed))
        return sealed

    def seal_blob_into(
        self,
        blob_type: BlobType,
        blob_id: bytes,
        payload: bytes | bytearray | memoryview,
        out: memoryview,
    ) -> None:
        """Seal into `out`, which must be exactly len(payload) + BLOB_OVERHEAD bytes."""
        aead, ad = self._blob_key(blob_type, blob_id)
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        aead.encrypt_into(nonce, payload, ad, out[NONCE_SIZE:])

    def open_blob(self, blob_type: BlobType, blob_id: bytes, sealed: bytes | memoryview) -> bytes:
        aead, ad = self._blob_key(blob_type, blob_id)
        view = memoryview(sealed)
        if len(view) < BLOB_OVERHEAD:  # AESGCM refuses a short nonce with a ValueError
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is truncated")
        try:
            return aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], ad)
        except InvalidTag:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} fails authentication") from None

    def _doc_key(self, kind: str, salt: bytes) -> AESGCM:
        return AESGCM(blake3.blake3(kind.encode() + b"\0" + salt, key=self._doc_root).digest())

    def seal_document(self, kind: str, payload: bytes) -> bytes:
        salt = os.urandom(SALT_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        return salt + nonce + self._doc_key(kind, salt).encrypt(nonce, payload, kind.encode())

    def open_document(self, kind: str, sealed: bytes | memoryview) -> bytes:
        view = memoryview(sealed)
        if len(view) < SALT_SIZE + NONCE_SIZE + TAG_SIZE:
            raise IntegrityError(f"{kind} document is truncated")
        salt, nonce, body = view[:SALT_SIZE], view[SALT_SIZE : SALT_SIZE + NONCE_SIZE], view[28:]
        try:
            return self._doc_key(kind, bytes(salt)).decrypt(nonce, body, kind.encode())
        except InvalidTag:
            raise IntegrityError(f"{kind} document fails authentication") from None
