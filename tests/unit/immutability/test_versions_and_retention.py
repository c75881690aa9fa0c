"""The pure parts of immutability: which version was current at a moment, what `repair
versions` copies back and hides, which snapshot times the store contradicts, what
`locks extend` may skip without asking, and what prune tells the user about locked
space. No store: plain data in, plain data out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bbackup.durations import parse_duration
from bbackup.ops.lock_extension import is_live, may_lapse
from bbackup.ops.prune_versions import VersionedDeletions
from bbackup.ops.repair_versions import plan_repair
from bbackup.repository.config import RepositoryConfig
from bbackup.snapshot.retention import (
    RetentionPolicy,
    apply_policy_trusting_store,
    suspect_times,
)
from bbackup.storage import ObjectInfo, ObjectLockSetting, ObjectVersion, Retention, versions_at
from bbackup.storage.object_lock import lock_parameters

DAY = 86400.0


def version(
    name: str, vid: str, mtime: float, *, deleted: bool = False, etag: str = ""
) -> ObjectVersion:
    return ObjectVersion(name, vid, mtime, 10, is_latest=False, deleted=deleted, etag=etag or vid)


def test_versions_at_a_moment_bring_back_deleted_and_overwritten_objects() -> None:
    listed = [
        version("snapshots/a", "a2", 300.0, etag="junk"),  # the attacker's overwrite
        version("snapshots/a", "a1", 100.0),
        version("snapshots/b", "b-marker", 300.0, deleted=True),  # the attacker's delete
        version("snapshots/b", "b1", 100.0),
        version("snapshots/c", "c1", 300.0),  # written after the moment
        version("locks/x", "l1", 100.0),  # live coordination, never history
    ]

    at = versions_at(listed, 200.0)

    assert {n: v.version_id for n, v in at.items()} == {"snapshots/a": "a1", "snapshots/b": "b1"}
    assert set(versions_at(listed, 400.0)) == {"snapshots/a", "snapshots/c"}


def test_repair_copies_old_versions_back_in_order_and_hides_newer_documents() -> None:
    listed = [
        version("config", "k2", 300.0, etag="junk"),
        version("config", "k1", 100.0),
        version("data/aa/p1", "p1-marker", 300.0, deleted=True),
        version("data/aa/p1", "p1", 100.0),
        version("index/i1", "i1", 100.0),  # untouched
        version("snapshots/s1", "s1-marker", 300.0, deleted=True),
        version("snapshots/s1", "s1", 100.0),
        version("snapshots/forged", "f1", 300.0),
        version("data/bb/junk", "j1", 300.0),
        version("damaged/d1", "d1", 300.0),  # `check` of the vandalised view
    ]

    copies, hide, newer_packs, unchanged = plan_repair(listed, 200.0)

    assert [c.name for c in copies] == ["data/aa/p1", "snapshots/s1", "config"]
    assert [c.version_id for c in copies] == ["p1", "s1", "k1"]
    assert hide == ["damaged/d1", "snapshots/forged"]
    assert (newer_packs, unchanged) == (1, 1)


def test_repair_run_twice_copies_nothing_more() -> None:
    listed = [
        version("config", "k3", 400.0, etag="k1"),  # the first repair's copy of k1
        version("config", "k2", 300.0, etag="junk"),
        version("config", "k1", 100.0),
    ]

    copies, _, _, unchanged = plan_repair(listed, 200.0)

    assert copies == [] and unchanged == 1


@dataclass
class Snap:
    id: str
    time: datetime
    host: str = "h"
    paths: tuple[str, ...] = ("/src",)
    tags: tuple[str, ...] = ()


def test_a_snapshot_whose_time_the_store_contradicts_pushes_no_real_one_out() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    real = [Snap(f"r{i}", now - timedelta(days=i)) for i in range(3)]
    forged = [Snap(f"f{i}", now + timedelta(days=2, hours=i)) for i in range(3)]
    stored = {s.id: s.time.timestamp() + 600 for s in real}
    stored |= {s.id: now.timestamp() for s in forged}  # written today, dated in two days
    policy = RetentionPolicy(last=2)

    decisions = apply_policy_trusting_store(real + forged, policy, stored)

    kept = {d.snapshot.id for d in decisions if d.keep}
    assert kept == {"r0", "r1", "f0", "f1", "f2"}
    assert all(
        "kept outside the policy" in d.reasons[0] for d in decisions if d.snapshot.id[0] == "f"
    )


def test_snapshot_times_within_the_tolerance_are_trusted_both_ways() -> None:
    t = datetime(2026, 12, 1, tzinfo=UTC)
    snaps = [Snap("long-backup", t), Snap("imported", t), Snap("skewed", t)]
    stored = {
        "long-backup": t.timestamp() + 20 * 3600,  # a 20-hour backup stores its snapshot late
        "imported": t.timestamp() + 40 * DAY,  # `copy` or `backup --time` from long ago
        "skewed": t.timestamp() - 1800,
    }

    suspects = suspect_times(snaps, stored, DAY)

    assert set(suspects) == {"imported"}
    assert "40 days before the store received it" in suspects["imported"]


def test_locks_extend_skips_without_a_request_what_was_written_within_the_period() -> None:
    setting = ObjectLockSetting("governance", 30)
    now = 1_000 * DAY
    horizon = now + 10 * DAY
    written_today = version("data/aa/p", "1", now)
    written_long_ago = version("data/aa/q", "2", now - 25 * DAY)

    assert not may_lapse(written_today, setting, horizon)
    assert may_lapse(written_long_ago, setting, horizon)


def test_live_objects_are_all_but_locks_and_unused_packs() -> None:
    used = {"p1"}

    assert is_live("data/p/p1", used) and is_live("tree/p/p1", used)
    assert not is_live("data/p/p2", used)
    assert all(is_live(n, used) for n in ("config", "keys/k", "index/i", "snapshots/s"))
    assert not is_live("locks/l", used)


def test_every_object_but_lock_documents_carries_a_retention() -> None:
    setting = ObjectLockSetting("compliance", 7)

    params = lock_parameters(setting, "data/aa/p", 0.0)

    assert params["ObjectLockMode"] == "COMPLIANCE"
    assert params["ObjectLockRetainUntilDate"] == datetime.fromtimestamp(7 * DAY, UTC)
    assert lock_parameters(setting, "locks/l", 0.0) == {}
    assert lock_parameters(None, "data/aa/p", 0.0) == {}


def test_the_config_records_the_lock_and_old_configs_read_unchanged() -> None:
    plain = RepositoryConfig()
    locked = RepositoryConfig(object_lock=ObjectLockSetting("governance", 30))

    assert b"object_lock" not in plain.to_bytes()
    assert RepositoryConfig.from_bytes(plain.to_bytes()) == plain
    assert RepositoryConfig.from_bytes(locked.to_bytes()).object_lock == locked.object_lock


@pytest.mark.parametrize("mode, days", [("strict", 3), ("governance", 0)])
def test_a_lock_setting_is_one_of_two_modes_and_at_least_a_day(mode: str, days: int) -> None:
    with pytest.raises(ValueError):
        ObjectLockSetting(mode, days)


def test_prune_says_when_locked_space_is_freed() -> None:
    now = 1_000 * DAY
    deletions = VersionedDeletions(ObjectLockSetting("governance", 30), noncurrent_days=7, now=now)
    deletions.note_hidden(
        ObjectInfo("data/aa/p", 2_000_000), Retention("GOVERNANCE", now + 20 * DAY)
    )
    deletions.note_hidden(ObjectInfo("data/aa/q", 1_000_000), Retention())

    assert deletions.freed_after == now + 20 * DAY  # the lock outlasts the 7-day rule
    lines = deletions.lines()
    assert "2 deleted packs" in lines[0] and "freed after" in lines[0]
    assert "1 of them" in lines[1] and "under object lock until" in lines[1]
    no_rule = VersionedDeletions(None, None, now=now)
    no_rule.note_hidden(ObjectInfo("data/aa/p", 1), Retention())
    assert "the bucket has no rule for that" in no_rule.lines()[0]


def test_durations_for_object_lock_are_whole_days() -> None:
    from bbackup.cli.repo_cmds import parse_object_lock
    from bbackup.errors import UsageError

    assert parse_object_lock("6w", "compliance") == ObjectLockSetting("compliance", 42)
    assert parse_object_lock(None, "governance") is None
    assert parse_duration("1y").years == 1
    with pytest.raises(UsageError):
        parse_object_lock("36h", "governance")
    with pytest.raises(UsageError):
        parse_object_lock("30d", "legal")
