"""Fuzzing the payload parsers behind the encryption: what a holder of the key (or a bug in
a writer) could store. Every parser either raises IntegrityError or returns an object whose
fields have the types the rest of bbackup relies on, and that its consumer can use;
never KeyError, TypeError, ValueError, RecursionError or MemoryError, and never a hang.
"""

from __future__ import annotations

import math
import struct
from datetime import datetime
from typing import Any

import msgpack
from fuzz_strategies import arbitrary_bytes, mutated, pack_value, reshaped
from hypothesis import given
from hypothesis import strategies as st
from pyfastcdc import FastCDC
from valid_objects import (
    MASTER,
    configs,
    damage_records,
    index_segments,
    lock_payloads,
    pack_header_rows,
    snapshots,
    trees,
)

from bbackup.crypto.aead import BlobType, Cipher
from bbackup.errors import IntegrityError
from bbackup.repository import DamageRecord, IndexSegment, RepositoryConfig, parse_pack
from bbackup.repository.index import Index
from bbackup.repository.lock import LockInfo, parse_lock
from bbackup.repository.pack import HEADER_KIND, PackedBlob
from bbackup.snapshot.model import Node, Snapshot, Tree

CIPHER = Cipher(MASTER)
HEX = frozenset("0123456789abcdef")


def damaged(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid payloads with bytes changed, or decoded, changed inside and packed again."""
    return st.one_of(
        valid.flatmap(mutated),
        valid.map(lambda b: msgpack.unpackb(b, raw=False)).flatmap(reshaped).map(pack_value),
    )


def parsed_or_integrity_error(parse: Any, payload: bytes) -> Any:
    """What `parse` returns, or None if it raised IntegrityError (anything else fails)."""
    try:
        return parse(payload)
    except IntegrityError:
        return None


def is_hex_id(value: object) -> bool:
    return type(value) is str and len(value) == 64 and set(value) <= HEX


def is_id(value: object) -> bool:
    return type(value) is bytes and len(value) == 32


def is_count(value: object) -> bool:
    return type(value) is int and value >= 0


# ---- pack headers -------------------------------------------------------------------------


def pack_with_header(header: bytes, blob_area: int = 4096) -> bytes:
    sealed = CIPHER.seal_document(HEADER_KIND, header)
    return bytes(blob_area) + sealed + struct.pack("<I", len(sealed))


def assert_well_formed_header(blobs: list[PackedBlob], blob_area: int = 4096) -> None:
    for blob in blobs:
        assert type(blob.blob_type) is BlobType and is_id(blob.blob_id)
        assert is_count(blob.offset) and is_count(blob.length) and is_count(blob.raw_length)
        assert blob.offset + blob.length <= blob_area


pack_headers = pack_header_rows.map(pack_value)


@given(damaged(pack_headers))
def test_pack_header_parser_gives_integrity_error_or_a_well_formed_header_for_damaged_headers(
    header: bytes,
) -> None:
    blobs = parsed_or_integrity_error(lambda h: parse_pack(CIPHER, pack_with_header(h)), header)
    if blobs is not None:
        assert_well_formed_header(blobs)


# ---- index segments -----------------------------------------------------------------------


def assert_well_formed_segment(segment: IndexSegment) -> None:
    for pack in segment.packs:
        assert is_hex_id(pack.pack_id) and type(pack.blob_type) is BlobType
        assert is_count(pack.size)
        for blob_id, offset, length, raw_length in pack.blobs:
            assert is_id(blob_id) and is_count(offset) and is_count(length)
            assert is_count(raw_length)
    assert all(is_hex_id(name) for name in segment.supersedes)
    assert all(is_hex_id(k) and type(v) is float for k, v in segment.marked.items())
    # What load_index does next: the segment joins an index, whose lookups work.
    index = Index()
    index.add_segment(segment)
    for pack in segment.packs:
        for blob_id, *_ in pack.blobs:
            assert index.lookup(blob_id).blob_type in (BlobType.DATA, BlobType.TREE)
    assert IndexSegment.from_bytes(segment.to_bytes()) == segment


@given(damaged(index_segments().map(IndexSegment.to_bytes)))
def test_index_segment_parser_gives_integrity_error_or_a_usable_segment_for_damaged_segments(
    payload: bytes,
) -> None:
    segment = parsed_or_integrity_error(IndexSegment.from_bytes, payload)
    if segment is not None:
        assert_well_formed_segment(segment)


# ---- trees --------------------------------------------------------------------------------

_NODE_INTS = ("mode", "uid", "gid", "mtime_ns", "atime_ns", "ctime_ns", "size", "inode")
_NODE_INTS += ("device", "nlink", "rdev")


def assert_well_formed_node(node: Node) -> None:
    assert type(node.name) is bytes and type(node.type) is str
    assert all(type(getattr(node, name)) is int for name in _NODE_INTS)
    assert type(node.user) is str and type(node.group) is str
    assert type(node.link_target) is bytes
    assert all(type(k) is bytes and type(v) is bytes for k, v in node.xattrs)
    assert all(is_id(blob_id) for blob_id in node.content)
    assert node.subtree is None or is_id(node.subtree)
    assert node.display_name is not None


def assert_well_formed_tree(tree: Tree) -> None:
    for node in tree.nodes:
        assert_well_formed_node(node)
    by_name = sorted(tree.nodes, key=lambda n: n.name)
    assert sorted(Tree.from_bytes(tree.to_bytes()).nodes, key=lambda n: n.name) == by_name


@given(damaged(trees.map(Tree.to_bytes)))
def test_tree_parser_gives_integrity_error_or_a_well_formed_tree_for_damaged_trees(
    payload: bytes,
) -> None:
    tree = parsed_or_integrity_error(Tree.from_bytes, payload)
    if tree is not None:
        assert_well_formed_tree(tree)


# ---- snapshots ----------------------------------------------------------------------------


def is_json_like(value: object, depth: int = 0) -> bool:
    if depth > 16:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return True
    if type(value) is list:
        return all(is_json_like(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and is_json_like(v, depth + 1) for k, v in value.items())
    return False


def assert_well_formed_snapshot(snapshot: Snapshot) -> None:
    assert type(snapshot.time) is datetime and snapshot.time.utcoffset() is not None
    assert all(type(getattr(snapshot, f)) is str for f in ("host", "user", "program_version"))
    assert type(snapshot.backup_type) is str
    for name in ("paths", "tags", "excludes"):
        assert all(type(item) is str for item in getattr(snapshot, name))
    assert is_id(snapshot.tree)
    assert all(v is None or type(v) is str for v in (snapshot.parent, snapshot.base))
    assert is_json_like(snapshot.summary)
    # Snapshots are listed sorted by time; an aware time compares with any other.
    assert sorted([snapshot.time, datetime.fromisoformat("2026-01-01T00:00:00+00:00")])
    assert Snapshot.from_bytes(snapshot.to_bytes(), snapshot.id) == snapshot


@given(damaged(snapshots.map(Snapshot.to_bytes)))
def test_snapshot_parser_gives_integrity_error_or_a_well_formed_snapshot_for_damaged_snapshots(
    payload: bytes,
) -> None:
    snapshot = parsed_or_integrity_error(lambda p: Snapshot.from_bytes(p, "ab" * 32), payload)
    if snapshot is not None:
        assert_well_formed_snapshot(snapshot)


# ---- config -------------------------------------------------------------------------------


def assert_usable_config(config: RepositoryConfig) -> None:
    assert is_hex_id(config.repository_id) and type(config.version) is int
    assert type(config.compression_level) is int and type(config.pack_size) is int
    chunker = config.chunker
    # What a backup does next: pyfastcdc accepts the chunk sizes.
    FastCDC(
        avg_size=chunker.avg_size,
        min_size=chunker.min_size,
        max_size=chunker.max_size,
        seed=MASTER.chunker_seed,
    )
    assert RepositoryConfig.from_bytes(config.to_bytes()) == config


@given(damaged(configs().map(RepositoryConfig.to_bytes)))
def test_config_parser_gives_integrity_error_or_a_usable_config_for_damaged_configs(
    payload: bytes,
) -> None:
    config = parsed_or_integrity_error(RepositoryConfig.from_bytes, payload)
    if config is not None:
        assert_usable_config(config)


# ---- locks --------------------------------------------------------------------------------

LOCK_NAME = "locks/" + "cd" * 32


def assert_usable_lock(lock: LockInfo) -> None:
    assert type(lock.host) is str and type(lock.user) is str and type(lock.purpose) is str
    assert type(lock.pid) is int and type(lock.exclusive) is bool
    assert math.isfinite(lock.time) and math.isfinite(lock.started)
    # What lock checks do next: judge it stale or not, and describe it.
    assert lock.stale in (True, False)
    assert lock.describe()


@given(damaged(lock_payloads.map(pack_value)))
def test_lock_parser_gives_integrity_error_or_a_usable_lock_for_damaged_locks(
    payload: bytes,
) -> None:
    lock = parsed_or_integrity_error(lambda p: parse_lock(LOCK_NAME, p), payload)
    if lock is not None:
        assert_usable_lock(lock)


# ---- damage records -----------------------------------------------------------------------


def assert_usable_damage_record(record: DamageRecord) -> None:
    assert record.packs and all(is_hex_id(p) for p in record.packs)
    assert all(type(b) is frozenset and all(is_id(i) for i in b) for b in record.packs.values())
    assert math.isfinite(record.time) and type(record.time) is float
    assert type(record.host) is str and type(record.found_by) is str
    # What load_index and check do next: mark the places in an index, describe it.
    index = Index()
    index.set_damaged(record.packs)
    assert record.describe()
    assert DamageRecord.from_bytes(record.to_bytes()) == record


@given(damaged(damage_records.map(DamageRecord.to_bytes)))
def test_damage_record_parser_gives_integrity_error_or_a_usable_record_for_damaged_records(
    payload: bytes,
) -> None:
    record = parsed_or_integrity_error(DamageRecord.from_bytes, payload)
    if record is not None:
        assert_usable_damage_record(record)


# ---- arbitrary bytes, to every parser ----------------------------------------------------


@given(arbitrary_bytes)
def test_every_payload_parser_gives_integrity_error_or_a_well_formed_object_for_arbitrary_bytes(
    payload: bytes,
) -> None:
    for parse, check in [
        (lambda h: parse_pack(CIPHER, pack_with_header(h)), assert_well_formed_header),
        (IndexSegment.from_bytes, assert_well_formed_segment),
        (Tree.from_bytes, assert_well_formed_tree),
        (lambda p: Snapshot.from_bytes(p, ""), assert_well_formed_snapshot),
        (RepositoryConfig.from_bytes, assert_usable_config),
        (lambda p: parse_lock(LOCK_NAME, p), assert_usable_lock),
        (DamageRecord.from_bytes, assert_usable_damage_record),
    ]:
        parsed = parsed_or_integrity_error(parse, payload)
        if parsed is not None:
            check(parsed)
