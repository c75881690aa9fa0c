"""plan_prune decides each pack's fate from plain data: no storage, no clock, no repository."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bbackup.ops.prune_plan import (
    DAY,
    DELETE,
    DROP,
    KEEP,
    KEEP_MARKED,
    MARK,
    REPACK,
    UNMARK,
    PackState,
    PruneInput,
    plan_prune,
)

HOUR = 3600.0
NOW = 1_800_000_000.0
GRACE = 24 * HOUR
GB = 1_000_000_000

A, B, C, D = (bytes([n]) * 32 for n in range(1, 5))


def pack(
    pack_id: str = "p",
    *,
    blobs: tuple[tuple[bytes, int], ...] = ((A, 500), (B, 500)),
    size: int = 1_100,
    indexed: bool = True,
    stored: bool = True,
    marked_hours_ago: float | None = None,
    storage_class: str = "STANDARD",
    age_hours: float = 72.0,
) -> PackState:
    return PackState(
        pack_id,
        size,
        blobs if indexed else (),
        indexed=indexed,
        stored=stored,
        marked_at=None if marked_hours_ago is None else NOW - marked_hours_ago * HOUR,
        storage_class=storage_class,
        mtime=NOW - age_hours * HOUR,
    )


@dataclass(frozen=True)
class Case:
    """One pack `p`, which blobs snapshots use from it, and the options of the run."""

    pack: PackState
    used: tuple[bytes, ...] = ()
    grace: float = GRACE
    max_unused: float = 0.05
    lock_hours_ago: float | None = None  # start of another process's live lock
    other_homes: dict[bytes, str] = field(default_factory=dict)


def decide(case: Case) -> tuple[str, str]:
    home = {blob: "p" for blob in case.used} | case.other_homes
    plan = plan_prune(
        PruneInput(
            (case.pack,),
            home,
            now=NOW,
            grace=case.grace,
            max_unused=case.max_unused,
            oldest_other_lock=None
            if case.lock_hours_ago is None
            else NOW - case.lock_hours_ago * HOUR,
        )
    )
    [decision] = [d for d in plan.decisions if d.pack_id == "p"]
    return decision.action, decision.reason


CASES = {
    # a live pack no snapshot uses
    "unused live pack is marked while a grace period applies": (Case(pack(), grace=GRACE), MARK),
    "unused live pack is deleted at once with grace 0 and nobody else": (
        Case(pack(), grace=0),
        DELETE,
    ),
    "unused live pack is only marked with grace 0 when another process holds a lock": (
        Case(pack(), grace=0, lock_hours_ago=0.1),
        MARK,
    ),
    # a pack an earlier prune marked
    "marked pack still unused waits out the grace period": (
        Case(pack(marked_hours_ago=1)),
        KEEP_MARKED,
    ),
    "marked pack still unused is deleted after the grace period": (
        Case(pack(marked_hours_ago=25)),
        DELETE,
    ),
    "marked pack is kept while a process that started before the mark runs": (
        Case(pack(marked_hours_ago=25), lock_hours_ago=26),
        KEEP_MARKED,
    ),
    "marked pack is deleted when the only other lock started after the mark": (
        Case(pack(marked_hours_ago=25), lock_hours_ago=2),
        DELETE,
    ),
    "marked pack that a snapshot uses again is unmarked": (
        Case(pack(marked_hours_ago=25), used=(A,)),
        UNMARK,
    ),
    "marked pack used again is unmarked even within the grace period": (
        Case(pack(marked_hours_ago=1), used=(A, B)),
        UNMARK,
    ),
    # a stored pack that no index lists (an interrupted or running backup)
    "unindexed pack younger than the grace period is kept": (
        Case(pack(indexed=False, age_hours=1)),
        KEEP,
    ),
    "unindexed pack older than the grace period is deleted": (
        Case(pack(indexed=False, age_hours=25)),
        DELETE,
    ),
    "unindexed pack is kept while a lock older than the pack is live": (
        Case(pack(indexed=False, age_hours=25), lock_hours_ago=26),
        KEEP,
    ),
    # A backup that started after the pack may adopt it once we have read the index.
    "unindexed pack is kept while any other lock is live, even one younger than the pack": (
        Case(pack(indexed=False, age_hours=25), lock_hours_ago=1),
        KEEP,
    ),
    "unindexed pack older than the grace period is deleted when no one else holds a lock": (
        Case(pack(indexed=False, age_hours=25)),
        DELETE,
    ),
    "unindexed pack with grace 0 and a lock older than the pack is kept": (
        Case(pack(indexed=False, age_hours=0.01), grace=0, lock_hours_ago=0.02),
        KEEP,
    ),
    # partially used packs
    "pack with more unused than max_unused is repacked": (
        Case(pack(blobs=((A, 500), (B, 500))), used=(A,), max_unused=0.05),
        REPACK,
    ),
    "pack with exactly max_unused unused is kept": (
        Case(pack(blobs=((A, 750), (B, 250))), used=(A,), max_unused=0.25),
        KEEP,
    ),
    "pack with less unused than max_unused is kept": (
        Case(pack(blobs=((A, 990), (B, 10))), used=(A,), max_unused=0.05),
        KEEP,
    ),
    "fully used pack is kept even with max_unused 0": (
        Case(pack(), used=(A, B), max_unused=0.0),
        KEEP,
    ),
    "any unused share is repacked with max_unused 0": (
        Case(pack(blobs=((A, 999), (B, 1))), used=(A,), max_unused=0.0),
        REPACK,
    ),
    # duplicates: the index reads a used blob from another pack
    "blob whose home is another pack does not keep this pack": (
        Case(pack(), other_homes={A: "q", B: "q"}, grace=0),
        DELETE,
    ),
    "pack half of whose used blobs live elsewhere is repacked": (
        Case(pack(), used=(A,), other_homes={B: "q"}),
        REPACK,
    ),
    # instant-retrieval tiers can be read, so they are repacked like STANDARD
    "partially used GLACIER_IR pack is repacked": (
        Case(pack(storage_class="GLACIER_IR"), used=(A,)),
        REPACK,
    ),
    "partially used STANDARD_IA pack is repacked": (
        Case(pack(storage_class="STANDARD_IA"), used=(A,)),
        REPACK,
    ),
}


@pytest.mark.parametrize(("case", "expected"), CASES.values(), ids=CASES.keys())
def test_plan_prune_decides_each_pack(case: Case, expected: str) -> None:
    action, _reason = decide(case)

    assert action == expected


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
@pytest.mark.parametrize("max_unused", [0.0, 0.05, 0.5])
def test_plan_prune_never_repacks_archived_packs(storage_class: str, max_unused: float) -> None:
    action, reason = decide(
        Case(
            pack(blobs=((A, 100), (B, 900)), storage_class=storage_class),
            used=(A,),
            max_unused=max_unused,
        )
    )

    assert action == KEEP
    assert "archived" in reason


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
@pytest.mark.parametrize(
    ("grace", "marked_hours_ago", "expected"),
    [(0, None, DELETE), (GRACE, None, MARK), (GRACE, 25, DELETE)],
    ids=["grace-0", "first-run-marks", "marked-after-grace"],
)
def test_plan_prune_deletes_archived_packs_no_snapshot_uses(
    storage_class: str, grace: float, marked_hours_ago: float | None, expected: str
) -> None:
    case = Case(pack(storage_class=storage_class, marked_hours_ago=marked_hours_ago), grace=grace)

    assert decide(case)[0] == expected


# ---- early-deletion charges --------------------------------------------------------------

# size / 1 GB x price per GB-month x (minimum days - age in days) / 30
EARLY_DELETE = {
    "STANDARD_IA just written": ("STANDARD_IA", 0, 1 * 0.0125 * 30 / 30),
    "STANDARD_IA 10 days old": ("STANDARD_IA", 10, 1 * 0.0125 * 20 / 30),
    "ONEZONE_IA 15 days old": ("ONEZONE_IA", 15, 1 * 0.01 * 15 / 30),
    "GLACIER_IR 30 days old": ("GLACIER_IR", 30, 1 * 0.004 * 60 / 30),
    "GLACIER 1 day old": ("GLACIER", 1, 1 * 0.0036 * 89 / 30),
    "DEEP_ARCHIVE 90 days old": ("DEEP_ARCHIVE", 90, 1 * 0.00099 * 90 / 30),
    "STANDARD_IA past 30 days": ("STANDARD_IA", 31, 0.0),
    "GLACIER_IR past 90 days": ("GLACIER_IR", 91, 0.0),
    "GLACIER exactly 90 days": ("GLACIER", 90, 0.0),
    "DEEP_ARCHIVE past 180 days": ("DEEP_ARCHIVE", 181, 0.0),
    "STANDARD has no minimum": ("STANDARD", 0, 0.0),
}


@pytest.mark.parametrize(
    ("storage_class", "age_days", "expected"), EARLY_DELETE.values(), ids=EARLY_DELETE.keys()
)
def test_plan_prune_charges_early_deletion_below_the_class_minimum(
    storage_class: str, age_days: float, expected: float
) -> None:
    young = pack(storage_class=storage_class, size=GB, age_hours=age_days * DAY / HOUR)

    plan = plan_prune(PruneInput((young,), {}, now=NOW, grace=0, max_unused=0.05))

    [decision] = plan.decisions
    assert decision.action == DELETE
    assert decision.early_delete_charge == pytest.approx(expected)
    assert plan.early_delete_charge == pytest.approx(expected, abs=1e-6)


def test_plan_prune_charges_repacked_packs_but_not_marked_or_kept_ones() -> None:
    packs = (
        pack("repacked", storage_class="STANDARD_IA", size=GB, age_hours=1),
        pack("marked", blobs=((C, 1),), storage_class="STANDARD_IA", size=GB, age_hours=1),
        pack("kept", blobs=((D, 1),), storage_class="STANDARD_IA", size=GB, age_hours=1),
    )

    plan = plan_prune(
        PruneInput(packs, {A: "repacked", D: "kept"}, now=NOW, grace=GRACE, max_unused=0.05)
    )

    charges = {d.pack_id: (d.action, d.early_delete_charge) for d in plan.decisions}
    assert charges["repacked"][0] == REPACK
    assert charges["repacked"][1] > 0
    assert charges["marked"] == (MARK, 0.0)
    assert charges["kept"] == (KEEP, 0.0)


def test_plan_prune_totals_the_charge_of_every_deleted_pack() -> None:
    packs = (
        pack("glacier", blobs=((A, 1),), storage_class="GLACIER", size=GB, age_hours=0),
        pack("deep", blobs=((B, 1),), storage_class="DEEP_ARCHIVE", size=GB, age_hours=0),
        pack("standard", blobs=((C, 1),), size=GB, age_hours=0),
    )

    plan = plan_prune(PruneInput(packs, {}, now=NOW, grace=0, max_unused=0.05))

    assert {d.action for d in plan.decisions} == {DELETE}
    assert plan.early_delete_charge == pytest.approx(0.0036 * 3 + 0.00099 * 6, abs=1e-6)
    assert plan.totals() == {DELETE: {"packs": 3, "bytes": 3 * GB}}


# ---- packs the index lists but storage does not hold --------------------------------------


def test_plan_prune_reports_a_missing_pack_that_snapshots_use() -> None:
    plan = plan_prune(
        PruneInput(
            (pack("gone", stored=False), pack("here", blobs=((C, 10),))),
            {A: "gone", C: "here"},
            now=NOW,
            grace=0,
            max_unused=0.05,
        )
    )

    assert plan.missing_used == ["gone"]
    assert [d.action for d in plan.decisions if d.pack_id == "gone"] == [KEEP]
    assert not plan.by_action(DELETE, REPACK, MARK)


def test_plan_prune_drops_a_missing_pack_nothing_uses_from_the_index() -> None:
    plan = plan_prune(
        PruneInput((pack("gone", stored=False),), {}, now=NOW, grace=GRACE, max_unused=0.05)
    )

    assert plan.missing_used == []
    assert [(d.pack_id, d.action) for d in plan.decisions] == [("gone", DROP)]


def test_plan_prune_decides_every_pack_of_a_mixed_repository() -> None:
    packs = (
        pack("live", blobs=((A, 10),)),
        pack("unused", blobs=((B, 10),)),
        pack("orphan", indexed=False, age_hours=48),
        pack("young-orphan", indexed=False, age_hours=1),
        pack("was-marked", blobs=((C, 10),), marked_hours_ago=48),
        pack("revived", blobs=((D, 10),), marked_hours_ago=48),
    )

    plan = plan_prune(
        PruneInput(packs, {A: "live", D: "revived"}, now=NOW, grace=GRACE, max_unused=0.05)
    )

    assert {d.pack_id: d.action for d in plan.decisions} == {
        "live": KEEP,
        "unused": MARK,
        "orphan": DELETE,
        "young-orphan": KEEP,
        "was-marked": DELETE,
        "revived": UNMARK,
    }
