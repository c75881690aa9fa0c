"""Prune: reclaim the space of packs no snapshot uses, safely beside running backups.

Execution order makes every crash point leave a repository that `check` accepts:
1. repack: copy the used blobs of mostly-unused packs into new packs through the
   repository's blob saver, as a backup does (so with their own index segment); the old
   packs are still listed, so nothing is missing meanwhile;
2. write one new index segment that lists every live and marked pack and supersedes
   every segment this run read;
3. delete the superseded segments;
4. delete the packs planned for deletion (they are in no index any more; a crash here
   leaves unindexed packs, which the next prune deletes).
Prune holds a shared lock, so backups keep running; two prunes exclude each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError, RepositoryLocked
from bbackup.ops.damage_record import remove_settled_records
from bbackup.ops.prune_plan import (
    DELETE,
    DROP,
    IN_USE,
    KEEP,
    KEEP_MARKED,
    MARK,
    REPACK,
    UNMARK,
    PackState,
    PruneInput,
    PrunePlan,
    plan_prune,
)
from bbackup.ops.prune_versions import VersionedDeletions, delete_versioned, foresee_versioned
from bbackup.ops.walk_gc import WalkCollection
from bbackup.report_format import human_bytes, human_duration, utc_minute
from bbackup.repository import (
    BlobLoader,
    BlobSaverSource,
    DamageRecord,
    DocumentStore,
    IndexSegment,
    PackInfo,
    PackInventory,
    PreparedBlob,
    RepositoryLock,
    pack_object_name,
    require_intact_index,
)
from bbackup.snapshot.model import DIR, FILE
from bbackup.snapshot.store import SnapshotSource, load_tree, read_snapshots
from bbackup.storage import ObjectInfo, VersionedStore


class PrunedRepository(PackInventory, BlobLoader, BlobSaverSource, DocumentStore, Protocol):
    """What prune needs: the stored packs and the index, blobs to verify and copy, a blob
    saver for the copies, the snapshot and lock documents, and the damage records."""

    @property
    def damage_records(self) -> dict[str, DamageRecord]: ...


@dataclass(slots=True)
class PruneOptions:
    dry_run: bool = False
    grace_seconds: float = 24 * 3600.0
    max_unused: float = 0.05
    connections: int = 4
    #: The bucket's versions, when it keeps them (an object-locked repository): deletes
    #: then only hide packs, and prune says when their space is really freed.
    versions: VersionedStore | None = None


@dataclass(slots=True)
class PruneReport:
    dry_run: bool = False
    packs: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_reclaimed: int = 0
    bytes_repacked_written: int = 0
    early_delete_charge_usd: float = 0.0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    duration_seconds: float = 0.0
    #: Space a later prune reclaims (marked or kept for the grace period), and when.
    pending: dict[str, Any] = field(default_factory=dict)
    #: On a versioned bucket: what the deletions left as noncurrent versions, and when
    #: that space is freed (`ops.prune_versions`).
    versioned: VersionedDeletions | None = None
    #: Damage records deleted because every pack they name is gone.
    damage_records_removed: list[str] = field(default_factory=list)

    def pending_line(self) -> str | None:
        """One line saying how much a later prune deletes and from when; None if nothing."""
        p = self.pending
        if not p.get("packs"):
            return None
        line = (
            f"{human_bytes(p['bytes'])} in {p['packs']} pack{'s' if p['packs'] != 1 else ''} "
            "will be deleted by a prune after "
            f"{utc_minute(p['deletable_after'])}"
        )
        if p["all_deletable_after"] > p["deletable_after"] + 60:
            line += f" (all of it after {utc_minute(p['all_deletable_after'])})"
        line += f" (grace {human_duration(p['grace_seconds'])})"
        if p.get("waiting_for_locks"):
            line += (
                f"; {p['waiting_for_locks']} of them only once the commands holding locks "
                "now (backups) have finished"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "packs": self.packs,
            "bytes_reclaimed": self.bytes_reclaimed,
            "bytes_repacked_written": self.bytes_repacked_written,
            "early_delete_charge_usd": self.early_delete_charge_usd,
            "decisions": self.decisions,
            "duration_seconds": self.duration_seconds,
            "pending": self.pending,
            "versioned": self.versioned.to_dict() if self.versioned else None,
            "damage_records_removed": self.damage_records_removed,
        }


async def used_blobs(repo: SnapshotSource) -> set[bytes]:
    """Every blob (trees and contents) that some snapshot reaches; IntegrityError if a
    snapshot document is damaged, since what it reaches cannot be known."""
    used: set[bytes] = set()
    snapshots, damaged = await read_snapshots(repo)
    if damaged:
        name, problem = next(iter(damaged.items()))
        raise IntegrityError(
            f"{name}: {problem}: prune cannot tell which data that snapshot uses; "
            "prune did nothing (remove the damaged snapshot document first)"
        )
    with WalkCollection() as collection:
        for snapshot in snapshots:
            stack = [snapshot.tree]
            while stack:
                tree_id = stack.pop()
                if tree_id in used:
                    continue
                used.add(tree_id)
                nodes = (await load_tree(repo, tree_id)).nodes
                collection.walked(len(nodes))
                for node in nodes:
                    if node.type == DIR and node.subtree is not None:
                        stack.append(node.subtree)
                    elif node.type == FILE:
                        used.update(node.content)
    return used


async def _stored_packs(packs: PackInventory) -> dict[str, ObjectInfo]:
    return {info.name.rsplit("/", 1)[-1]: info for info in await packs.list_packs()}


async def _oldest_other_lock(own: RepositoryLock) -> float | None:
    starts = []
    for lock in await own.other_locks():
        if lock.stale:
            continue
        if lock.purpose == "prune":
            raise RepositoryLocked(f"another prune is running: {lock.describe()}")
        starts.append(lock.started)
    return min(starts, default=None)


async def gather_input(
    repo: PrunedRepository,
    options: PruneOptions,
    *,
    now: float,
    oldest_other_lock: float | None,
    delete_unused_at_once: bool,
    fence: float | None = None,
) -> tuple[PruneInput, dict[str, ObjectInfo]]:
    """Read snapshots, index (already loaded) and stored packs, all after the locks."""
    used = await used_blobs(repo)
    stored = await _stored_packs(repo)
    index = repo.index
    used_home = {}
    for blob_id in used:
        if index.has(blob_id):
            used_home[blob_id] = index.lookup(blob_id).pack_id
    states = []
    all_packs = index.all_packs()
    for pack_id, pack in all_packs.items():
        info = stored.get(pack_id)
        states.append(
            PackState(
                pack_id,
                pack.size,
                tuple((b[0], b[2]) for b in pack.blobs),
                indexed=True,
                stored=info is not None,
                marked_at=index.marked.get(pack_id),
                storage_class=info.storage_class if info else "STANDARD",
                mtime=info.mtime if info else 0.0,
            )
        )
    for pack_id, info in stored.items():
        if pack_id not in all_packs:
            states.append(
                PackState(
                    pack_id,
                    info.size,
                    indexed=False,
                    storage_class=info.storage_class,
                    mtime=info.mtime,
                )
            )
    inp = PruneInput(
        tuple(states),
        used_home,
        now=now,
        grace=options.grace_seconds,
        max_unused=options.max_unused,
        oldest_other_lock=oldest_other_lock,
        delete_unused_at_once=delete_unused_at_once,
        fence=fence,
    )
    return inp, stored


async def prune(
    repo: PrunedRepository,
    options: PruneOptions,
    *,
    on_step: Callable[[str], None] | None = None,
) -> PruneReport:
    started = time.monotonic()
    step = on_step or (lambda _msg: None)
    async with RepositoryLock(repo, exclusive=False, purpose="prune") as lock:
        report = await _prune_pass(repo, options, lock, step)
        if (
            not options.dry_run
            and options.grace_seconds <= 0
            and (report.packs.get(MARK) or report.packs.get(REPACK))
        ):
            # Grace 0: what the first pass marked goes now, after a fresh look at locks
            # and snapshots; a backup that read the index before the marks holds a lock
            # that started before them, or has committed a snapshot that uses them again.
            step("deleting what was just marked")
            report = _combine(report, await _prune_pass(repo, options, lock, step))
    report.duration_seconds = round(time.monotonic() - started, 3)
    return report


async def _prune_pass(
    repo: PrunedRepository, options: PruneOptions, lock: RepositoryLock, step: Callable[[str], None]
) -> PruneReport:
    # Locks first: a process whose lock we do not see took it after our lock was stored,
    # so it reads the index after this moment and stores its packs after our lock.
    assert lock.name is not None
    fence = await repo.document_mtime(lock.name)
    now = time.time()
    oldest_other_lock = await _oldest_other_lock(lock)
    await repo.load_index()
    # The packs only it lists would look unindexed, and unindexed packs are deleted.
    require_intact_index(repo.damaged_segments, "prune")
    inp, stored = await gather_input(
        repo,
        options,
        now=now,
        oldest_other_lock=oldest_other_lock,
        delete_unused_at_once=options.dry_run,
        fence=fence,
    )
    plan = plan_prune(inp)
    report = _report(plan, options.dry_run)
    report.pending = pending_deletions(plan, inp)
    if plan.missing_used:
        raise IntegrityError(
            f"{len(plan.missing_used)} packs that snapshots use are missing "
            f"(e.g. {plan.missing_used[0]}): run `bbackup check`; prune did nothing"
        )
    if options.dry_run:
        if options.versions is not None:
            planned = [stored[d.pack_id] for d in plan.by_action(DELETE) if d.pack_id in stored]
            report.versioned = await foresee_versioned(
                options.versions, repo.config.object_lock, planned
            )
        return report
    await _require_delete_permission(repo)
    repack_ids = [d.pack_id for d in plan.by_action(REPACK)]
    if repack_ids:
        step(f"repacking {len(repack_ids)} packs")
        report.bytes_repacked_written = await _repack(repo, repack_ids, inp, options)
    step("writing the new index")
    await _rewrite_index(repo, plan, repack_ids)
    deletions = plan.by_action(DELETE)
    step(f"deleting {len(deletions)} packs")
    sem = asyncio.Semaphore(max(1, options.connections))
    versions = options.versions
    if versions is not None:
        report.versioned = VersionedDeletions(
            repo.config.object_lock, await versions.noncurrent_days()
        )

    async def delete(pack_id: str) -> None:
        info = stored[pack_id]
        async with sem:
            if versions is None or report.versioned is None:
                await repo.delete_pack(info.name)
            else:
                await delete_versioned(versions, report.versioned, info, repo.delete_pack)

    await asyncio.gather(*(delete(d.pack_id) for d in deletions))
    gone = {d.pack_id for d in deletions}
    report.damage_records_removed = await _remove_moot_damage_records(repo, gone, stored)
    return report


async def _remove_moot_damage_records(
    repo: PrunedRepository, gone: set[str], stored: Mapping[str, ObjectInfo]
) -> list[str]:
    """Delete the damage records all of whose packs are gone: deleted now, or missing
    from the listing this pass took after loading the records. A damaged pack that was
    repacked stays (marked) until its grace period ends, and so does its record."""
    return await remove_settled_records(
        repo, repo.damage_records, lambda pack: pack in gone or pack not in stored
    )


#: A document name nothing can have (names are SHA-256 of the stored bytes), under a
#: directory no crash test counts deletions in.
_DELETE_PROBE = "snapshots/" + "0" * 64


async def _require_delete_permission(repo: DocumentStore) -> None:
    """Fail before prune changes anything if the credential may not delete (a backup-only
    one, infra/policies/backup.json): otherwise its new index segment would already be
    stored when the first deletion is refused. Deleting a missing object is allowed and
    changes nothing (on a versioned bucket it leaves a delete marker, invisible to
    listings)."""
    await repo.delete_document(_DELETE_PROBE)


def _combine(first: PruneReport, second: PruneReport) -> PruneReport:
    """One report for a grace-0 run: the first pass's decisions, overridden by what the
    second pass did with the packs the first one marked (a repack stays a repack)."""
    decisions = {d["pack"]: d for d in first.decisions}
    for d in second.decisions:
        if decisions.get(d["pack"], {}).get("action") != REPACK:
            decisions[d["pack"]] = d
    merged = PruneReport(dry_run=False, decisions=list(decisions.values()))
    if KEEP in second.packs:
        merged.packs[KEEP] = dict(second.packs[KEEP])
    for d in merged.decisions:
        totals = merged.packs.setdefault(d["action"], {"packs": 0, "bytes": 0})
        totals["packs"] += 1
        totals["bytes"] += d["size"]
    merged.pending = second.pending
    merged.versioned = first.versioned or second.versioned
    if first.versioned is not None and second.versioned is not None:
        first.versioned.add(second.versioned)
    merged.bytes_reclaimed = first.bytes_reclaimed + second.bytes_reclaimed
    merged.damage_records_removed = first.damage_records_removed + second.damage_records_removed
    merged.bytes_repacked_written = first.bytes_repacked_written
    merged.early_delete_charge_usd = round(
        sum(d["early_delete_charge_usd"] for d in merged.decisions), 6
    )
    return merged


def pending_deletions(plan: PrunePlan, inp: PruneInput) -> dict[str, Any]:
    """The packs a later prune deletes if nothing uses them meanwhile: marked now, kept
    marked, or unindexed and kept; with the earliest and latest moment each becomes
    deletable (its mark or its store time plus the grace period)."""
    states = {p.pack_id: p for p in inp.packs}
    times: list[float] = []
    size = waiting = 0
    for d in plan.decisions:
        state = states[d.pack_id]
        if d.action in (MARK, REPACK):
            when = inp.now + inp.grace
        elif d.action == KEEP_MARKED and state.marked_at is not None:
            when = state.marked_at + inp.grace
        elif d.action == KEEP and not state.indexed:
            when = state.mtime + inp.grace
        else:
            continue
        if when <= inp.now:  # kept only because a lock holder may still need it
            waiting += 1
        times.append(max(when, inp.now))
        size += d.size
    if not times:
        return {}
    return {
        "packs": len(times),
        "bytes": size,
        "deletable_after": min(times),
        "all_deletable_after": max(times),
        "grace_seconds": inp.grace,
        "waiting_for_locks": waiting,
    }


def _report(plan: PrunePlan, dry_run: bool) -> PruneReport:
    report = PruneReport(dry_run=dry_run, packs=plan.totals())
    report.bytes_reclaimed = sum(d.size for d in plan.by_action(DELETE, DROP))
    report.early_delete_charge_usd = plan.early_delete_charge
    report.decisions = [
        {
            "pack": d.pack_id,
            "action": d.action,
            "reason": d.reason,
            "size": d.size,
            "used_bytes": d.used_bytes,
            "storage_class": d.storage_class,
            "early_delete_charge_usd": round(d.early_delete_charge, 6),
        }
        for d in plan.decisions
        if d.action != KEEP or d.reason != IN_USE  # say why a pack was not repacked
    ]
    return report


async def _repack(
    repo: PrunedRepository, pack_ids: list[str], inp: PruneInput, options: PruneOptions
) -> int:
    """Copy the used blobs of `pack_ids` into new packs; return bytes written.

    The copies go through the repository's blob saver, as a backup's blobs do: each new
    pack joins the index once stored, and `flush` stores their index segment. Blobs are
    handed over sealed, so nothing is deduplicated against the packs being emptied."""
    writer = repo.new_writer(upload_slots=max(1, options.connections))
    packs = repo.index.all_packs()
    for pack_id in pack_ids:
        pack = packs[pack_id]
        data = await repo.read_pack(pack_object_name(pack.blob_type, pack_id))
        view = memoryview(data)
        for blob_id, offset, length, raw_length in pack.blobs:
            if inp.used_home.get(blob_id) != pack_id:
                continue
            entry = repo.index.lookup(blob_id)
            if entry.pack_id != pack_id:
                entry = entry._replace(pack_id=pack_id, offset=offset, length=length)
            sealed = bytes(view[offset : offset + length])
            # Verify before copying: repacking must never spread damage.
            repo.decode_blob(blob_id, entry, sealed)
            await writer.add(
                PreparedBlob(BlobType(pack.blob_type), blob_id, sealed, raw_length, sealed=True)
            )
    await writer.flush()
    # The copies are live from now on (in the index and in their own segment); the old
    # packs will be marked by the new index.
    return writer.stats.bytes_stored


async def _rewrite_index(repo: PackInventory, plan: PrunePlan, repacked: list[str]) -> None:
    """Write one segment with every live and marked pack; supersede every segment we read.

    Packs planned for deletion are left out; `repacked` packs are listed as marked.
    """
    packs = repo.index.all_packs()
    keep_live = {d.pack_id for d in plan.by_action(KEEP, UNMARK) if d.pack_id in packs}
    still_marked = {d.pack_id: repo.index.marked[d.pack_id] for d in plan.by_action(KEEP_MARKED)}
    # Stamped now, just before the segment is stored: a backup whose lock starts later
    # reads an index in which these packs are marked, so it never deduplicates against them.
    now = time.time()
    newly_marked = {d.pack_id: now for d in plan.by_action(MARK)}
    newly_marked.update({pack_id: now for pack_id in repacked})
    marked = {**still_marked, **newly_marked}
    listed: list[PackInfo] = [packs[p] for p in sorted(keep_live | set(marked))]
    # Packs written by this run's repack live in their own segment, which is not superseded.
    # Segments that were already superseded are superseded again: if a crash left them
    # behind, dropping the segment that superseded them must not bring them back.
    old_segments = repo.index_segments + repo.superseded_segments
    superseded = [name.rsplit("/", 1)[-1] for name in old_segments]
    await repo.write_superseding_segment(IndexSegment(listed, superseded, marked))
