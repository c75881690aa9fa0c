"""What prune says a later run will delete, and from when: from the plan and plain data."""

from __future__ import annotations

from bbackup.ops.prune_plan import PackState, PruneInput, plan_prune
from bbackup.ops.prune_report import PruneReport, pending_deletions

HOUR = 3600.0
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
GIB = 1024**3
BLOB = bytes(32)


def plan_for(*packs: PackState, lock_hours_ago: float | None = None) -> PruneInput:
    return PruneInput(
        packs,
        used_home={},
        now=NOW,
        grace=24 * HOUR,
        max_unused=0.05,
        oldest_other_lock=None if lock_hours_ago is None else NOW - lock_hours_ago * HOUR,
        delete_unused_at_once=False,
    )


def test_marked_unused_and_unindexed_young_packs_are_due_a_grace_period_after_their_time() -> None:
    inp = plan_for(
        PackState("marked", GIB, ((BLOB, 10),), marked_at=NOW - 20 * HOUR, mtime=NOW - 99 * HOUR),
        PackState("unused", GIB, ((BLOB, 10),), mtime=NOW - 99 * HOUR),
        PackState("left", GIB // 2, indexed=False, mtime=NOW - 1 * HOUR),
    )

    pending = pending_deletions(plan_prune(inp), inp)

    assert pending["packs"] == 3
    assert pending["bytes"] == GIB * 5 // 2
    assert pending["deletable_after"] == NOW + 4 * HOUR  # marked 20 h ago
    assert pending["all_deletable_after"] == NOW + 24 * HOUR  # marked now
    assert pending["waiting_for_locks"] == 0


def test_packs_kept_only_for_a_running_backup_are_due_now_and_counted_apart() -> None:
    inp = plan_for(PackState("left", GIB, indexed=False, mtime=NOW - 48 * HOUR), lock_hours_ago=1)

    pending = pending_deletions(plan_prune(inp), inp)

    assert pending["deletable_after"] == NOW
    assert pending["waiting_for_locks"] == 1


def test_the_report_line_says_bytes_packs_time_and_grace() -> None:
    inp = plan_for(PackState("left", GIB + GIB // 2, indexed=False, mtime=NOW - 1 * HOUR))
    report = PruneReport(pending=pending_deletions(plan_prune(inp), inp))

    assert report.pending_line() == (
        "1.50 GiB in 1 pack will be deleted by a prune after 2027-01-16 07:00 UTC (grace 24h)"
    )


def test_nothing_pending_says_nothing() -> None:
    inp = plan_for(PackState("used", GIB, ((BLOB, 10),), mtime=NOW - 99 * HOUR))
    inp = PruneInput(inp.packs, {BLOB: "used"}, NOW, inp.grace, inp.max_unused)

    assert pending_deletions(plan_prune(inp), inp) == {}
    assert PruneReport().pending_line() is None
