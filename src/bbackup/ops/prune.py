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

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError, RepositoryLocked
from bbackup.ops.damage_record import remove_settled_records
from bbackup.ops.prune_input import PrunedRepository, PruneOptions, gather_input
from bbackup.ops.prune_plan import (
    DELETE,
    KEEP,
    KEEP_MARKED,
    MARK,
    REPACK,
    UNMARK,
    PruneInput,
    PrunePlan,
    plan_prune,
)
from bbackup.ops.prune_report import PruneReport, _combine, _report, pending_deletions
from bbackup.ops.prune_versions import VersionedDeletions, delete_versioned, foresee_versioned
from bbackup.repository import (
    DocumentStore,
    IndexSegment,
    PackInfo,
    PackInventory,
    PreparedBlob,
    RepositoryLock,
    pack_object_name,
    require_intact_index,
)
from bbackup.storage import ObjectInfo


async def _oldest_other_lock(own: RepositoryLock) -> float | None:
    starts = []
    for lock in await own.other_locks():
        if lock.stale:
            continue
        if lock.purpose == "prune":
            raise RepositoryLocked(f"another prune is running: {lock.describe()}")
        starts.append(lock.started)
    return min(starts, default=None)


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
