"""Lifecycle rules for a repository's bucket, as plain data: the tiering ladder (parsed and
validated against S3's transition constraints and the provider's classes), the rules it
becomes in the exact S3 `LifecycleConfiguration` shape, and which rules bbackup owns.

Pure: no I/O, no storage imports. `ops.lifecycle_changes` merges these rules with what a
bucket already has; `ops.lifecycle` reads and writes the bucket.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bbackup.errors import UsageError

#: Every rule bbackup writes has an ID starting with this; rules without it are foreign
#: and never changed.
RULE_ID_PREFIX = "bbackup-"

#: Where S3 lets an object go next from each class by a lifecycle transition (AWS S3 User
#: Guide, "Transitioning objects using Amazon S3 Lifecycle": the waterfall model). A store
#: whose tiers have other names (MinIO's remote tiers) is checked for increasing days only.
NEXT_CLASSES: Mapping[str, frozenset[str]] = {
    "STANDARD": frozenset(
        {"STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER"}
        | {"DEEP_ARCHIVE"}
    ),
    "STANDARD_IA": frozenset(
        {"INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}
    ),
    "INTELLIGENT_TIERING": frozenset({"ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}),
    "ONEZONE_IA": frozenset({"GLACIER", "DEEP_ARCHIVE"}),
    "GLACIER_IR": frozenset({"GLACIER", "DEEP_ARCHIVE"}),
    "GLACIER": frozenset({"DEEP_ARCHIVE"}),
    "DEEP_ARCHIVE": frozenset(),
}

#: S3 refuses a transition into these classes earlier than this many days after creation,
#: and a later transition out of them earlier than this many days after the one into them.
MIN_DAYS_IN_CLASS = {"STANDARD_IA": 30, "ONEZONE_IA": 30}


@dataclass(frozen=True, slots=True)
class Transition:
    """Objects move to `storage_class` `days` days after they were written."""

    storage_class: str
    days: int

    def __str__(self) -> str:
        return f"{self.storage_class}:{self.days}"


@dataclass(frozen=True, slots=True)
class Ladder:
    """What `lifecycle plan|apply` is asked for: transitions of data/ packs, the age after
    which unfinished multipart uploads are aborted, and how long noncurrent versions are
    kept (None or 0: no such rule)."""

    transitions: tuple[Transition, ...] = ()
    abort_multipart_days: int | None = 1
    noncurrent_days: int | None = None


@dataclass(frozen=True, slots=True)
class ClassRules:
    """What a provider allows a ladder to use (from `bbackup.storage.providers`)."""

    #: The provider's name for messages ("AWS S3", "Cloudflare R2").
    provider: str
    #: Classes a transition may name; None: any name (MinIO: tiers the admin added).
    classes: Collection[str] | None
    #: Days a class bills at least (early deletion), for warnings.
    minimum_days: Mapping[str, int]


#: The most days a rule may name: S3 reads Days as a 32-bit integer and answers more with
#: MalformedXML, which other stores may accept and never act on.
MAX_RULE_DAYS = 2**31 - 1


def parse_transition(text: str) -> Transition:
    """`CLASS:DAYS` (e.g. `GLACIER:90`) as a Transition; UsageError with the reason."""
    storage_class, sep, days_text = text.strip().partition(":")
    storage_class = storage_class.strip().upper()
    if not sep or not storage_class:
        raise UsageError(f"--transition {text!r}: use CLASS:DAYS, e.g. GLACIER:90")
    try:
        days = int(days_text.strip())
    except ValueError:
        raise UsageError(f"--transition {text!r}: {days_text!r} is not a number of days") from None
    if days < 0:
        raise UsageError(f"--transition {text!r}: days cannot be negative")
    return Transition(storage_class, days)


def validate_ladder(ladder: Ladder, rules: ClassRules) -> list[str]:
    """Refuse (UsageError) a ladder the store would reject or that makes no sense: days not
    increasing, a class the provider lacks, a step S3 does not allow, a step earlier than
    S3's minimum. Return warnings for ladders that work but cost more than they seem to
    (objects leaving a class before its minimum billed duration)."""
    warnings: list[str] = []
    for name, value in (
        ("--abort-multipart-days", ladder.abort_multipart_days),
        ("--noncurrent-days", ladder.noncurrent_days),
    ):
        if value is not None and value < 0:
            raise UsageError(f"{name} {value}: days cannot be negative")
        if value is not None and value > MAX_RULE_DAYS:
            raise UsageError(f"{name} {value}: at most {MAX_RULE_DAYS} days")
    previous = Transition("STANDARD", 0)
    for step in ladder.transitions:
        where = f"--transition {step}"
        if step.days > MAX_RULE_DAYS:
            raise UsageError(f"{where}: at most {MAX_RULE_DAYS} days")
        if rules.classes is not None and step.storage_class not in rules.classes:
            offered = ", ".join(sorted(rules.classes)) or "none"
            raise UsageError(
                f"{where}: {rules.provider} has no storage class {step.storage_class} to move "
                f"objects to (lifecycle transitions can name: {offered})"
            )
        if step.days <= previous.days and previous.storage_class != "STANDARD":
            raise UsageError(
                f"{where}: days must increase along the ladder "
                f"({previous} comes first and is not earlier)"
            )
        if step.storage_class == previous.storage_class:
            raise UsageError(f"{where}: objects are already in {previous.storage_class}")
        allowed = NEXT_CLASSES.get(previous.storage_class)
        if rules.classes is not None and allowed is not None:
            if step.storage_class not in allowed:
                raise UsageError(
                    f"{where}: S3 cannot move objects from {previous.storage_class} to "
                    f"{step.storage_class} (allowed next: {', '.join(sorted(allowed)) or 'none'})"
                )
            floor = MIN_DAYS_IN_CLASS.get(step.storage_class, 0)
            if step.days < floor:
                raise UsageError(
                    f"{where}: S3 moves objects to {step.storage_class} no earlier than "
                    f"{floor} days after they are written"
                )
            stay = MIN_DAYS_IN_CLASS.get(previous.storage_class, 0)
            if step.days - previous.days < stay:
                raise UsageError(
                    f"{where}: objects must stay {stay} days in {previous.storage_class} "
                    f"before moving on (they would stay {step.days - previous.days})"
                )
        billed = rules.minimum_days.get(previous.storage_class, 0)
        if step.days - previous.days < billed:
            warnings.append(
                f"objects leave {previous.storage_class} after {step.days - previous.days} "
                f"days, before its {billed}-day minimum: each is billed the rest as an "
                "early-deletion fee"
            )
        previous = step
    return warnings


def data_prefix(prefix: str) -> str:
    """The key prefix of a repository's packs of file contents: `<prefix>/data/`."""
    return f"{prefix}/data/" if prefix else "data/"


def repository_prefix(prefix: str) -> str:
    """The key prefix of everything in a repository (empty: the whole bucket)."""
    return f"{prefix}/" if prefix else ""


def rule_ids(prefix: str) -> dict[str, str]:
    """The IDs of the rules bbackup writes for the repository at `prefix`, by purpose. The
    repository's prefix is part of the ID, so repositories sharing a bucket own their own
    rules."""
    scope = repository_prefix(prefix) or "/"
    return {
        "tiering": f"{RULE_ID_PREFIX}tiering:{scope}",
        "abort-multipart": f"{RULE_ID_PREFIX}abort-multipart:{scope}",
        "noncurrent": f"{RULE_ID_PREFIX}noncurrent:{scope}",
    }


def build_rules(prefix: str, ladder: Ladder) -> list[dict[str, Any]]:
    """The rules for the repository at key prefix `prefix`, in S3's LifecycleConfiguration
    shape (the `Rules` list), in a fixed order: tiering, abort-multipart, noncurrent.

    Only `<prefix>/data/` is ever transitioned: config, keys, index, snapshots, trees and
    locks are read by every command and must stay instantly readable (DESIGN §4).
    """
    ids = rule_ids(prefix)
    rules: list[dict[str, Any]] = []
    if ladder.transitions:
        rules.append(
            {
                "ID": ids["tiering"],
                "Filter": {"Prefix": data_prefix(prefix)},
                "Status": "Enabled",
                "Transitions": [
                    {"Days": t.days, "StorageClass": t.storage_class} for t in ladder.transitions
                ],
            }
        )
    if ladder.abort_multipart_days:
        rules.append(
            {
                "ID": ids["abort-multipart"],
                "Filter": {"Prefix": repository_prefix(prefix)},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": ladder.abort_multipart_days
                },
            }
        )
    if ladder.noncurrent_days:
        rules.append(
            {
                "ID": ids["noncurrent"],
                "Filter": {"Prefix": repository_prefix(prefix)},
                "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": ladder.noncurrent_days},
            }
        )
    return rules


def lifecycle_configuration(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The document `put-bucket-lifecycle-configuration` takes."""
    return {"Rules": rules}


def owned_by(rule: Mapping[str, Any], prefix: str) -> bool:
    """Whether bbackup wrote `rule` for the repository at `prefix` (rules of another
    repository in the same bucket are not ours to change)."""
    return str(rule.get("ID", "")) in rule_ids(prefix).values()


def written_by_bbackup(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("ID", "")).startswith(RULE_ID_PREFIX)
