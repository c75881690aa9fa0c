"""Forget: apply a retention policy per group of snapshots and delete the snapshot
documents it does not keep. Data is reclaimed by prune, not here."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from bbackup.errors import BbackupError, UsageError
from bbackup.repository import DocumentStore, RepositoryLock
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.retention import (
    Decision,
    GroupKey,
    RetentionPolicy,
    apply_policy,
    group_snapshots,
)
from bbackup.snapshot.store import SnapshotFilter, delete_snapshot, load_snapshots


@dataclass(slots=True)
class ForgetGroup:
    key: GroupKey
    decisions: list[Decision[Snapshot]]

    @property
    def removed(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if not d.keep]


async def plan_forget(
    documents: DocumentStore,
    policy: RetentionPolicy,
    *,
    group_by: Collection[str],
    filters: SnapshotFilter | None = None,
    allow_remove_all: bool = False,
) -> list[ForgetGroup]:
    """Decide per group; refuses a policy that would remove every snapshot of a group."""
    if policy.is_empty():
        raise UsageError(
            "no retention policy given: pass --keep-last, --keep-daily, ... (nothing removed)"
        )
    filters = filters or SnapshotFilter()
    snapshots = [s for s in await load_snapshots(documents) if filters.matches(s)]
    groups = []
    for key, members in group_snapshots(snapshots, group_by).items():
        # restic ignores snapshots from the future when it finds the newest one.
        decisions = apply_policy(members, policy, now=datetime.now(UTC))
        group = ForgetGroup(key, decisions)
        if decisions and not any(d.keep for d in decisions) and not allow_remove_all:
            raise BbackupError(
                f"the policy would remove all {len(decisions)} snapshots of group "
                f"{describe_group(key)}: pass --allow-remove-all if that is intended"
            )
        groups.append(group)
    return groups


async def apply_forget(documents: DocumentStore, groups: list[ForgetGroup]) -> int:
    """Delete the snapshot documents the plan removes; return how many."""
    removed = 0
    async with RepositoryLock(documents, exclusive=False, purpose="forget"):
        for group in groups:
            for snapshot in group.removed:
                await delete_snapshot(documents, snapshot)
                removed += 1
    return removed


def describe_group(key: GroupKey) -> str:
    parts = []
    if key.host:
        parts.append(f"host {key.host}")
    if key.paths:
        parts.append(f"paths [{', '.join(key.paths)}]")
    if key.tags:
        parts.append(f"tags [{', '.join(key.tags)}]")
    return ", ".join(parts) or "(all snapshots)"
