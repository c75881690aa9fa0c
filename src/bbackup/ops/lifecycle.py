"""`lifecycle plan|apply|show`: the rules a repository's bucket should have for a ladder and
a provider, merged into the bucket's own rules, and the bucket's rules explained.

The bucket is reached through `BucketLifecycle`, which the S3 backend plays; no password
and no repository are needed: lifecycle rules belong to the bucket, not to its contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bbackup.errors import UsageError
from bbackup.ops.lifecycle_changes import (
    RuleChange,
    describe_rule,
    merge_rules,
    rule_changes,
    rule_hazards,
)
from bbackup.ops.lifecycle_rules import ClassRules, Ladder, build_rules, validate_ladder
from bbackup.storage import Provider


class BucketLifecycle(Protocol):
    """Reads and replaces a bucket's lifecycle rules (S3's LifecycleConfiguration shape)."""

    async def get_lifecycle_rules(self) -> list[dict[str, Any]]: ...

    async def put_lifecycle_rules(self, rules: list[dict[str, Any]]) -> None: ...


@dataclass(slots=True)
class LifecyclePlan:
    """The rules bbackup wants for one repository, with what was said about them."""

    rules: list[dict[str, Any]]
    #: Ladders that work but cost more than they seem to; features the store lacks that
    #: were left out, with what to do instead.
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LifecycleResult:
    """What `apply` found and did."""

    plan: LifecyclePlan
    changes: list[RuleChange]
    #: The bucket's rules afterwards (before, with --dry-run).
    rules: list[dict[str, Any]]
    applied: bool
    #: Rules that endanger the repository (foreign rules deleting or archiving its objects).
    hazards: list[str]


def plan_lifecycle(prefix: str, ladder: Ladder, provider: Provider) -> LifecyclePlan:
    """The rules for the repository at key prefix `prefix`, after checking that `provider`
    can carry them: UsageError (with what to do instead) for anything asked for that it
    cannot do; a default it cannot do (aborting multipart uploads) is left out with a note."""
    if not provider.lifecycle_api:
        raise UsageError(
            f"{provider.label} has no S3 lifecycle API: bbackup cannot manage its rules. "
            f"{provider.lifecycle_advice}"
        )
    notes: list[str] = []
    if ladder.transitions and not provider.lifecycle_transitions:
        raise UsageError(
            f"{provider.label} cannot transition objects to other storage classes. "
            f"{provider.lifecycle_advice}"
        )
    if ladder.noncurrent_days and not provider.lifecycle_noncurrent:
        raise UsageError(
            f"{provider.label} has no noncurrent-version expiry (--noncurrent-days). "
            f"{provider.lifecycle_advice}"
        )
    if ladder.abort_multipart_days and not provider.lifecycle_abort_multipart:
        notes.append(
            f"{provider.label} does not take rules that abort unfinished multipart uploads, "
            "so none is written (bbackup itself writes every object in one PUT)"
        )
        ladder = Ladder(ladder.transitions, None, ladder.noncurrent_days)
    rules = ClassRules(provider.label, provider.transition_classes, provider.minimum_days)
    notes += validate_ladder(ladder, rules)
    if provider.any_transition_class and ladder.transitions:
        notes.append(provider.lifecycle_advice)
    return LifecyclePlan(build_rules(prefix, ladder), notes)


async def apply_lifecycle(
    bucket: BucketLifecycle, prefix: str, plan: LifecyclePlan, *, dry_run: bool = False
) -> LifecycleResult:
    """Merge the plan's rules into the bucket's: foreign rules (and other repositories'
    bbackup rules) are kept as they are, ours replaced. Nothing is written when nothing
    changes, or with `dry_run`."""
    current = await bucket.get_lifecycle_rules()
    merged = merge_rules(current, plan.rules, prefix)
    changes = rule_changes(current, merged)
    applied = bool(changes) and not dry_run
    if applied:
        await bucket.put_lifecycle_rules(merged)
    after = merged if applied else current
    hazards = [h for rule in merged for h in rule_hazards(rule, prefix)]
    return LifecycleResult(plan, changes, after, applied, hazards)


@dataclass(frozen=True, slots=True)
class ExplainedRule:
    """One of the bucket's rules, in words, with what endangers the repository."""

    rule: dict[str, Any]
    words: str
    hazards: list[str]


async def show_lifecycle(bucket: BucketLifecycle, prefix: str) -> list[ExplainedRule]:
    """The bucket's rules, each explained (ours, another repository's, foreign)."""
    return [
        ExplainedRule(rule, describe_rule(rule, prefix), rule_hazards(rule, prefix))
        for rule in await bucket.get_lifecycle_rules()
    ]
