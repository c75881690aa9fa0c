"""Spans of time given on the command line: the one grammar every duration flag reads.

A duration is whole numbers with units, such as ``30d``, ``90min`` or ``1y2mo3d``. A bare
``m`` is refused as ambiguous (restic reads it as months, most other tools as minutes),
so the same letter never means two things. Pure functions over plain data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Final

#: Each unit and the Duration field it sets, largest first (the order they are printed in).
UNITS: Final = {
    "y": "years",
    "mo": "months",
    "w": "weeks",
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
}

#: Seconds in each unit of fixed length; months and years have none.
_FIXED_SECONDS: Final = {
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}

_TOKEN = re.compile(r"(\d+)(\.\d*)?([A-Za-z]*)")
# Nine digits are enough for any real span, and few enough that no sum of them overflows a
# float or a timedelta before ``before`` can catch it.
_MAX_DIGITS = 9
_UNIT_LIST = "s, min, h, d, w, mo or y"


@dataclass(frozen=True)
class Duration:
    """A span such as ``1y2mo3d4h``. As restic's ``Duration``, years, months, weeks and
    days move the calendar, hours, minutes and seconds move the clock (see ``before``)."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"duration {field.name} must not be negative")

    def is_zero(self) -> bool:
        return not any(getattr(self, field.name) for field in fields(self))

    def is_calendar(self) -> bool:
        """True if the span has months or years, whose length depends on the date."""
        return bool(self.years or self.months)

    def total_seconds(self) -> int:
        """The span as elapsed seconds (a day is 86 400 s).

        Raises ValueError, with a message fit to show the user, if the span has months or
        years: they have no fixed length.
        """
        if self.is_calendar():
            raise ValueError(
                f"months and years have no fixed length in {str(self)!r}: "
                "write days or weeks instead, e.g. '30d' or '52w'"
            )
        return sum(getattr(self, name) * seconds for name, seconds in _FIXED_SECONDS.items())

    def before(self, moment: datetime) -> datetime | None:
        """The instant this span before ``moment``, or None if that is before year 1.

        As Go's ``AddDate(-y, -m, -d).Add(-h * time.Hour)``: a day that its month lacks
        rolls over (31 March minus one month is 3 March, or 2 March in a leap year), and
        hours, minutes and seconds are elapsed time, not wall-clock time.
        """
        year, month0 = divmod((moment.year - self.years) * 12 + moment.month - 1 - self.months, 12)
        days = 7 * self.weeks + self.days
        clock = timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)
        try:
            first = moment.replace(year=year, month=month0 + 1, day=1)
            shifted = first + timedelta(days=moment.day - 1 - days)
            return shifted.astimezone(UTC) - clock
        except (ValueError, OverflowError):
            return None

    def __str__(self) -> str:
        spans = ((getattr(self, name), unit) for unit, name in UNITS.items())
        return "".join(f"{value}{unit}" for value, unit in spans if value) or "0s"


def parse_duration(text: str) -> Duration:
    """Parse a duration such as ``30d``, ``90min`` or ``1y2mo3d4h``.

    Units are s, min, h, d, w, mo (months) and y, each at most once, in any order, after
    a whole number. Raises ValueError with a one-line message fit to show the user that
    says what to write instead.
    """
    source = text.strip()
    if not source:
        raise ValueError("empty duration: write a number and a unit, e.g. 30d or 90min")
    spans: dict[str, int] = {}
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise ValueError(f"expected a number at {source[position:]!r} in {source!r}")
        number, fraction, unit = match.groups()
        if len(number) > _MAX_DIGITS:
            raise ValueError(f"number {number} is too large in {source!r}")
        if fraction is not None:
            raise ValueError(
                f"whole numbers only in {source!r}: use a smaller unit, e.g. 90min for 1.5h"
            )
        if unit.lower() == "m":
            raise ValueError(
                f"ambiguous unit {unit!r} in {source!r}: "
                f"write '{number}min' for minutes or '{number}mo' for months"
            )
        if not unit:
            raise ValueError(
                f"no unit after {number} in {source!r}: add one of {_UNIT_LIST}, e.g. {number}d"
            )
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r} in {source!r}: use {_UNIT_LIST}")
        if UNITS[unit] in spans:
            raise ValueError(f"unit {unit!r} given more than once in {source!r}")
        spans[UNITS[unit]] = int(number)
        position = match.end()
    return Duration(**spans)
