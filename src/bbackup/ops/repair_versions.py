"""`repair versions --as-of TIME`: make the repository's current view what it was at TIME,
after an attacker deleted or overwrote objects.

Nothing is destroyed: no version is ever deleted. Each object whose current version
differs from (or lacks) its version at TIME gets a server-side copy of that old version
as its new current version (with the lock setting's retention). Snapshots, index
segments, damage records, drill records and key files created after TIME are hidden
behind a delete marker, which removes no data and can be undone by deleting the marker;
packs created after TIME are left for prune, which deletes them once nothing uses them.
Lock documents are not touched. The order (packs, index, snapshots, keys, config) means
an interrupted repair leaves nothing referring to what is not back yet; running it again
finishes it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from bbackup.errors import UsageError
from bbackup.ops.drill_record import DRILL_PREFIX
from bbackup.repository import DocumentStore, RepositoryLock
from bbackup.repository.damage import DAMAGE_PREFIX
from bbackup.repository.roles import PACK_PREFIXES
from bbackup.storage import ObjectVersion, VersionedStore, iso_time, versions_at

#: The order objects are brought back in: what refers to others comes after them.
_ORDER = ("data/", "tree/", "index/", DAMAGE_PREFIX, "snapshots/", "keys/", "config")

#: Objects created after TIME that are hidden (not packs: prune's to delete). Damage
#: records written since describe the vandalised view, which the repair undoes; drill
#: records written since could claim packs proven that an attacker has replaced.
_HIDDEN_PREFIXES = ("index/", "snapshots/", "keys/", "config", DAMAGE_PREFIX, DRILL_PREFIX)


@dataclass(slots=True)
class RepairVersionsReport:
    as_of: float
    dry_run: bool = False
    #: Objects given a copy of their version at TIME as their current version.
    restored: list[str] = field(default_factory=list)
    #: Objects created after TIME, hidden behind a delete marker.
    hidden: list[str] = field(default_factory=list)
    #: Packs created after TIME, left for prune.
    newer_packs: int = 0
    unchanged: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "repair_versions",
            "as_of": iso_time(self.as_of),
            "dry_run": self.dry_run,
            "restored": self.restored,
            "hidden": self.hidden,
            "newer_packs": self.newer_packs,
            "unchanged": self.unchanged,
        }


def _rank(name: str) -> int:
    return next((i for i, prefix in enumerate(_ORDER) if name.startswith(prefix)), len(_ORDER))


def plan_repair(
    listed: list[ObjectVersion], as_of: float
) -> tuple[list[ObjectVersion], list[str], int, int]:
    """What to copy back (the versions at `as_of`, in a safe order), what to hide, how
    many newer packs are left and how many objects are unchanged. Pure."""
    then = versions_at(listed, as_of)
    now = versions_at(listed, math.inf)
    copies = []
    unchanged = 0
    for name, old in then.items():
        current = now.get(name)
        same = current is not None and (
            current.version_id == old.version_id or (old.etag and current.etag == old.etag)
        )
        if same:
            unchanged += 1
        else:
            copies.append(old)
    newer = [name for name in now if name not in then]
    hide = sorted(n for n in newer if n.startswith(_HIDDEN_PREFIXES))
    newer_packs = sum(1 for n in newer if n.startswith(PACK_PREFIXES))
    copies.sort(key=lambda v: (_rank(v.name), v.name))
    return copies, hide, newer_packs, unchanged


async def repair_versions(
    view: DocumentStore,
    versions: VersionedStore,
    as_of: float,
    *,
    delete: Any,
    dry_run: bool = False,
    connections: int = 16,
) -> RepairVersionsReport:
    """Bring the current view back to `as_of` (see the module docstring). `view` is the
    repository opened as of TIME (proof that the password opens it, and where the
    exclusive lock goes); `delete(name)` hides an object in the live bucket."""
    report = RepairVersionsReport(as_of, dry_run)
    async with RepositoryLock(view, exclusive=True, purpose="repair versions"):
        listed = [v async for v in versions.list_versions("")]
        if not versions_at(listed, as_of).get("config"):
            raise UsageError(f"there was no repository at {versions.location} at {iso_time(as_of)}")
        copies, hide, report.newer_packs, report.unchanged = plan_repair(listed, as_of)
        report.restored = [v.name for v in copies]
        report.hidden = hide
        if dry_run:
            return report
        limit = asyncio.Semaphore(max(1, connections))

        async def restore(version: ObjectVersion) -> None:
            async with limit:
                await versions.restore_version(version.name, version.version_id)

        # One rank at a time: nothing refers to an object that is not back yet.
        for rank in range(len(_ORDER) + 1):
            await asyncio.gather(*(restore(v) for v in copies if _rank(v.name) == rank))
        for name in hide:
            await delete(name)
    return report
