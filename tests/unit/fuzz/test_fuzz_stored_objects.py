"""Fuzzing what the store can feed bbackup without the key: arbitrary and damaged stored
bytes, read the way bbackup reads them (authenticate, then parse), give an IntegrityError
and nothing else, and a damaged object is never read as different content.
"""

from __future__ import annotations

import struct

import pytest
from fuzz_strategies import arbitrary_bytes, mutated, pack_value
from hypothesis import given
from hypothesis import strategies as st
from valid_objects import (
    MASTER,
    configs,
    damage_records,
    index_segments,
    lock_payloads,
    snapshots,
    trees,
)

from bbackup.compression import compress, decompress
from bbackup.crypto.aead import BLOB_OVERHEAD, BlobType, Cipher
from bbackup.errors import IntegrityError
from bbackup.repository import (
    DamageRecord,
    IndexSegment,
    RepositoryConfig,
    parse_pack,
    verify_pack_id,
)
from bbackup.repository.damage import DAMAGE_KIND
from bbackup.repository.index import INDEX_KIND
from bbackup.repository.lock import LOCK_KIND, parse_lock
from bbackup.repository.pack import PackBuilder
from bbackup.repository.repository import CONFIG_KIND
from bbackup.snapshot.model import Snapshot, Tree
from bbackup.snapshot.store import SNAPSHOT_KIND

CIPHER = Cipher(MASTER)


def sealed(kind: str, payload: bytes) -> bytes:
    return CIPHER.seal_document(kind, payload)


def damaged_documents(kind: str, payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid stored documents of `kind`, with bytes changed."""
    return payloads.map(lambda p: sealed(kind, p)).flatmap(mutated)


def build_pack(contents: list[bytes]) -> bytes:
    builder = PackBuilder(BlobType.DATA, 1 << 20)
    for data in contents:
        blob_id = CIPHER.blob_id(data)
        payload = compress(data)
        target = builder.reserve(blob_id, len(payload) + BLOB_OVERHEAD, len(data))
        CIPHER.seal_blob_into(BlobType.DATA, blob_id, payload, target)
    _pack_id, stored = builder.finish(CIPHER)
    copy = bytes(stored)
    del stored
    builder.release()
    return copy


def read_every_blob(stored: bytes) -> list[bytes]:
    """Every blob of a pack, opened and checked as `check --read-data` and restore do."""
    contents = []
    for blob in parse_pack(CIPHER, stored):
        payload = CIPHER.open_blob(
            blob.blob_type, blob.blob_id, stored[blob.offset :][: blob.length]
        )
        try:
            plain = decompress(payload, blob.raw_length)
        except ValueError as exc:  # decode_blob turns a failed decompression into this
            raise IntegrityError("cannot decompress") from exc
        if CIPHER.blob_id(plain) != blob.blob_id:
            raise IntegrityError("content does not match its ID")
        contents.append(plain)
    return contents


pack_contents = st.lists(
    st.one_of(st.binary(max_size=300), st.binary(max_size=20).map(lambda b: b * 50)),
    min_size=1,
    max_size=4,
)


def read_tree(blob_id: bytes, stored: bytes) -> Tree:
    return Tree.from_bytes(CIPHER.open_blob(BlobType.TREE, blob_id, stored))


@given(st.one_of(arbitrary_bytes, arbitrary_bytes.map(lambda b: b + struct.pack("<I", len(b)))))
def test_every_stored_object_reader_rejects_arbitrary_bytes_with_integrity_error(
    stored: bytes,
) -> None:
    for read in [
        lambda b: parse_pack(CIPHER, b),
        lambda b: IndexSegment.from_bytes(CIPHER.open_document(INDEX_KIND, b)),
        lambda b: Snapshot.from_bytes(CIPHER.open_document(SNAPSHOT_KIND, b), "ab" * 32),
        lambda b: RepositoryConfig.from_bytes(CIPHER.open_document(CONFIG_KIND, b)),
        lambda b: parse_lock("locks/" + "cd" * 32, CIPHER.open_document(LOCK_KIND, b)),
        lambda b: DamageRecord.from_bytes(CIPHER.open_document(DAMAGE_KIND, b)),
        lambda b: read_tree(b"\x07" * 32, b),
    ]:
        with pytest.raises(IntegrityError):
            read(stored)


@given(pack_contents.flatmap(lambda c: st.tuples(st.just(c), mutated(build_pack(c)))))
def test_pack_reader_never_returns_content_from_a_damaged_pack(
    case: tuple[list[bytes], bytes],
) -> None:
    contents, damaged = case
    pack_id = "0" * 64
    with pytest.raises(IntegrityError):
        verify_pack_id(pack_id, damaged)
    try:
        read = read_every_blob(damaged)
    except IntegrityError:
        return
    # Damage outside every blob and the header (there is none) is the only way here.
    assert read == contents


@given(damaged_documents(INDEX_KIND, index_segments().map(IndexSegment.to_bytes)))
def test_index_segment_reader_rejects_damaged_bytes_with_integrity_error(
    stored: bytes,
) -> None:
    with pytest.raises(IntegrityError):
        IndexSegment.from_bytes(CIPHER.open_document(INDEX_KIND, stored))


@given(damaged_documents(SNAPSHOT_KIND, snapshots.map(Snapshot.to_bytes)))
def test_snapshot_reader_rejects_damaged_bytes_with_integrity_error(
    stored: bytes,
) -> None:
    with pytest.raises(IntegrityError):
        Snapshot.from_bytes(CIPHER.open_document(SNAPSHOT_KIND, stored), "ab" * 32)


@given(damaged_documents(CONFIG_KIND, configs().map(RepositoryConfig.to_bytes)))
def test_config_reader_rejects_damaged_bytes_with_integrity_error(
    stored: bytes,
) -> None:
    with pytest.raises(IntegrityError):
        RepositoryConfig.from_bytes(CIPHER.open_document(CONFIG_KIND, stored))


@given(damaged_documents(LOCK_KIND, lock_payloads.map(pack_value)))
def test_lock_reader_rejects_damaged_bytes_with_integrity_error(
    stored: bytes,
) -> None:
    with pytest.raises(IntegrityError):
        parse_lock("locks/" + "cd" * 32, CIPHER.open_document(LOCK_KIND, stored))


@given(damaged_documents(DAMAGE_KIND, damage_records.map(DamageRecord.to_bytes)))
def test_damage_record_reader_rejects_damaged_bytes_with_integrity_error(
    stored: bytes,
) -> None:
    with pytest.raises(IntegrityError):
        DamageRecord.from_bytes(CIPHER.open_document(DAMAGE_KIND, stored))


def sealed_tree(tree: Tree) -> tuple[bytes, bytes]:
    plain = tree.to_bytes()
    blob_id = CIPHER.blob_id(plain)
    return blob_id, bytes(CIPHER.seal_blob(BlobType.TREE, blob_id, compress(plain)))


@given(trees.map(sealed_tree).flatmap(lambda t: st.tuples(st.just(t[0]), mutated(t[1]))))
def test_tree_reader_rejects_damaged_blobs_with_integrity_error(case: tuple[bytes, bytes]) -> None:
    blob_id, stored = case
    with pytest.raises(IntegrityError):
        read_tree(blob_id, stored)
