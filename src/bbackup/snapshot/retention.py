"""The retention policy of ``forget``: which snapshots a policy keeps, and why.

It decides as restic's ``ApplyPolicy`` does (restic 0.16 and later, which also keep a
group's oldest snapshot while a rule has counts left), so the same ``--keep-*`` flags
keep the same snapshots (months are written ``mo`` where restic writes ``m``). Pure
functions over plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, Protocol, TypeVar

from bbackup.durations import Duration

#: A ``--keep-<period>`` count meaning "every period that has a snapshot".
UNLIMITED: Final = -1

#: The fields snapshots can be grouped by before a policy is applied to each group.
GROUP_FIELDS: Final = frozenset({"host", "paths", "tags"})

#: Tags that must all be present for ``--keep-tag`` to match (restic's ``TagList``).
TagList = tuple[str, ...]

PERIODS: Final = ("hourly", "daily", "weekly", "monthly", "yearly")


class Retainable(Protocol):
    """What the policy needs to know about a snapshot."""

    @property
    def id(self) -> str: ...

    @property
    def time(self) -> datetime:
        """Timezone-aware; calendar periods are read in this time's own zone."""
        ...

    @property
    def host(self) -> str: ...

    @property
    def paths(self) -> Sequence[str]: ...

    @property
    def tags(self) -> Sequence[str]: ...


T = TypeVar("T", bound=Retainable)


# --- flag values ---------------------------------------------------------------------


def parse_count(text: str) -> int:
    """Parse a ``--keep-<period>`` count: a whole number, or ``unlimited``."""
    value = text.strip()
    if value == "unlimited":
        return UNLIMITED
    if not value.isdigit():
        raise ValueError(f"invalid count {text!r}: expected a whole number or 'unlimited'")
    return int(value)


def parse_tag_list(text: str) -> TagList:
    """Parse one ``--keep-tag`` value: comma-separated tags that must all be present.

    An empty value (``''``) matches snapshots that have no tags, as in restic.
    """
    return tuple(tag.strip() for tag in text.split(","))


# --- the policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """The ``--keep-*`` rules; a snapshot is kept if any rule keeps it.

    A count is how many periods (for ``last``: snapshots) to keep: 0 turns the rule off,
    UNLIMITED keeps every period. A ``within*`` of None or of a zero Duration is off.
    """

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    within_hourly: Duration | None = None
    within_daily: Duration | None = None
    within_weekly: Duration | None = None
    within_monthly: Duration | None = None
    within_yearly: Duration | None = None
    keep_tags: tuple[TagList, ...] = ()

    def __post_init__(self) -> None:
        for rule, count in self.counts().items():
            if count < UNLIMITED:
                raise ValueError(f"keep-{rule} must be a count of 0 or more, or unlimited")

    def counts(self) -> dict[str, int]:
        """The count rules that are on, by name: ``last`` and the periods."""
        counts = {rule: getattr(self, rule) for rule in ("last", *PERIODS)}
        return {rule: count for rule, count in counts.items() if count}

    def windows(self) -> dict[str, Duration]:
        """The ``within_<period>`` rules that are on, by period."""
        windows = {period: getattr(self, f"within_{period}") for period in PERIODS}
        return {period: d for period, d in windows.items() if d is not None and not d.is_zero()}

    def within_on(self) -> Duration | None:
        return None if self.within is None or self.within.is_zero() else self.within

    def is_empty(self) -> bool:
        """True if no rule is on: the CLI refuses to forget with such a policy."""
        return not (self.keep_tags or self.counts() or self.windows() or self.within_on())

    def __str__(self) -> str:
        """The policy in restic's words, e.g. ``keep 3 latest, 7 daily snapshots``."""
        counts = [
            f"{'all' if count == UNLIMITED else count} {'latest' if rule == 'last' else rule}"
            for rule, count in self.counts().items()
        ]
        clauses = [", ".join(counts) + " snapshots"] if counts else []
        clauses += [f"{period} snapshots within {d}" for period, d in self.windows().items()]
        text = ", ".join(clauses)
        if self.keep_tags:
            tag_lists = " ".join(_format_tags(tags) for tags in self.keep_tags)
            text += (" and " if text else "") + f"all snapshots with tags [{tag_lists}]"
        if within := self.within_on():
            text += (" and " if text else "") + f"all snapshots within {within} of the newest"
        return f"keep {text}" if text else "keep everything (empty policy)"


def _format_tags(tags: TagList) -> str:
    return "[" + ", ".join(tags) + "]"


@dataclass(frozen=True)
class Decision(Generic[T]):
    """What the policy does with one snapshot, and every rule that kept it."""

    snapshot: T
    keep: bool
    reasons: tuple[str, ...]


# Two snapshots with the same key share a period. ``last`` gives every snapshot its own.
_PERIOD_KEYS: dict[str, Callable[[datetime, int], int]] = {
    "last": lambda _, position: position,
    "hourly": lambda t, _: t.year * 1_000_000 + t.month * 10_000 + t.day * 100 + t.hour,
    "daily": lambda t, _: t.year * 10_000 + t.month * 100 + t.day,
    "weekly": lambda t, _: t.isocalendar().year * 100 + t.isocalendar().week,
    "monthly": lambda t, _: t.year * 100 + t.month,
    "yearly": lambda t, _: t.year,
}


@dataclass
class _PeriodRule:
    """A count rule (``remaining`` left) or a window rule (after ``cutoff``, unlimited)
    walking the snapshots newest first: it keeps each snapshot that opens a new period."""

    period: str
    reason: str
    remaining: int = UNLIMITED
    cutoff: datetime | None = None
    last_key: int | None = None

    def offer(self, t: datetime, position: int, is_oldest: bool) -> str | None:
        """The reason this rule keeps the snapshot, or None.

        The oldest snapshot is kept even inside the last kept period while the rule has
        counts left: that keeps the longest history the policy allows.
        """
        if (self.cutoff is not None and t <= self.cutoff) or self.remaining == 0:
            return None
        key = _PERIOD_KEYS[self.period](t, position)
        if key != self.last_key:
            reason = self.reason
        elif is_oldest:
            reason = f"oldest {self.reason}"
        else:
            return None
        self.last_key = key
        if self.remaining > 0:
            self.remaining -= 1
        return reason


def apply_policy(
    snapshots: Iterable[T], policy: RetentionPolicy, *, now: datetime | None = None
) -> list[Decision[T]]:
    """Decide for each snapshot of one group whether ``policy`` keeps it; newest first.

    Equal times keep their given order. Durations count back from the newest snapshot,
    not from the clock; as in restic, snapshots at or after ``now`` (when given) are not
    taken as the newest. An empty policy keeps everything.
    """
    given = list(snapshots)
    for snapshot in given:
        if snapshot.time.utcoffset() is None:
            raise ValueError(f"snapshot {snapshot.id} has a time without a timezone")
    ordered = sorted(given, key=lambda s: s.time, reverse=True)
    if policy.is_empty():
        return [Decision(s, True, ("policy is empty",)) for s in ordered]

    newest = next((s.time for s in ordered if now is None or s.time < now), None)
    rules = [
        _PeriodRule(rule, f"{rule} snapshot", remaining=count)
        for rule, count in policy.counts().items()
    ]
    rules += [
        _PeriodRule(period, f"{period} within {d}", cutoff=_cutoff(newest, d))
        for period, d in policy.windows().items()
    ]
    within = policy.within_on()
    within_cutoff = _cutoff(newest, within)

    decisions: list[Decision[T]] = []
    for position, snapshot in enumerate(ordered):
        t = snapshot.time
        reasons = [
            f"has tags {_format_tags(tags)}"
            for tags in policy.keep_tags
            if _has_tags(snapshot, tags)
        ]
        if within and (within_cutoff is None or t > within_cutoff):
            reasons.append(f"within {within}")
        for rule in rules:
            if reason := rule.offer(t, position, is_oldest=position == len(ordered) - 1):
                reasons.append(reason)
        decisions.append(Decision(snapshot, bool(reasons), tuple(reasons)))
    return decisions


def _cutoff(newest: datetime | None, duration: Duration | None) -> datetime | None:
    """Snapshots after the cutoff are within ``duration`` of ``newest``. None means all
    are: no snapshot before ``now``, or a span reaching back before year 1."""
    if newest is None or duration is None:
        return None
    return duration.before(newest)


def _has_tags(snapshot: Retainable, tags: TagList) -> bool:
    """restic's ``HasTags``: all tags present; an empty tag matches an untagged snapshot."""
    for tag in tags:
        if tag == "" and not snapshot.tags:
            return True
        if tag not in snapshot.tags:
            return False
    return True


# --- grouping ------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class GroupKey:
    """What the snapshots of one group share; fields not grouped by are empty."""

    host: str = ""
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


_GROUP_ALIASES = {
    "host": "host",
    "hosts": "host",
    "path": "paths",
    "paths": "paths",
    "tag": "tags",
    "tags": "tags",
}


def parse_group_by(text: str) -> frozenset[str]:
    """Parse ``--group-by``, e.g. ``host,paths``; an empty value means one group."""
    fields = set()
    for name in filter(None, (item.strip() for item in text.split(","))):
        if name not in _GROUP_ALIASES:
            raise ValueError(f"unknown grouping option {name!r}: use host, paths and/or tags")
        fields.add(_GROUP_ALIASES[name])
    return frozenset(fields)


def group_snapshots(snapshots: Iterable[T], group_by: Collection[str]) -> dict[GroupKey, list[T]]:
    """Split snapshots into the groups a policy is applied to one by one.

    Groups come in the order of their first snapshot and keep the given order inside.
    """
    if unknown := set(group_by) - GROUP_FIELDS:
        raise ValueError(f"cannot group by {', '.join(sorted(unknown))}")
    groups: dict[GroupKey, list[T]] = {}
    for snapshot in snapshots:
        key = GroupKey(
            host=snapshot.host if "host" in group_by else "",
            paths=tuple(sorted(snapshot.paths)) if "paths" in group_by else (),
            tags=tuple(sorted(snapshot.tags)) if "tags" in group_by else (),
        )
        groups.setdefault(key, []).append(snapshot)
    return groups


# --- snapshot times the store vouches for --------------------------------------------

#: How far a snapshot's recorded time may be from the moment the store received its
#: document before retention stops believing it: a backup records its start and uploads
#: the snapshot at its end, and clocks drift.
DEFAULT_TIME_TOLERANCE_SECONDS: Final = 86400.0


def suspect_times(
    snapshots: Iterable[T], stored: dict[str, float], tolerance_seconds: float
) -> dict[str, str]:
    """Snapshots whose recorded time is more than ``tolerance_seconds`` away from the
    store's own date of their document (``stored``: snapshot ID → epoch seconds), by ID,
    with the reason. A stolen backup credential can write snapshots with any time; the
    store's date it cannot forge. A snapshot without a store date is not suspect."""
    suspects = {}
    for snapshot in snapshots:
        received = stored.get(snapshot.id)
        if received is None:
            continue
        gap = snapshot.time.timestamp() - received
        if abs(gap) > tolerance_seconds:
            direction = "after" if gap > 0 else "before"
            suspects[snapshot.id] = (
                f"recorded time is {_span(abs(gap))} {direction} the store received it: "
                "kept outside the policy"
            )
    return suspects


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / 3600:.0f} hours"


def apply_policy_trusting_store(
    snapshots: Iterable[T],
    policy: RetentionPolicy,
    stored: dict[str, float],
    *,
    tolerance_seconds: float = DEFAULT_TIME_TOLERANCE_SECONDS,
    now: datetime | None = None,
) -> list[Decision[T]]:
    """``apply_policy`` robust to forged snapshot times: a snapshot whose time the store
    contradicts (``suspect_times``) neither fills a ``--keep-*`` slot nor pushes another
    snapshot out of one; it is kept, with the reason, until removed by ID. The others
    are decided as if it did not exist."""
    given = list(snapshots)
    suspects = suspect_times(given, stored, tolerance_seconds)
    trusted = [s for s in given if s.id not in suspects]
    decisions = apply_policy(trusted, policy, now=now)
    decisions += [Decision(s, True, (suspects[s.id],)) for s in given if s.id in suspects]
    return sorted(decisions, key=lambda d: d.snapshot.time, reverse=True)
