"""Writing damage records: what a check or a restore found damaged is stored once, in a
record (`repository.damage`) every host reads with the index, so that no backup
deduplicates against it until `repair packs` has dealt with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

from bbackup.errors import BbackupError
from bbackup.repository import (
    DamagedLocations,
    DamageRecord,
    Index,
    merge_locations,
    not_yet_recorded,
    pack_object_name,
)

#: What a reader of a damage record should do next.
REPAIR_ADVICE = "run `bbackup repair packs`"


class DamageLedger(Protocol):
    """The damage records as loaded with the index, and where new ones are stored."""

    @property
    def damage_records(self) -> dict[str, DamageRecord]: ...

    async def save_damage_record(self, record: DamageRecord) -> str: ...

    def found_damage(self) -> DamagedLocations: ...

    @property
    def index(self) -> Index: ...


class DamageNotRecorded(BbackupError):
    """The store refused the damage record (a read-only credential, a full disk)."""


async def record_damage(ledger: DamageLedger, found: DamagedLocations, found_by: str) -> str | None:
    """Store a record of what `found` adds to the records already there; return its name,
    or None when there is nothing new. DamageNotRecorded if the store refuses it."""
    recorded = merge_locations(r.packs for r in ledger.damage_records.values())
    new = not_yet_recorded(found, recorded)
    if not new:
        return None
    try:
        return await ledger.save_damage_record(DamageRecord(new, found_by=found_by))
    except (BbackupError, OSError) as exc:
        raise DamageNotRecorded(
            f"could not record the damaged packs in the repository ({exc}): backups may "
            f"still deduplicate against them; {REPAIR_ADVICE}"
        ) from exc


@asynccontextmanager
async def recording_damage(
    ledger: DamageLedger, found_by: str, on_warning: Callable[[str], None]
) -> AsyncIterator[None]:
    """Record the blobs that failed verification inside the block (it ended normally or
    with a bbackup error), saying so in one line through `on_warning`."""
    try:
        yield
    except BbackupError:
        await _record_found(ledger, found_by, on_warning)
        raise
    await _record_found(ledger, found_by, on_warning)


async def _record_found(
    ledger: DamageLedger, found_by: str, on_warning: Callable[[str], None]
) -> None:
    found = ledger.found_damage()
    if not found:
        return
    try:
        name = await record_damage(ledger, found, found_by)
    except DamageNotRecorded as exc:
        on_warning(f"warning: {exc}")
        return
    if name is not None:
        packs = ledger.index.all_packs()
        where = ", ".join(
            pack_object_name(packs[p].blob_type, p) if p in packs else p for p in sorted(found)
        )
        on_warning(
            f"warning: {where}: damaged, recorded in {name}: backups upload the damaged "
            f"blobs again; {REPAIR_ADVICE}"
        )


class RecordRemover(Protocol):
    """Where damage records are deleted (the repository)."""

    async def delete_document(self, name: str) -> None: ...


async def remove_settled_records(
    store: RecordRemover, records: Mapping[str, DamageRecord], settled: Callable[[str], bool]
) -> list[str]:
    """Delete each record all of whose packs are `settled` (read again, or gone); return
    the names deleted, in order."""
    removed = []
    for name, record in sorted(records.items()):
        if all(settled(pack) for pack in record.packs):
            await store.delete_document(name)
            removed.append(name)
    return removed
