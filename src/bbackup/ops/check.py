"""Repository checks: structure always, pack contents with --read-data.

Structure: every index segment and snapshot document opens under its own name, every tree
a snapshot reaches loads, every blob it references is in the index, every pack the index
lists exists with the indexed size. Read-data: every
(or a sample of) pack is downloaded once, its SHA-256 name verified, its header compared
with the index and every blob decrypted and checked against its ID. Damage is reported by
object name; packs that no index lists (left by an interrupted backup) are only warnings.

Damaged packs found (missing, the wrong size, or failing --read-data) are written down
in a damage record (`repository.damage`), the one thing check writes: from then on no
backup on any host deduplicates against their damaged blobs, until `repair packs` has
dealt with them. Packs an earlier record names are reported until then too.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bbackup.errors import BbackupError, IntegrityError, NotFound, StorageError, UsageError
from bbackup.ops.damage_record import DamageNotRecorded, record_damage
from bbackup.ops.walk_gc import WalkCollection
from bbackup.report_format import human_bytes
from bbackup.repository import (
    BlobLoader,
    DamagedLocations,
    DamageRecord,
    DocumentStore,
    IndexEntry,
    PackedBlob,
    PackInfo,
    PackInventory,
    merge_locations,
    pack_object_name,
    verify_pack_id,
)
from bbackup.snapshot.model import DIR, FILE, Node
from bbackup.snapshot.store import SnapshotSource, load_tree, read_snapshots
from bbackup.storage import StorageProfile

#: Packs --read-data reads at once, each held whole until it is verified (16 MiB or more).
#: A local disk reads a pack in a fraction of the time verifying it takes, so one pack read
#: while another is verified (its blobs spread over the workers) keeps the workers busy;
#: more would only add memory. A remote store serves each download far more slowly, so
#: several overlap there.
LOCAL_PACKS_IN_FLIGHT = 2
REMOTE_PACKS_IN_FLIGHT = 4
#: The blobs of a pack are verified in batches of about this many bytes, so that every
#: worker has work while another hashes the whole pack.
BATCH_BYTES = 2 * 1024 * 1024
#: What to do about a damaged or missing pack.
REPAIR_PACKS_ADVICE = "run `bbackup repair packs`"


class CheckedRepository(PackInventory, BlobLoader, DocumentStore, Protocol):
    """What check reads: the stored packs and the index, blobs, and snapshot documents,
    and what kind of store holds them (how many packs to read at once)."""

    @property
    def profile(self) -> StorageProfile: ...


@dataclass(slots=True)
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    blobs_referenced: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    #: Storage requests of the whole run by kind (filled in by the caller that owns the stack).
    requests: dict[str, int] = field(default_factory=dict)
    #: Stored packs that no index lists: name → size (one summary line in `warnings`).
    unindexed_packs: dict[str, int] = field(default_factory=dict)
    #: Packs that earlier damage records name and `repair packs` has not dealt with yet.
    recorded_damage: list[str] = field(default_factory=list)
    #: The damage record this check stored (None: nothing new was found, or not stored).
    damage_record: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True, slots=True)
class ReadDataSubset:
    """Which packs to read: all, a fraction ("10%"), or group n of m ("2/5")."""

    fraction: float = 1.0
    group: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> ReadDataSubset:
        text = text.strip()
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", text):
            value = float(m.group(1))
            if not 0 < value <= 100:
                raise UsageError(f"--read-data-subset {text}: percentage must be in (0, 100]")
            return cls(fraction=value / 100)
        if m := re.fullmatch(r"(\d+)/(\d+)", text):
            n, total = int(m.group(1)), int(m.group(2))
            if not 1 <= n <= total:
                raise UsageError(f"--read-data-subset {text}: need 1 <= n <= m in n/m")
            return cls(group=(n, total))
        raise UsageError(f"--read-data-subset {text!r}: use a percentage (10%) or n/m (1/5)")

    def select(self, pack_ids: list[str]) -> list[str]:
        ordered = sorted(pack_ids)
        if self.group is not None:
            n, total = self.group
            return [p for p in ordered if int(p[:8], 16) % total == n - 1]
        if self.fraction >= 1.0:
            return ordered
        count = max(1, round(len(ordered) * self.fraction)) if ordered else 0
        return sorted(random.sample(ordered, count))


async def check_repository(
    repo: CheckedRepository,
    *,
    read_data: ReadDataSubset | None = None,
    workers: int = 2,
    connections: int | None = None,
    on_progress: Callable[[str], None] | None = None,
    before_reads: Callable[[list[str]], Awaitable[object]] | None = None,
) -> CheckReport:
    """Check the repository; `connections` packs at most are read (and held) at once.
    `before_reads` gets the names of the packs --read-data reads before any is read (to
    thaw archived ones)."""
    report = CheckReport()
    damaged: dict[str, frozenset[bytes]] = {}  # pack ID → blobs known damaged in it
    await _check_packs_exist(repo, report, damaged)
    await _check_snapshots(repo, report)
    read: set[str] = set()
    if read_data is not None:
        local = not repo.profile.remote
        packs_in_flight = connections or (
            LOCAL_PACKS_IN_FLIGHT if local else REMOTE_PACKS_IN_FLIGHT
        )
        await _read_packs(
            repo,
            report,
            read_data,
            workers,
            packs_in_flight,
            on_progress,
            damaged,
            read,
            before_reads,
        )
    _report_recorded_damage(repo, report, read, damaged)
    # Blobs that failed on the way too: in a tree pack the structure check read, and
    # those --read-data found (also named per pack in `damaged`, maybe with no blob).
    found = merge_locations([damaged, repo.found_damage()])
    await _record_damage(repo, report, found, "check --read-data" if read_data else "check")
    return report


def _report_recorded_damage(
    repo: CheckedRepository,
    report: CheckReport,
    read: set[str],
    damaged: dict[str, frozenset[bytes]],
) -> None:
    """One line for the packs earlier damage records name that are still indexed (a
    record of a pack that is gone has done its work) and that this run did not read
    (those it read are reported as they are now: damaged, or intact in a warning)."""
    for name, problem in repo.unreadable_damage_records.items():
        report.errors.append(f"{name}: {problem}; run `bbackup repair packs`")
    packs = repo.index.all_packs()
    recorded: dict[str, DamageRecord] = {}
    for record in repo.damage_records.values():
        for pack_id in record.packs:
            if pack_id in packs:
                recorded.setdefault(pack_id, record)
    report.recorded_damage = sorted(
        pack_object_name(packs[p].blob_type, p) for p in recorded if p not in read
    )
    if report.recorded_damage:
        first = recorded[min(recorded)]
        count = len(report.recorded_damage)
        report.errors.append(
            f"{count} pack{'s are' if count > 1 else ' is'} recorded as damaged "
            f"({_names(report.recorded_damage)}; found by {first.describe()}): backups "
            f"upload their damaged blobs again; {REPAIR_PACKS_ADVICE}"
        )
    intact = sorted(
        pack_object_name(packs[p].blob_type, p) for p in recorded if p in read and p not in damaged
    )
    if intact:
        report.warnings.append(
            f"{len(intact)} pack{'s' if len(intact) > 1 else ''} recorded as damaged read "
            f"intact now ({_names(intact)}); "
            "`bbackup repair packs` removes the record"
        )


def _names(names: list[str], shown: int = 5) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


async def _record_damage(
    repo: CheckedRepository, report: CheckReport, found: DamagedLocations, found_by: str
) -> None:
    """Store a damage record of what no record names yet, so that every host stops
    deduplicating against it. A store that refuses the write (a read-only credential) is
    one warning: check still reports the damage."""
    try:
        report.damage_record = await record_damage(repo, found, found_by)
    except DamageNotRecorded as exc:
        report.warnings.append(str(exc))


async def _check_packs_exist(
    inventory: PackInventory, report: CheckReport, damaged: dict[str, frozenset[bytes]]
) -> None:
    for name, problem in inventory.damaged_segments.items():
        report.errors.append(f"{name}: {problem}; run `bbackup repair index`")
    stored = {info.name: info.size for info in await inventory.list_packs()}
    packs = inventory.index.all_packs()
    report.packs = len(packs)
    indexed_names = set()
    for pack in packs.values():
        name = pack_object_name(pack.blob_type, pack.pack_id)
        indexed_names.add(name)
        if name not in stored:
            report.errors.append(
                f"{name}: pack is in the index but missing from the repository; "
                + REPAIR_PACKS_ADVICE
            )
        elif stored[name] != pack.size:
            report.errors.append(
                f"{name}: size {stored[name]} does not match the indexed size {pack.size}; "
                + REPAIR_PACKS_ADVICE
            )
        else:
            continue
        # None of its blobs can be trusted without reading it: none is deduplicated.
        damaged[pack.pack_id] = frozenset(blob[0] for blob in pack.blobs)
    unindexed = {name: stored[name] for name in sorted(set(stored) - indexed_names)}
    report.unindexed_packs = unindexed
    if unindexed:
        # One line however many: an interrupted backup leaves hundreds.
        why = (
            "a damaged index segment may list them; run `bbackup repair index`"
            if inventory.damaged_segments
            else "left by interrupted backups; the next backup adopts them, or prune "
            "removes them after the grace period"
        )
        report.warnings.append(
            f"{len(unindexed)} packs ({human_bytes(sum(unindexed.values()))}) are not in any "
            f"index: {why}"
        )


async def _check_snapshots(repo: SnapshotSource, report: CheckReport) -> None:
    snapshots, damaged = await read_snapshots(repo)
    report.errors.extend(f"{name}: {problem}" for name, problem in damaged.items())
    report.snapshots = len(snapshots)
    seen_trees: set[bytes] = set()
    referenced: set[bytes] = set()
    with WalkCollection() as collection:
        for snapshot in snapshots:
            stack = [(snapshot.tree, f"snapshot {snapshot.short_id}:/")]
            while stack:
                tree_id, where = stack.pop()
                if tree_id in seen_trees:
                    continue
                seen_trees.add(tree_id)
                if not repo.index.has(tree_id):
                    report.errors.append(
                        f"tree {tree_id.hex()} ({where}): not in the index; "
                        "run `bbackup repair snapshots`"
                    )
                    continue
                try:
                    tree = await load_tree(repo, tree_id)
                except (IntegrityError, StorageError) as exc:
                    report.errors.append(f"tree {tree_id.hex()} ({where}): {exc}")
                    continue
                collection.walked(len(tree.nodes))
                _check_nodes(repo, tree.nodes, where, stack, referenced, report)
    report.trees = len(seen_trees)
    report.blobs_referenced = len(referenced)


def _check_nodes(
    repo: SnapshotSource,
    nodes: list[Node],
    where: str,
    stack: list[tuple[bytes, str]],
    referenced: set[bytes],
    report: CheckReport,
) -> None:
    """Check one tree's nodes (in `where`): each directory has a subtree, which is queued
    on `stack`; each blob a file references, the first time, is in the index."""
    for node in nodes:
        if node.type == DIR:
            if node.subtree is None:
                report.errors.append(f"{_node_path(where, node)}: directory without a subtree")
            else:
                stack.append((node.subtree, _node_path(where, node)))
        elif node.type == FILE:
            for blob_id in node.content:
                if blob_id not in referenced:
                    referenced.add(blob_id)
                    if not repo.index.has(blob_id):
                        report.errors.append(
                            f"blob {blob_id.hex()} ({_node_path(where, node)}): not in the "
                            "index; run `bbackup repair snapshots`"
                        )


def _node_path(where: str, node: Node) -> str:
    # Made only where needed (a directory, an error): check visits every node.
    return where.rstrip("/") + "/" + node.display_name


async def _read_packs(
    repo: CheckedRepository,
    report: CheckReport,
    subset: ReadDataSubset,
    workers: int,
    packs_in_flight: int,
    on_progress: Callable[[str], None] | None,
    damaged: dict[str, frozenset[bytes]],
    read: set[str],
    before_reads: Callable[[list[str]], Awaitable[object]] | None = None,
) -> None:
    """Read and verify the packs `subset` selects; add each damaged one to `damaged`
    (its failed blobs come from `found_damage`) and each one read to `read`."""
    packs = repo.index.all_packs()
    selected = subset.select(list(packs))
    if before_reads is not None:
        await before_reads([pack_object_name(packs[p].blob_type, p) for p in selected])
    pending = iter(selected)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-check")

    async def reader() -> None:
        # Each reader holds one pack from its download until its last blob is verified,
        # so memory stays within packs_in_flight × pack size however slow verifying is.
        for pack_id in pending:  # shared: each pack goes to exactly one reader
            pack = packs[pack_id]
            name = pack_object_name(pack.blob_type, pack_id)
            try:
                data = await repo.read_pack(name)
            except NotFound:
                continue  # already reported by the structure check
            except BbackupError as exc:
                report.errors.append(f"{name}: cannot read: {exc}")
                continue
            report.bytes_read += len(data)
            problems = await _verify_pack(repo, pool, pack, data)
            del data
            # Each line says what heals it: repair packs keeps the pack's intact blobs and
            # drops the damaged ones, so the next backup uploads them again.
            report.errors.extend(f"{name}: {p}; {REPAIR_PACKS_ADVICE}" for p in problems)
            if problems:
                damaged.setdefault(pack_id, frozenset())
            read.add(pack_id)
            report.packs_read += 1
            if on_progress is not None:
                on_progress(name)

    try:
        await asyncio.gather(*(reader() for _ in range(max(1, packs_in_flight))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def _verify_pack(
    repo: CheckedRepository, pool: ThreadPoolExecutor, pack: PackInfo, data: bytes
) -> list[str]:
    """Everything wrong with one pack held in memory: its SHA-256 name, its header against
    the index, and every blob it holds. The blobs are verified in batches spread over the
    pool while the pack's hash runs, so one pack keeps every worker busy."""
    loop = asyncio.get_running_loop()
    shared = _SharedPack(data)
    try:
        hashed = loop.run_in_executor(pool, _pack_id_problems, pack.pack_id, shared)
        try:
            blobs = repo.parse_pack_header(data)
        except IntegrityError as exc:
            return [*await hashed, f"header: {exc}"]
        decoded = [
            loop.run_in_executor(pool, _blob_problems, repo, pack.pack_id, shared, batch)
            for batch in _batches(blobs, BATCH_BYTES)
        ]
        results = await asyncio.gather(hashed, *decoded)
    finally:
        shared.data = None
    problems = results[0] + compare_header_with_index(pack, blobs)
    for batch_problems in results[1:]:
        problems.extend(batch_problems)
    return problems


class _SharedPack:
    """The bytes of the pack being verified, as its jobs in the pool reach them.

    A pool thread keeps a job's arguments for a moment after the job has returned, so the
    bytes are dropped from here once the pack is verified; were they the arguments, the
    next pack could be read while a thread still kept this one alive.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data


def _pack_id_problems(pack_id: str, shared: _SharedPack) -> list[str]:
    data = shared.data
    if data is None:
        return []  # the check was abandoned
    try:
        verify_pack_id(pack_id, data)
    except IntegrityError as exc:
        return [str(exc).split(": ", 1)[-1]]
    return []


def _blob_problems(
    loader: BlobLoader, pack_id: str, shared: _SharedPack, blobs: list[PackedBlob]
) -> list[str]:
    data = shared.data
    if data is None:
        return []  # the check was abandoned
    view = memoryview(data)
    problems: list[str] = []
    for blob in blobs:
        entry = IndexEntry(pack_id, blob.blob_type, blob.offset, blob.length, blob.raw_length)
        try:
            loader.decode_blob(blob.blob_id, entry, view[blob.offset : blob.offset + blob.length])
        except IntegrityError as exc:
            problems.append(str(exc))
    return problems


def _batches(blobs: list[PackedBlob], batch_bytes: int) -> Iterator[list[PackedBlob]]:
    batch: list[PackedBlob] = []
    size = 0
    for blob in blobs:
        batch.append(blob)
        size += blob.length
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def compare_header_with_index(pack: PackInfo, header: list[PackedBlob]) -> list[str]:
    """Where a pack's header and the index disagree about the blobs the pack holds."""
    indexed = {blob_id: (offset, length, raw) for blob_id, offset, length, raw in pack.blobs}
    problems: list[str] = []
    for blob in header:
        short = blob.blob_id.hex()[:16]
        where = indexed.pop(blob.blob_id, None)
        if where is None:
            problems.append(f"blob {short} is in the pack but not in the index")
        elif blob.blob_type != pack.blob_type:
            problems.append(
                f"blob {short} is a {blob.blob_type.name.lower()} blob in a "
                f"{pack.blob_type.name.lower()} pack"
            )
        elif where != (blob.offset, blob.length, blob.raw_length):
            problems.append(f"blob {short}: the index and the pack header place it differently")
    problems.extend(
        f"blob {blob_id.hex()[:16]} is in the index but not in the pack" for blob_id in indexed
    )
    return problems
