"""Drill records: small encrypted documents under drills/ that say which data packs a
restore drill proved restorable and when, so that every host's next drill prefers the
packs proven least recently, and every host can say how much of the repository has been
proven. docs/format.md ("Drill records") describes the bytes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from bbackup.crypto.aead import BlobType
from bbackup.errors import BbackupError, IntegrityError, NotFound
from bbackup.repository import DocumentStore, Index

DRILL_KIND = "drill"
DRILL_PREFIX = "drills/"
#: A drill that finds more records than this writes one that carries all their proofs and
#: supersedes them (deleting them where the credential allows), so a weekly drill reads
#: a handful of small documents however many years it has run.
MERGE_ABOVE = 16
#: Failed paths a record keeps (the drill's report lists them all).
_FAILED_KEPT = 100


@dataclass(frozen=True, slots=True)
class DrillRecord:
    """What one drill proved: pack ID → when it was last proven (a merged record carries
    the proofs of the records it supersedes), and how the drill went."""

    proven: dict[str, float]
    time: float = field(default_factory=time.time)
    host: str = field(default_factory=socket.gethostname)
    snapshot_id: str = ""
    ok: bool = True
    files: int = 0
    bytes_verified: int = 0
    failed: tuple[str, ...] = ()
    supersedes: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "version": 1,
                "time": self.time,
                "host": self.host,
                "snapshot": self.snapshot_id,
                "ok": self.ok,
                "files": self.files,
                "bytes": self.bytes_verified,
                "failed": list(self.failed[:_FAILED_KEPT]),
                "proven": {bytes.fromhex(p): int(t) for p, t in sorted(self.proven.items())},
                "supersedes": list(self.supersedes),
            }
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> DrillRecord:
        try:
            raw = msgpack.unpackb(data, max_bin_len=32, strict_map_key=False)
            if type(raw) is not dict or raw.get("version") != 1:
                raise ValueError("a drill record is a map of version 1")
            proven = raw["proven"]
            if type(proven) is not dict or not all(
                type(k) is bytes and len(k) == 32 and type(v) is int for k, v in proven.items()
            ):
                raise ValueError("a drill record's proofs map 32-byte pack IDs to seconds")
            failed, supersedes = raw["failed"], raw["supersedes"]
            texts = [raw["host"], raw["snapshot"], *failed, *supersedes]
            if not all(type(t) is str for t in texts):
                raise TypeError("a drill record's names are text")
            numbers = (raw["time"], raw["files"], raw["bytes"])
            if not all(type(n) in (int, float) for n in numbers) or type(raw["ok"]) is not bool:
                raise TypeError("a drill record's counts are numbers")
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise IntegrityError("drill record is malformed") from exc
        return cls(
            {k.hex(): float(v) for k, v in proven.items()},
            float(raw["time"]),
            raw["host"],
            raw["snapshot"],
            raw["ok"],
            int(raw["files"]),
            int(raw["bytes"]),
            tuple(failed),
            tuple(supersedes),
        )


@dataclass(slots=True)
class Coverage:
    """How much of the repository's data drills have proven restorable."""

    #: Data packs in the index that a drill proved, with when (the latest proof of each).
    proven: dict[str, float]
    packs_total: int
    bytes_total: int
    bytes_proven: int
    #: The newest drill record (None before the first drill) and the newest passed one.
    last_drill: DrillRecord | None = None
    last_passed: float | None = None

    @property
    def packs_proven(self) -> int:
        return len(self.proven)

    @property
    def fraction(self) -> float:
        """Of the data packs, by stored bytes (1.0 for a repository without data)."""
        return self.bytes_proven / self.bytes_total if self.bytes_total else 1.0

    def to_dict(self) -> dict[str, Any]:
        oldest = min(self.proven.values(), default=None)
        return {
            "packs_total": self.packs_total,
            "packs_proven": self.packs_proven,
            "bytes_total": self.bytes_total,
            "bytes_proven": self.bytes_proven,
            "fraction": round(self.fraction, 4),
            "oldest_proof": _iso(oldest),
            "last_drill": _iso(self.last_drill.time if self.last_drill else None),
            "last_drill_ok": self.last_drill.ok if self.last_drill else None,
            "last_passed_drill": _iso(self.last_passed),
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def load_drill_records(store: DocumentStore) -> dict[str, DrillRecord]:
    """Every readable drill record not superseded by another; a damaged one is named (by
    the store) and skipped: it costs only the proofs it held."""
    records: dict[str, DrillRecord] = {}
    for name in await store.list_names(DRILL_PREFIX):
        try:
            records[name] = DrillRecord.from_bytes(await store.load_document(name, DRILL_KIND))
        except NotFound:
            continue  # merged away since it was listed
        except IntegrityError as exc:
            store.note_damage(name, f"damaged ({exc})")
    superseded = {old for record in records.values() for old in record.supersedes}
    return {n: r for n, r in records.items() if n.removeprefix(DRILL_PREFIX) not in superseded}


def data_pack_sizes(index: Index) -> dict[str, int]:
    """Every data pack the index lists, with its size: what coverage is measured against."""
    return {
        p: info.size for p, info in index.all_packs().items() if info.blob_type == BlobType.DATA
    }


def coverage_of(records: Mapping[str, DrillRecord], data_packs: Mapping[str, int]) -> Coverage:
    """The proofs of `records` for the packs that still exist."""
    proven: dict[str, float] = {}
    for record in records.values():
        for pack, when in record.proven.items():
            if pack in data_packs and when > proven.get(pack, -1.0):
                proven[pack] = when
    newest = max(records.values(), key=lambda r: r.time, default=None)
    passed = [r.time for r in records.values() if r.ok]
    return Coverage(
        proven,
        packs_total=len(data_packs),
        bytes_total=sum(data_packs.values()),
        bytes_proven=sum(data_packs[p] for p in proven),
        last_drill=newest,
        last_passed=max(passed, default=None),
    )


async def save_drill_record(
    store: DocumentStore,
    record: DrillRecord,
    existing: Mapping[str, DrillRecord],
    data_packs: Mapping[str, int],
) -> str:
    """Store `record`; past MERGE_ABOVE existing records it also carries their proofs (of
    packs that still exist) and supersedes them, and they are deleted where the credential
    allows (a backup-only one does not: readers skip superseded records)."""
    if len(existing) < MERGE_ABOVE:
        return await store.save_document(DRILL_PREFIX.rstrip("/"), DRILL_KIND, record.to_bytes())
    merged = coverage_of({**existing, "": record}, data_packs).proven
    record = DrillRecord(
        merged,
        record.time,
        record.host,
        record.snapshot_id,
        record.ok,
        record.files,
        record.bytes_verified,
        record.failed,
        tuple(sorted(n.removeprefix(DRILL_PREFIX) for n in existing)),
    )
    name = await store.save_document(DRILL_PREFIX.rstrip("/"), DRILL_KIND, record.to_bytes())
    for old in existing:
        try:
            await store.delete_document(old)
        except BbackupError:
            break  # no delete permission: the superseded records are skipped when read
    return name
