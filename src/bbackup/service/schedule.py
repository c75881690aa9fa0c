"""When jobs run: schedules ("daily 02:00", "weekly sun 03:00", "monthly 1 04:00",
"hourly" or a cron expression), the next and previous slots, the catch-up rule, and which
runs are due a full backup, a prune or a drill. Pure functions; `now` is always a
parameter, so every rule is tested with a fake clock (`local_now` is the real one)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from croniter import croniter
from dateutil.tz import tzlocal

_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SYSTEMD_DAYS: Final = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)

#: Calendar periods that rotation (`full_every`), `prune` and drills are counted in.
PERIODS: Final = ("hourly", "daily", "weekly", "monthly", "yearly")
#: What `prune` and `full_every` accept besides a period.
ALWAYS, NEVER = "always", "never"

SCHEDULE_FORMS = (
    '"hourly", "daily HH:MM", "weekly DAY HH:MM", "monthly DAY-OF-MONTH HH:MM" '
    'or a cron expression such as "30 2 * * *"'
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A job's schedule as written in the config, and the cron expression it means."""

    text: str
    cron: str

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment` (timezone-aware, in its zone)."""
        result: datetime = croniter(self.cron, moment).get_next(datetime)
        return result

    def previous_at(self, moment: datetime) -> datetime:
        """The latest slot at or before `moment`."""
        # croniter's get_prev is strictly before: step past `moment` by a second first.
        result: datetime = croniter(self.cron, moment + timedelta(seconds=1)).get_prev(datetime)
        return result

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        runs: list[datetime] = []
        for _ in range(count):
            moment = self.next_after(moment)
            runs.append(moment)
        return runs


def _clock(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"{text!r} is not a time of day: use HH:MM, e.g. 02:00")
    return int(m.group(1)), int(m.group(2))


def parse_schedule(text: str) -> Schedule:
    """A Schedule, or ValueError with a message fit for the user."""
    words = text.strip().lower().split()
    if not words:
        raise ValueError(f"an empty schedule: use {SCHEDULE_FORMS}")
    kind, args = words[0], words[1:]
    if kind == "hourly" and not args:
        return Schedule(text, "0 * * * *")
    if kind == "hourly" and len(args) == 1 and args[0].isdigit() and int(args[0]) < 60:
        return Schedule(text, f"{int(args[0])} * * * *")
    if kind == "daily" and len(args) == 1:
        hour, minute = _clock(args[0])
        return Schedule(text, f"{minute} {hour} * * *")
    if kind == "weekly" and len(args) == 2:
        day = args[0][:3]
        if day not in _DAYS:
            raise ValueError(f"{args[0]!r} is not a day of the week: use mon, tue, ... sun")
        hour, minute = _clock(args[1])
        return Schedule(text, f"{minute} {hour} * * {_DAYS.index(day)}")
    if kind == "monthly" and len(args) == 2:
        if not args[0].isdigit() or not 1 <= int(args[0]) <= 28:
            # 29-31 would skip short months silently; a cron expression says so explicitly.
            raise ValueError(
                f"{args[0]!r} is not a day of the month from 1 to 28 "
                "(use a cron expression for later days)"
            )
        hour, minute = _clock(args[1])
        return Schedule(text, f"{minute} {hour} {int(args[0])} * *")
    if kind in ("hourly", "daily", "weekly", "monthly"):
        raise ValueError(f"{text!r} is not a schedule: use {SCHEDULE_FORMS}")
    fields = text.split()
    if len(fields) != 5 or not croniter.is_valid(text):
        raise ValueError(f"{text!r} is not a schedule: use {SCHEDULE_FORMS}")
    return Schedule(text, " ".join(fields))


# --- when a job runs -----------------------------------------------------------------


def local_now() -> datetime:
    """The real clock, in the machine's time zone with its daylight-saving rules (a fixed
    offset would put the first slot after a change an hour off)."""
    return datetime.now(tzlocal())


def first_due(schedule: Schedule, last_run: datetime | None, now: datetime) -> datetime:
    """When a job should next start, as the service starts (or reloads) at `now`.

    A job that never ran, or whose last run is older than its latest slot (the machine was
    off, or the service stopped), is due now: once, however many slots were missed.
    Otherwise it is due at its next slot.
    """
    if last_run is None or last_run < schedule.previous_at(now):
        return now
    return schedule.next_after(now)


def due_after_run(schedule: Schedule, started: datetime, finished: datetime) -> datetime:
    """When a job runs next after a run from `started` to `finished`: the first slot after
    it finished. Slots that passed while it ran are skipped, not queued (as a systemd
    timer does), so a job never overlaps itself and never runs twice back to back."""
    return schedule.next_after(max(started, finished))


def skipped_slots(schedule: Schedule, started: datetime, finished: datetime) -> list[datetime]:
    """The slots that elapsed while a run went on (at most 100 listed)."""
    slots: list[datetime] = []
    moment = started
    while len(slots) < 100:
        moment = schedule.next_after(moment)
        if moment > finished:
            break
        slots.append(moment)
    return slots


# --- rotation, prune and drill periods -----------------------------------------------


def period_start(period: str, moment: datetime) -> datetime:
    """The start of the calendar period (in `moment`'s zone) that holds `moment`; weeks
    start on Monday (ISO 8601)."""
    day = moment.replace(minute=0, second=0, microsecond=0)
    if period == "hourly":
        return day
    day = day.replace(hour=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    if period == "yearly":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown period {period!r}")


def period_due(every: str, last: datetime | None, now: datetime) -> bool:
    """True if a step done once per `every` period (or `always`/`never`) is due at `now`,
    given when it was last done: it is due on the first run of each period."""
    if every == NEVER:
        return False
    if every == ALWAYS or last is None:
        return True
    return last < period_start(every, now)


def backup_type_for(full_every: str, last_full: datetime | None, now: datetime) -> str:
    """The rotation: `full` on the first run of each `full_every` period (and when no full
    backup exists yet), `incremental` otherwise; `never` keeps every run incremental."""
    if full_every == NEVER:
        return "incremental"
    return "full" if period_due(full_every, last_full, now) else "incremental"


# --- the system scheduler ------------------------------------------------------------


def _systemd_field(value: str, names: tuple[str, ...] | None, *, first: int) -> str:
    """One cron field in systemd's calendar syntax: ranges `a..b`, steps `a/n`."""
    parts = []
    for part in value.split(","):
        step = ""
        if "/" in part:
            part, n = part.split("/", 1)
            step = f"/{n}"
            if part == "*":
                part = str(first)
            elif "-" in part:
                raise ValueError("a range with a step has no systemd OnCalendar equivalent")
        if names is not None:
            part = "..".join(_day_name(p, names) for p in part.split("-"))
        else:
            part = re.sub(r"\d+", lambda m: m.group().zfill(2), part.replace("-", ".."))
        parts.append(part + step)
    return ",".join(parts)


def _day_name(text: str, names: tuple[str, ...]) -> str:
    if text == "*":
        return text
    if text.isdigit():
        return names[int(text) % 7]
    return names[_DAYS.index(text.lower()[:3])]


def systemd_calendar(schedule: Schedule) -> str:
    """The schedule as a systemd OnCalendar value; ValueError for a cron expression that
    systemd cannot express (cron's either-day-of-month-or-weekday rule, a stepped range)."""
    minute, hour, dom, month, dow = schedule.cron.split()
    if dom != "*" and dow != "*":
        raise ValueError(
            "cron runs when either the day of the month or the weekday matches; "
            "systemd needs both: split the job or use --cron"
        )
    for name in _MONTHS:
        month = month.lower().replace(name, str(_MONTHS.index(name) + 1))
    weekday = "" if dow == "*" else _systemd_field(dow, _SYSTEMD_DAYS, first=0) + " "
    date = f"*-{_systemd_field(month, None, first=1)}-{_systemd_field(dom, None, first=1)}"
    time = f"{_systemd_field(hour, None, first=0)}:{_systemd_field(minute, None, first=0)}:00"
    return f"{weekday}{date} {time}"


# --- health --------------------------------------------------------------------------

#: The longest a run may take before its job counts as overdue.
OVERDUE_GRACE_SECONDS = 3600.0


def overdue_since(
    schedule: Schedule, last_success: datetime | None, now: datetime
) -> datetime | None:
    """The slot a job missed, if it has not succeeded since a slot more than a grace period
    old (an hour, or half the time between slots if that is shorter); None if it is
    healthy. A job that never succeeded is overdue."""
    latest = schedule.previous_at(now)
    interval = (schedule.next_after(latest) - latest).total_seconds()
    grace = timedelta(seconds=min(OVERDUE_GRACE_SECONDS, interval / 2))
    missed = schedule.previous_at(now - grace)
    if last_success is None or last_success < missed:
        return missed
    return None
