"""Prune planning: a pure function from the repository's packs and references to decisions.

Two-phase deletion (docs/format.md, "Prune"): a live pack that no snapshot uses is first
*marked*; a later run deletes it if it is still unused, was marked at least `grace` ago, and
no other process that started before the mark still holds a lock. A marked pack that a
snapshot uses again is *unmarked*. With `grace` 0 and no other lock holders, marking and
deleting happen in one run. Packs in archive tiers are never repacked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bbackup.storage import ARCHIVE_CLASSES

KEEP = "keep"
REPACK = "repack"
MARK = "mark"
DELETE = "delete"
UNMARK = "unmark"
KEEP_MARKED = "keep-marked"
DROP = "drop-from-index"  # indexed but missing from storage, and unused

#: Minimum billable storage duration per class (days), and list price per GB-month (USD,
#: AWS us-east-1) used to estimate early-deletion charges.
MIN_STORAGE_DAYS = {
    "STANDARD_IA": 30,
    "ONEZONE_IA": 30,
    "GLACIER_IR": 90,
    "GLACIER": 90,
    "DEEP_ARCHIVE": 180,
}
PRICE_PER_GB_MONTH = {
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}
DAY = 86400.0
#: Margin for comparing times from different clocks: lock start times come from the lock
#: holder's clock, pack mtimes from the store's (S3: in whole seconds), marks from
#: prune's, stamped just before the index segment that carries them is stored.
CLOCK_SLACK = 60.0
IN_USE = "in use"


@dataclass(frozen=True, slots=True)
class PackState:
    """Everything the planner needs to know about one pack."""

    pack_id: str
    size: int
    #: (blob ID, stored length) of every blob the pack holds; empty if not indexed.
    blobs: tuple[tuple[bytes, int], ...] = ()
    indexed: bool = True
    stored: bool = True
    marked_at: float | None = None
    storage_class: str = "STANDARD"
    mtime: float = 0.0


@dataclass(frozen=True, slots=True)
class PruneInput:
    packs: tuple[PackState, ...]
    #: For every blob some snapshot uses: the pack the index reads it from.
    used_home: Mapping[bytes, str]
    now: float
    grace: float
    max_unused: float  # fraction of a pack that may be unused before it is repacked
    #: Start time of the oldest live lock held by another process (None: no one else).
    oldest_other_lock: float | None = None
    #: Delete unused live packs at once when grace is 0 and no one else holds a lock. The
    #: executor plans with False and deletes them in a second pass after marking them, so
    #: a backup that read the old index is seen first; a dry run plans with True.
    delete_unused_at_once: bool = True
    #: The store's mtime of this prune's own lock, written before it listed the locks: a
    #: pack stored at or after it may belong to a backup whose lock it did not see.
    fence: float | None = None


@dataclass(frozen=True, slots=True)
class PackDecision:
    pack_id: str
    action: str
    reason: str
    size: int
    used_bytes: int
    storage_class: str
    early_delete_charge: float = 0.0


@dataclass(slots=True)
class PrunePlan:
    decisions: list[PackDecision] = field(default_factory=list)
    #: Packs that a snapshot needs but that are missing from storage: prune refuses.
    missing_used: list[str] = field(default_factory=list)

    def by_action(self, *actions: str) -> list[PackDecision]:
        return [d for d in self.decisions if d.action in actions]

    def totals(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for d in self.decisions:
            t = out.setdefault(d.action, {"packs": 0, "bytes": 0})
            t["packs"] += 1
            t["bytes"] += d.size
        return out

    @property
    def early_delete_charge(self) -> float:
        return round(sum(d.early_delete_charge for d in self.decisions), 6)


def early_delete_charge(storage_class: str, size: int, age_seconds: float) -> float:
    """Estimated USD charged for deleting an object before its class's minimum duration."""
    min_days = MIN_STORAGE_DAYS.get(storage_class)
    if min_days is None:
        return 0.0
    remaining_days = min_days - age_seconds / DAY
    if remaining_days <= 0:
        return 0.0
    return size / 1e9 * PRICE_PER_GB_MONTH[storage_class] * remaining_days / 30


def _used_bytes(packs: Iterable[PackState], used_home: Mapping[bytes, str]) -> dict[str, int]:
    used: dict[str, int] = {}
    for pack in packs:
        used[pack.pack_id] = sum(
            length for blob_id, length in pack.blobs if used_home.get(blob_id) == pack.pack_id
        )
    return used


def plan_prune(inp: PruneInput) -> PrunePlan:
    """Decide, for every pack, whether to keep, repack, mark, unmark or delete it."""
    plan = PrunePlan()
    used = _used_bytes(inp.packs, inp.used_home)

    def nobody_older_than(moment: float) -> bool:
        return inp.oldest_other_lock is None or inp.oldest_other_lock > moment + CLOCK_SLACK

    for pack in inp.packs:
        u = used[pack.pack_id]
        charge = early_delete_charge(pack.storage_class, pack.size, inp.now - pack.mtime)

        def decide(
            action: str,
            reason: str,
            *,
            fee: bool = False,
            u: int = u,
            pack: PackState = pack,
            charge: float = charge,
        ) -> None:
            plan.decisions.append(
                PackDecision(
                    pack.pack_id,
                    action,
                    reason,
                    pack.size,
                    u,
                    pack.storage_class,
                    charge if fee else 0.0,
                )
            )

        if not pack.stored:
            if u:
                plan.missing_used.append(pack.pack_id)
                decide(KEEP, "missing from storage but still used: run check")
            else:
                decide(DROP, "missing from storage and unused")
            continue
        if not pack.indexed:
            if inp.now - pack.mtime < inp.grace:
                decide(KEEP, "not in any index and younger than the grace period")
            elif inp.fence is not None and pack.mtime >= inp.fence:
                decide(KEEP, "not in any index; stored after this prune looked at the locks")
            elif inp.oldest_other_lock is not None:
                # Any running backup may adopt it (ops/adopt.py) after we read the index.
                decide(KEEP, "not in any index; a running backup may adopt it")
            else:
                decide(DELETE, "not in any index (left by an interrupted run)", fee=True)
            continue
        if pack.marked_at is not None:
            if u:
                decide(UNMARK, "marked, but a snapshot uses it again")
            elif inp.now - pack.marked_at < inp.grace:
                decide(KEEP_MARKED, "marked; waiting for the grace period")
            elif not nobody_older_than(pack.marked_at):
                decide(KEEP_MARKED, "marked; a backup that started before the mark is running")
            else:
                decide(DELETE, "marked and still unused after the grace period", fee=True)
            continue
        if u == 0:
            if inp.grace <= 0 and inp.oldest_other_lock is None and inp.delete_unused_at_once:
                decide(DELETE, "unused (grace 0 and no other lock holders)", fee=True)
            else:
                decide(MARK, "unused; will be deleted by a later prune after the grace period")
            continue
        blob_total = sum(length for _, length in pack.blobs) or 1
        unused_share = 1 - u / blob_total
        # In integers (parts per million): exactly 5% unused is not "more than 5%".
        if (blob_total - u) * 1_000_000 > round(inp.max_unused * 1_000_000) * blob_total:
            if pack.storage_class in ARCHIVE_CLASSES:
                decide(KEEP, f"{unused_share:.0%} unused, but archived packs are never repacked")
            else:
                decide(REPACK, f"{unused_share:.0%} unused", fee=True)
            continue
        decide(KEEP, IN_USE)
    return plan
