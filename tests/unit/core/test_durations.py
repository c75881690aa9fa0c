"""The one duration grammar: what each unit means, that ``m`` is refused as ambiguous, and
that every refusal says what to write instead."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bbackup.durations import Duration, parse_duration


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("30d", Duration(days=30)),
        ("1y2mo3d4h", Duration(years=1, months=2, days=3, hours=4)),
        (" 4h3d ", Duration(days=3, hours=4)),
        ("12mo", Duration(months=12)),
        ("90min", Duration(minutes=90)),
        ("2w", Duration(weeks=2)),
        ("0s", Duration()),
        ("0d", Duration()),
        ("1d12h30min15s", Duration(days=1, hours=12, minutes=30, seconds=15)),
        ("5min1mo", Duration(months=1, minutes=5)),
    ],
)
def test_parses_each_unit(text: str, duration: Duration) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize("text", ["30d", "1y2mo3d4h", "2mo", "36h", "90min", "2w", "1d30s"])
def test_duration_prints_as_written(text: str) -> None:
    assert str(parse_duration(text)) == text


def test_zero_prints_as_zero_seconds() -> None:
    assert str(Duration()) == "0s"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86_400),
        ("90min", 5_400),
        ("0s", 0),
        ("1d12h", 129_600),
        ("2w", 1_209_600),
        ("45s", 45),
    ],
)
def test_clock_units_convert_to_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["1mo", "1y", "1y2d"])
def test_months_and_years_have_no_number_of_seconds(text: str) -> None:
    with pytest.raises(ValueError, match=r"no fixed length .* write days or weeks instead"):
        parse_duration(text).total_seconds()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30m", "ambiguous unit 'm' in '30m': write '30min' for minutes or '30mo' for months"),
        ("1h30m", "ambiguous unit 'm' in '1h30m': write '30min' for minutes or '30mo' for"),
        ("2M", "ambiguous unit 'M' in '2M': write '2min' for minutes or '2mo' for months"),
        ("", "empty duration: write a number and a unit, e.g. 30d"),
        ("   ", "empty duration"),
        ("30", "no unit after 30 in '30': add one of s, min, h, d, w, mo or y, e.g. 30d"),
        ("1y30", "no unit after 30 in '1y30'"),
        ("2x", "unknown unit 'x' in '2x': use s, min, h, d, w, mo or y"),
        ("2days", "unknown unit 'days'"),
        ("d", "expected a number at 'd' in 'd'"),
        ("-1d", "expected a number at '-1d'"),
        ("1.5h", "whole numbers only in '1.5h': use a smaller unit, e.g. 90min for 1.5h"),
        ("1d2d", "unit 'd' given more than once in '1d2d'"),
        ("3 d", "no unit after 3 in '3 d'"),
        ("1234567890s", "number 1234567890 is too large"),
    ],
)
def test_refuses_bad_durations_saying_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(text)


def test_durations_are_never_negative() -> None:
    with pytest.raises(ValueError, match="days must not be negative"):
        Duration(days=-1)


NEWEST = datetime(2021, 3, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "cutoff"),
    [
        # Go's AddDate: "2021-02-31" rolls over to 3 March.
        ("1mo", datetime(2021, 3, 3, 12, 0, tzinfo=UTC)),
        ("1y", datetime(2020, 3, 31, 12, 0, tzinfo=UTC)),
        ("2w", datetime(2021, 3, 17, 12, 0, tzinfo=UTC)),
        ("1d", datetime(2021, 3, 30, 12, 0, tzinfo=UTC)),
        ("90min", datetime(2021, 3, 31, 10, 30, tzinfo=UTC)),
        ("1d1h1min1s", datetime(2021, 3, 30, 10, 58, 59, tzinfo=UTC)),
    ],
)
def test_before_moves_the_calendar_then_the_clock(text: str, cutoff: datetime) -> None:
    assert parse_duration(text).before(NEWEST) == cutoff


def test_a_span_before_year_one_has_no_instant() -> None:
    assert parse_duration("999999999y").before(NEWEST) is None
    assert parse_duration("999999999w").before(NEWEST) is None
