"""Forget: apply a retention policy per group of snapshots and delete the snapshot
documents it does not keep. Data is reclaimed by prune, not here."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from bbackup.errors import BbackupError, NotFound, UsageError
from bbackup.repository import DocumentStore, RepositoryLock
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.retention import (
    Decision,
    GroupKey,
    RetentionPolicy,
    apply_policy,
    apply_policy_trusting_store,
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
    check_times: float | None = None,
) -> list[ForgetGroup]:
    """Decide per group; refuses a policy that would remove every snapshot of a group.

    `check_times`: a tolerance in seconds: snapshots whose recorded time is further than
    that from their document's store date are kept outside the policy
    (`apply_policy_trusting_store`), which costs one stat per snapshot."""
    if policy.is_empty():
        raise UsageError(
            "no retention policy given: pass --keep-last, --keep-daily, ... (nothing removed)"
        )
    filters = filters or SnapshotFilter()
    snapshots = [s for s in await load_snapshots(documents) if filters.matches(s)]
    stored = await _store_times(documents, snapshots) if check_times is not None else {}
    groups = []
    for key, members in group_snapshots(snapshots, group_by).items():
        # restic ignores snapshots from the future when it finds the newest one.
        if check_times is None:
            decisions = apply_policy(members, policy, now=datetime.now(UTC))
        else:
            decisions = apply_policy_trusting_store(
                members, policy, stored, tolerance_seconds=check_times, now=datetime.now(UTC)
            )
        group = ForgetGroup(key, decisions)
        if decisions and not any(d.keep for d in decisions) and not allow_remove_all:
            raise BbackupError(
                f"the policy would remove all {len(decisions)} snapshots of group "
                f"{describe_group(key)}: pass --allow-remove-all if that is intended"
            )
        groups.append(group)
    return groups


async def _store_times(documents: DocumentStore, snapshots: list[Snapshot]) -> dict[str, float]:
    """Snapshot ID → when the store received its document (its own clock)."""
    limit = asyncio.Semaphore(16)

    async def stat(snapshot: Snapshot) -> tuple[str, float | None]:
        async with limit:
            try:
                return snapshot.id, await documents.document_mtime(f"snapshots/{snapshot.id}")
            except NotFound:
                return snapshot.id, None  # forgotten meanwhile

    found = await asyncio.gather(*(stat(s) for s in snapshots))
    return {snapshot_id: mtime for snapshot_id, mtime in found if mtime is not None}


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
