"""Schedules, the catch-up rule and the rotation, with a fake clock: every `now` below is
a plain datetime handed to pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bbackup.service.schedule import (
    backup_type_for,
    due_after_run,
    first_due,
    overdue_since,
    parse_schedule,
    period_due,
    skipped_slots,
    systemd_calendar,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "cron", "calendar"),
    [
        ("hourly", "0 * * * *", "*-*-* *:00:00"),
        ("daily 02:00", "0 2 * * *", "*-*-* 02:00:00"),
        ("weekly sun 03:00", "0 3 * * 0", "Sun *-*-* 03:00:00"),
        ("monthly 1 04:00", "0 4 1 * *", "*-*-01 04:00:00"),
        ("*/15 1-5 * * mon-fri", "*/15 1-5 * * mon-fri", "Mon..Fri *-*-* 01..05:00/15:00"),
    ],
)
def test_schedules_mean_a_cron_expression_and_a_systemd_calendar(
    text: str, cron: str, calendar: str
) -> None:
    schedule = parse_schedule(text)
    assert schedule.cron == cron
    assert systemd_calendar(schedule) == calendar


@pytest.mark.parametrize("text", ["dialy 02:00", "daily 2am", "weekly funday 03:00", "* * *"])
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        parse_schedule(text)


def test_next_run_of_a_daily_job() -> None:
    daily = parse_schedule("daily 02:00")
    assert daily.next_after(at("2026-03-10T01:59:00")) == at("2026-03-10T02:00:00")
    assert daily.next_after(at("2026-03-10T02:00:00")) == at("2026-03-11T02:00:00")
    assert daily.upcoming(at("2026-03-10T12:00:00"), 2) == [
        at("2026-03-11T02:00:00"),
        at("2026-03-12T02:00:00"),
    ]


def test_a_job_that_ran_at_its_last_slot_waits_for_the_next() -> None:
    daily = parse_schedule("daily 02:00")
    now = at("2026-03-10T09:00:00")
    assert first_due(daily, at("2026-03-10T02:00:03"), now) == at("2026-03-11T02:00:00")


def test_missed_slots_are_caught_up_once_at_start() -> None:
    """The machine was off for three days: the job runs now, once, then on schedule."""
    daily = parse_schedule("daily 02:00")
    last_run = at("2026-03-07T02:00:00")
    now = at("2026-03-10T09:00:00")
    assert first_due(daily, last_run, now) == now
    # The catch-up run is the run of the latest slot: after it the next slot is tomorrow.
    assert due_after_run(daily, now, now + timedelta(minutes=5)) == at("2026-03-11T02:00:00")


def test_a_job_that_never_ran_is_due_at_once() -> None:
    now = at("2026-03-10T09:00:00")
    assert first_due(parse_schedule("weekly sun 03:00"), None, now) == now


def test_slots_passing_during_a_long_run_are_skipped_not_queued() -> None:
    every_minute = parse_schedule("* * * * *")
    started, finished = at("2026-03-10T09:00:00"), at("2026-03-10T09:03:30")
    assert skipped_slots(every_minute, started, finished) == [
        at("2026-03-10T09:01:00"),
        at("2026-03-10T09:02:00"),
        at("2026-03-10T09:03:00"),
    ]
    assert due_after_run(every_minute, started, finished) == at("2026-03-10T09:04:00")


def test_rotation_is_full_on_the_first_run_of_a_month() -> None:
    last_full = at("2026-02-01T02:00:00")
    assert backup_type_for("monthly", last_full, at("2026-02-28T02:00:00")) == "incremental"
    assert backup_type_for("monthly", last_full, at("2026-03-01T02:00:00")) == "full"
    # A month whose first run was missed: the first run that month is full, whenever it is.
    assert backup_type_for("monthly", last_full, at("2026-03-05T02:00:00")) == "full"
    assert backup_type_for("monthly", at("2026-03-05T02:00:00"), at("2026-03-06T02:00:00")) == (
        "incremental"
    )


def test_rotation_makes_the_first_backup_full_and_never_means_never() -> None:
    assert backup_type_for("weekly", None, at("2026-03-10T02:00:00")) == "full"
    assert backup_type_for("never", None, at("2026-03-10T02:00:00")) == "incremental"


def test_weekly_periods_start_on_monday() -> None:
    sunday, monday = at("2026-03-08T12:00:00"), at("2026-03-09T00:30:00")
    assert not period_due("weekly", at("2026-03-02T00:00:00"), sunday)
    assert period_due("weekly", sunday, monday)
    assert period_due("always", monday, monday)
    assert not period_due("never", None, monday)


def test_cron_either_day_rule_has_no_systemd_calendar() -> None:
    with pytest.raises(ValueError, match="either the day of the month or the weekday"):
        systemd_calendar(parse_schedule("0 3 1 * mon"))


def test_a_daily_job_is_overdue_an_hour_after_a_missed_slot() -> None:
    daily = parse_schedule("daily 02:00")
    yesterday = at("2026-03-09T02:00:05")
    assert overdue_since(daily, yesterday, at("2026-03-10T02:30:00")) is None  # may be running
    assert overdue_since(daily, yesterday, at("2026-03-10T03:01:00")) == at("2026-03-10T02:00:00")
    assert overdue_since(daily, at("2026-03-10T02:00:01"), at("2026-03-10T09:00:00")) is None


def test_a_job_every_minute_is_overdue_after_half_a_minute() -> None:
    every_minute = parse_schedule("* * * * *")
    last = at("2026-03-10T09:00:00")
    assert overdue_since(every_minute, last, at("2026-03-10T09:01:20")) is None
    assert overdue_since(every_minute, last, at("2026-03-10T09:01:40")) == at("2026-03-10T09:01:00")
    assert overdue_since(every_minute, None, at("2026-03-10T09:01:40")) is not None


def test_slots_follow_daylight_saving_changes() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    noon = parse_schedule("daily 12:00")
    # The day clocks go forward: noon is still noon, an hour less after the previous one.
    saturday = datetime(2026, 3, 28, 13, 0, tzinfo=berlin)
    assert noon.next_after(saturday) == datetime(2026, 3, 29, 12, 0, tzinfo=berlin)
    assert noon.next_after(saturday).utcoffset() == timedelta(hours=2)
    # 02:30 does not exist that night: the run happens when the clock jumps to 03:00.
    night = parse_schedule("daily 02:30")
    assert night.next_after(saturday).astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # A month's first run after a change is still found in local time.
    assert (
        backup_type_for(
            "monthly",
            datetime(2026, 3, 31, 23, 30, tzinfo=berlin),
            datetime(2026, 4, 1, 0, 30, tzinfo=berlin),
        )
        == "full"
    )
