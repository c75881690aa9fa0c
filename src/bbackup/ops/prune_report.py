"""What prune reports (PruneReport): the plan's decisions and totals, the space a later
prune reclaims and from when (`pending_deletions`), and one report for the two passes of
a grace-0 run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bbackup.ops.prune_plan import (
    DELETE,
    DROP,
    IN_USE,
    KEEP,
    KEEP_MARKED,
    MARK,
    REPACK,
    PruneInput,
    PrunePlan,
)
from bbackup.ops.prune_versions import VersionedDeletions
from bbackup.report_format import human_bytes, human_duration, utc_minute


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
