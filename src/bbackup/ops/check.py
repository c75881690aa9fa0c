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

from collections.abc import Awaitable, Callable

from bbackup.ops.check_read_data import CheckedRepository, ReadDataSubset, _read_packs
from bbackup.ops.check_report import REPAIR_PACKS_ADVICE, CheckReport
from bbackup.ops.check_structure import _check_packs_exist, _check_snapshots
from bbackup.ops.damage_record import DamageNotRecorded, record_damage
from bbackup.repository import DamagedLocations, DamageRecord, merge_locations, pack_object_name

#: Packs --read-data reads at once, each held whole until it is verified (16 MiB or more).
#: A local disk reads a pack in a fraction of the time verifying it takes, so one pack read
#: while another is verified (its blobs spread over the workers) keeps the workers busy;
#: more would only add memory. A remote store serves each download far more slowly, so
#: several overlap there.
LOCAL_PACKS_IN_FLIGHT = 2
REMOTE_PACKS_IN_FLIGHT = 4


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
