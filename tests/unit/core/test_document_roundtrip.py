"""Config, index segments, snapshots and trees read back exactly as they were written."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bbackup.chunking import ChunkerParams
from bbackup.crypto.aead import BlobType, Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import IntegrityError
from bbackup.repository import IndexSegment, PackInfo, RepositoryConfig
from bbackup.repository.index import Index
from bbackup.snapshot.model import (
    DIR,
    FILE,
    POSITIONAL_FIELDS,
    SYMLINK,
    WIRE_FIELDS,
    Node,
    Snapshot,
    Tree,
)


def sealed_round_trip(kind: str, payload: bytes) -> bytes:
    cipher = Cipher(MasterKey.generate())
    return cipher.open_document(kind, cipher.seal_document(kind, payload))


def test_config_round_trips() -> None:
    config = RepositoryConfig(
        chunker=ChunkerParams(min_size=1024, avg_size=4096, max_size=16384),
        compression_level=7,
        pack_size=32 * 1024 * 1024,
    )

    assert RepositoryConfig.from_bytes(sealed_round_trip("config", config.to_bytes())) == config


def test_config_of_an_unknown_format_version_is_refused() -> None:
    newer = RepositoryConfig(version=99)

    with pytest.raises(IntegrityError, match="version"):
        RepositoryConfig.from_bytes(newer.to_bytes())


def test_index_segment_round_trips_and_locates_every_blob() -> None:
    data_blob, tree_blob = b"\x01" * 32, b"\x02" * 32
    segment = IndexSegment(
        packs=[
            PackInfo("aa" * 32, BlobType.DATA, 5000, [(data_blob, 0, 4000, 9000)]),
            PackInfo("bb" * 32, BlobType.TREE, 300, [(tree_blob, 0, 250, 600)]),
        ],
        supersedes=["cc" * 32],
    )

    loaded = IndexSegment.from_bytes(sealed_round_trip("index", segment.to_bytes()))

    assert loaded == segment
    index = Index()
    index.add_segment(loaded)
    assert index.lookup(data_blob) == ("aa" * 32, BlobType.DATA, 0, 4000, 9000)
    assert index.lookup(tree_blob).blob_type is BlobType.TREE
    with pytest.raises(IntegrityError):
        index.lookup(b"\x03" * 32)


def test_snapshot_round_trips_with_its_time_zone_and_summary() -> None:
    snapshot = Snapshot(
        time=datetime(
            2026, 1, 31, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
        ),
        host="host-1",
        paths=["/srv/data", "/etc"],
        tree=b"\x07" * 32,
        user="backup",
        tags=["daily", "db"],
        backup_type="full",
        parent="ab" * 32,
        base=None,
        program_version="bbackup 0.1.0",
        excludes=["*.tmp"],
        summary={"files_new": 3, "bytes_added": 12345, "duration_seconds": 1.5},
    )

    loaded = Snapshot.from_bytes(sealed_round_trip("snapshot", snapshot.to_bytes()), "ff" * 32)

    assert loaded == dataclasses.replace(snapshot, id="ff" * 32)
    assert loaded.time.utcoffset() == timedelta(hours=5, minutes=30)


def full_node(name: bytes) -> Node:
    return Node(
        name=name,
        type=FILE,
        mode=0o100640,
        uid=1000,
        gid=1000,
        user="alice",
        group="staff",
        mtime_ns=1_700_000_000_123_456_789,
        atime_ns=1_700_000_001_000_000_000,
        ctime_ns=1_700_000_002_000_000_001,
        size=42,
        inode=123456,
        device=2049,
        nlink=2,
        xattrs=[(b"user.a", b"\x00\xff")],
        content=[b"\x01" * 32, b"\x02" * 32],
    )


def test_tree_round_trips_names_that_are_not_utf8_and_every_field() -> None:
    tree = Tree(
        [
            full_node(b"caf\xe9"),
            Node(name=b"link", type=SYMLINK, mode=0o120777, link_target=b"../t\xff"),
            Node(name=b"dir", type=DIR, mode=0o42751, subtree=b"\x09" * 32),
        ]
    )

    loaded = Tree.from_bytes(sealed_round_trip("tree", tree.to_bytes()))

    assert sorted(loaded.nodes, key=lambda n: n.name) == sorted(tree.nodes, key=lambda n: n.name)


def test_tree_serialization_does_not_depend_on_entry_order() -> None:
    a, b, c = full_node(b"a"), full_node(b"b"), full_node(b"c")

    assert Tree([c, a, b]).to_bytes() == Tree([a, b, c]).to_bytes()


@pytest.mark.parametrize(
    ("parse", "garbage"),
    [
        (RepositoryConfig.from_bytes, b"\x93\x01\x02\x03"),
        (IndexSegment.from_bytes, b"\xc1"),
        (Tree.from_bytes, b"\x91\x05"),
        (lambda data: Snapshot.from_bytes(data, "id"), b"\x80"),
    ],
    ids=["config", "index", "tree", "snapshot"],
)
def test_malformed_documents_fail_with_integrity_error(
    parse: Callable[[bytes], object], garbage: bytes
) -> None:
    with pytest.raises(IntegrityError):
        parse(garbage)


def test_snapshot_times_in_utc_round_trip() -> None:
    when = datetime(2020, 2, 29, 23, 59, 59, tzinfo=UTC)
    snap = Snapshot(time=when, host="h", paths=["/p"], tree=b"\x00" * 32)

    assert Snapshot.from_bytes(snap.to_bytes()).time == when


#: A value other than its default for every optional Node field.
_FIELD_VALUES: dict[str, object] = {
    "mode": 0o100644, "uid": 7, "gid": 8, "user": "u", "group": "g", "mtime_ns": 1,
    "atime_ns": 2, "ctime_ns": 3, "size": 4, "inode": 5, "device": 6, "nlink": 3,
    "link_target": b"t", "rdev": 9, "xattrs": [(b"user.a", b"v")], "holes": [(0, 1)],
    "acl_names": [(2, 7, "u")], "content": [b"\x01" * 32], "subtree": b"\x02" * 32,
}  # fmt: skip


def _wire_by_rule(node: Node) -> dict[str, object]:
    """The stored form by its rule: name and type, then every field not at its default."""
    wire: dict[str, object] = {"n": node.name, "t": node.type}
    for name, short, default in WIRE_FIELDS:
        value = getattr(node, name)
        if value != default:
            wire[short] = value
    return wire


@pytest.mark.parametrize("field_name", [name for name, _, _ in WIRE_FIELDS])
def test_a_node_stores_each_field_only_when_it_is_not_its_default(field_name: str) -> None:
    # to_wire spells the rule out for speed; the stored bytes must follow the rule (and
    # its key order), or unchanged directories would stop deduplicating.
    alone = Node(name=b"n", type=FILE, **{field_name: _FIELD_VALUES[field_name]})  # type: ignore[arg-type]
    every = Node(name=b"n", type=FILE, **_FIELD_VALUES)  # type: ignore[arg-type]

    assert list(alone.to_wire().items()) == list(_wire_by_rule(alone).items())
    assert list(every.to_wire().items()) == list(_wire_by_rule(every).items())
    assert list(Node(name=b"n", type=FILE).to_wire()) == ["n", "t"]


def test_nodes_built_positionally_follow_the_class_fields() -> None:
    # from_wire and node_from_stat pass every field by position, for speed: a field added
    # or moved in the class must move there too, or fields would swap values silently.
    assert tuple(f.name for f in dataclasses.fields(Node)) == POSITIONAL_FIELDS


@pytest.mark.parametrize("field_name", [name for name, _, _ in WIRE_FIELDS])
def test_every_field_decodes_to_what_was_stored(field_name: str) -> None:
    alone = Node(name=b"n", type=FILE, **{field_name: _FIELD_VALUES[field_name]})  # type: ignore[arg-type]
    every = Node(name=b"n", type=FILE, **_FIELD_VALUES)  # type: ignore[arg-type]

    assert Tree.from_bytes(Tree([alone]).to_bytes()).nodes == [alone]
    assert Tree.from_bytes(Tree([every]).to_bytes()).nodes == [every]


def test_tree_bytes_are_those_of_earlier_versions() -> None:
    # Pinned from the generic encoder of 2026-12 (commit 1286131): a change here makes
    # every directory of the next backup a new tree blob.
    node = Node(
        name=b"caf\xe9", type=FILE, mode=0o100644, uid=1000, gid=100, user="u", group="g",
        mtime_ns=5, atime_ns=6, ctime_ns=7, size=9, inode=11, device=12, nlink=2, rdev=3,
        xattrs=[(b"user.a", b"\x00")], holes=[(0, 4096)], acl_names=[(2, 1000, "u")],
        content=[b"\x01" * 32],
    )  # fmt: skip
    directory = Node(name=b"d", type=DIR, subtree=b"\x09" * 32)

    assert Tree([node, directory]).to_bytes().hex() == (
        "92de0013a16ec404636166e9a174a466696c65a16dcd81a4a175cd03e8a16764a155a175a147a167a2"
        "6d7405a2617406a2637407a17309a1690ba1640ca16c02a17203a1789192c406757365722e61c40100"
        "a168919200cd1000a141919302cd03e8a175a16391c42001010101010101010101010101010101010101"
        "0101010101010101010101010183a16ec40164a174a3646972a154c420090909090909090909090909"
        "0909090909090909090909090909090909090909"
    )
