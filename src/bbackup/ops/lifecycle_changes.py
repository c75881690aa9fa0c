"""What `lifecycle apply` changes and what `lifecycle show` says: the bucket's rules merged
with ours (foreign rules kept as they are), the difference as a list of changes, and each
rule explained in words, with a warning for any rule that would break the repository.

Pure: rules are plain dicts in S3's LifecycleConfiguration shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bbackup.ops.lifecycle_rules import (
    data_prefix,
    owned_by,
    repository_prefix,
    written_by_bbackup,
)

ADD = "add"
REMOVE = "remove"
CHANGE = "change"


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One rule `apply` adds, removes or replaces."""

    kind: str  # ADD, REMOVE or CHANGE
    rule_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.kind, "id": self.rule_id, "before": self.before, "after": self.after}


def merge_rules(
    current: Sequence[Mapping[str, Any]], ours: Sequence[Mapping[str, Any]], prefix: str
) -> list[dict[str, Any]]:
    """The bucket's rules after `apply`: every rule this repository does not own, unchanged
    and in its order, then ours."""
    kept = [dict(rule) for rule in current if not owned_by(rule, prefix)]
    return kept + [dict(rule) for rule in ours]


def rule_changes(
    current: Sequence[Mapping[str, Any]], merged: Sequence[Mapping[str, Any]]
) -> list[RuleChange]:
    """How `merged` differs from `current`, rule by rule (by ID; order does not matter, and
    neither do the defaults a store fills in when it returns a rule)."""
    before = {_rule_id(r, i): normalize_rule(r) for i, r in enumerate(current)}
    after = {_rule_id(r, i): normalize_rule(r) for i, r in enumerate(merged)}
    changes = []
    for rule_id, rule in after.items():
        if rule_id not in before:
            changes.append(RuleChange(ADD, rule_id, None, rule))
        elif before[rule_id] != rule:
            changes.append(RuleChange(CHANGE, rule_id, before[rule_id], rule))
    for rule_id, rule in before.items():
        if rule_id not in after:
            changes.append(RuleChange(REMOVE, rule_id, rule, None))
    return changes


def _rule_id(rule: Mapping[str, Any], position: int) -> str:
    # S3 assigns an ID when none is given; a rule read back without one is still one rule.
    return str(rule.get("ID") or f"(rule {position + 1} without an ID)")


def normalize_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule in one canonical spelling: the legacy top-level `Prefix` as a filter, empty
    and null fields dropped, numbers as ints, transitions in order of days."""
    out: dict[str, Any] = {}
    for key, value in rule.items():
        if value is None or value == [] or value == {}:
            continue
        if key == "Prefix":
            out.setdefault("Filter", {"Prefix": value})
            continue
        out[key] = _canonical(value)
    if "Filter" in rule and rule["Filter"] is not None:
        out["Filter"] = _canonical(rule["Filter"]) or {"Prefix": ""}
    for key in ("Transitions", "NoncurrentVersionTransitions"):
        if key in out:
            out[key] = sorted(out[key], key=lambda t: (t.get("Days", 0), str(t.get("Date", ""))))
    return out


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- explaining rules in words ----------------------------------------------------------


def rule_prefix(rule: Mapping[str, Any]) -> str | None:
    """The key prefix a rule's filter selects ("" for the whole bucket); None if the filter
    also selects by tags or size, so it covers only some objects under its prefix."""
    if "Prefix" in rule and "Filter" not in rule:
        return str(rule["Prefix"] or "")
    filt = rule.get("Filter") or {}
    if set(filt) <= {"Prefix"}:
        return str(filt.get("Prefix") or "")
    return None


def _filter_words(rule: Mapping[str, Any]) -> str:
    filt = rule.get("Filter") or {}
    prefix = rule_prefix(rule)
    if prefix is not None:
        return f"objects under {prefix!r}" if prefix else "every object in the bucket"
    parts = []
    inner = filt.get("And", filt)
    if inner.get("Prefix"):
        parts.append(f"under {inner['Prefix']!r}")
    tags = ([inner["Tag"]] if "Tag" in inner else []) + list(inner.get("Tags", ()))
    parts += [f"tagged {t.get('Key')}={t.get('Value')}" for t in tags]
    if "ObjectSizeGreaterThan" in inner:
        parts.append(f"larger than {inner['ObjectSizeGreaterThan']} bytes")
    if "ObjectSizeLessThan" in inner:
        parts.append(f"smaller than {inner['ObjectSizeLessThan']} bytes")
    return "objects " + " and ".join(parts) if parts else "every object in the bucket"


def _when(action: Mapping[str, Any], days_key: str = "Days") -> str:
    if days_key in action:
        days = action[days_key]
        return f"after {days} day{'s' if days != 1 else ''}"
    if "Date" in action:
        return f"on {action['Date']}"
    return "(no time given)"


def describe_actions(rule: Mapping[str, Any]) -> list[str]:
    """What a rule does, one phrase per action."""
    actions = []
    transitions = sorted(rule.get("Transitions") or (), key=lambda t: t.get("Days", 0))
    if transitions:
        steps = ", then ".join(f"to {t.get('StorageClass')} {_when(t)}" for t in transitions)
        actions.append(f"moves them {steps}")
    expiration = rule.get("Expiration") or {}
    if "Days" in expiration or "Date" in expiration:
        actions.append(f"DELETES them {_when(expiration)}")
    if expiration.get("ExpiredObjectDeleteMarker"):
        actions.append("removes delete markers that no longer hide any version")
    for t in rule.get("NoncurrentVersionTransitions") or ():
        actions.append(
            f"moves replaced or deleted versions to {t.get('StorageClass')} "
            f"{_when(t, 'NoncurrentDays')}"
        )
    noncurrent = rule.get("NoncurrentVersionExpiration") or {}
    if "NoncurrentDays" in noncurrent:
        kept = noncurrent.get("NewerNoncurrentVersions")
        extra = f" (keeping the newest {kept})" if kept else ""
        actions.append(
            f"deletes replaced or deleted versions {_when(noncurrent, 'NoncurrentDays')}{extra}"
        )
    abort = rule.get("AbortIncompleteMultipartUpload") or {}
    if "DaysAfterInitiation" in abort:
        actions.append(
            "aborts multipart uploads unfinished "
            f"{_when(abort, 'DaysAfterInitiation')} (their parts stop being billed)"
        )
    return actions or ["does nothing bbackup knows how to describe"]


def describe_rule(rule: Mapping[str, Any], prefix: str) -> str:
    """One rule in words: whose it is, what it selects and what it does."""
    if owned_by(rule, prefix):
        owner = "bbackup, this repository"
    elif written_by_bbackup(rule):
        owner = "bbackup, another repository in this bucket"
    else:
        owner = "foreign: not written by bbackup, never changed by it"
    status = "" if rule.get("Status", "Enabled") == "Enabled" else " [DISABLED]"
    what = "; ".join(describe_actions(rule))
    return f"{rule.get('ID') or '(no ID)'} ({owner}){status}: {_filter_words(rule)}: {what}"


def rule_hazards(rule: Mapping[str, Any], prefix: str) -> list[str]:
    """Why an enabled rule this repository does not own endangers it: deleting its objects,
    or moving objects outside data/ (index, snapshots, trees, keys) to a colder class."""
    if owned_by(rule, prefix) or rule.get("Status", "Enabled") != "Enabled":
        return []
    covered = rule_prefix(rule)
    filt = rule.get("Filter") or {}
    if covered is None:
        covered = str((filt.get("And") or filt).get("Prefix") or "")
    ours = repository_prefix(prefix)
    if not (ours.startswith(covered) or covered.startswith(ours)):
        return []
    rule_id = rule.get("ID") or "(no ID)"
    hazards = []
    expiration = rule.get("Expiration") or {}
    if "Days" in expiration or "Date" in expiration:
        hazards.append(
            f"rule {rule_id} deletes objects of this repository {_when(expiration)}: "
            "snapshots that need them become unrestorable; narrow its filter"
        )
    if rule.get("Transitions") and not covered.startswith(data_prefix(prefix)):
        hazards.append(
            f"rule {rule_id} moves objects of this repository outside {data_prefix(prefix)!r} "
            "(index, snapshots, trees, keys) to another storage class: if that is an archive "
            "class, every command then waits for restores; limit it to the data/ prefix"
        )
    return hazards
