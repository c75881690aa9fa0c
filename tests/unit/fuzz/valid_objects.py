"""Hypothesis strategies for valid repository objects (trees, snapshots, index segments,
config, locks, pack headers, key files, damage records), the starting points the fuzz
tests damage."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from bbackup.chunking import ChunkerParams
from bbackup.crypto.aead import BlobType
from bbackup.crypto.kdf import Argon2idParams, ScryptParams
from bbackup.crypto.keys import MasterKey
from bbackup.repository import DamageRecord, IndexSegment, PackInfo, RepositoryConfig
from bbackup.snapshot.model import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Node,
    Snapshot,
    Tree,
)

#: A fixed master key, so a derandomized run is the same run every time.
MASTER = MasterKey(b"\x11" * 32, b"\x22" * 32, 0x5EED)
#: The cheapest key derivations bbackup reads, so that fuzzing key files stays fast.
CHEAP_KDFS = [Argon2idParams(t=1, m=32, p=4), ScryptParams(n=2**4, r=8, p=1)]

blob_ids = st.binary(min_size=32, max_size=32)
hex_ids = blob_ids.map(bytes.hex)
names = st.binary(min_size=1, max_size=24).filter(
    lambda n: b"/" not in n and n not in (b".", b"..")
)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ns_times = st.integers(-(2**63), 2**63 - 1)
short_text = st.text(max_size=6)

nodes = st.builds(
    Node,
    name=names,
    type=st.sampled_from([FILE, DIR, SYMLINK, CHARDEV, BLOCKDEV, FIFO, SOCKET]),
    mode=u32,
    uid=u32,
    gid=u32,
    user=short_text,
    group=short_text,
    mtime_ns=ns_times,
    atime_ns=ns_times,
    ctime_ns=ns_times,
    size=u64,
    inode=u64,
    device=u64,
    nlink=u32,
    link_target=st.binary(max_size=24),
    rdev=u64,
    xattrs=st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=2),
    content=st.lists(blob_ids, max_size=3),
    subtree=st.none() | blob_ids,
)

trees = st.lists(nodes, max_size=3, unique_by=lambda n: n.name).map(Tree)

aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)

snapshots = st.builds(
    Snapshot,
    time=aware_times,
    host=short_text,
    paths=st.lists(short_text, min_size=1, max_size=3),
    tree=blob_ids,
    user=short_text,
    tags=st.lists(short_text, max_size=3),
    backup_type=st.sampled_from(["full", "incremental", "differential"]),
    parent=st.none() | hex_ids,
    base=st.none() | hex_ids,
    program_version=short_text,
    excludes=st.lists(short_text, max_size=2),
    summary=st.dictionaries(
        short_text,
        st.one_of(st.integers(0, 2**40), st.floats(0, 1e6), st.none(), short_text),
        max_size=4,
    ),
)

blob_rows = st.tuples(blob_ids, u64, u64, u64)
pack_infos = st.builds(
    PackInfo,
    pack_id=hex_ids,
    blob_type=st.sampled_from(BlobType),
    size=u64,
    blobs=st.lists(blob_rows, max_size=3),
)


@st.composite
def index_segments(draw: st.DrawFn) -> IndexSegment:
    packs = draw(st.lists(pack_infos, max_size=2, unique_by=lambda p: p.pack_id))
    marked = {p.pack_id: draw(st.floats(0, 4e9)) for p in packs if draw(st.booleans())}
    return IndexSegment(packs, draw(st.lists(hex_ids, max_size=2)), marked)


@st.composite
def configs(draw: st.DrawFn) -> RepositoryConfig:
    avg = draw(st.sampled_from([64 * 1024, 1 << 20, 4 << 20]))
    return RepositoryConfig(
        repository_id=draw(hex_ids),
        chunker=ChunkerParams(min_size=avg // 2, avg_size=avg, max_size=avg * 8),
        compression_level=draw(st.integers(0, 19)),
        pack_size=draw(st.sampled_from([4 << 20, 16 << 20, 128 << 20])),
    )


def lock_payload(**fields: Any) -> dict[str, Any]:
    """A lock document as `RepositoryLock` writes it."""
    now = time.time()
    return {
        "host": "host-1",
        "pid": os.getpid(),
        "user": "backup",
        "time": now,
        "exclusive": False,
        "purpose": "backup",
        "started": now - 5,
    } | fields


lock_payloads = st.builds(
    lock_payload,
    host=short_text,
    pid=st.integers(1, 2**22),
    user=short_text,
    time=st.floats(0, 4e9),
    exclusive=st.booleans(),
    purpose=short_text,
)

#: Pack headers: (type, ID, offset, sealed length, raw length) of each blob, as packed.
pack_header_rows = st.lists(
    st.tuples(st.sampled_from([0, 1]), blob_ids, u32, st.integers(28, 4096), u32), max_size=5
)

damage_records = st.builds(
    DamageRecord,
    packs=st.dictionaries(hex_ids, st.frozensets(blob_ids, max_size=3), min_size=1, max_size=3),
    time=st.floats(0, 4e9),
    host=short_text,
    found_by=st.sampled_from(["check", "check --read-data", "restore"]),
)
