"""Calendar months, the unit of partitioning and of Aperiodic's monthly files.

Never imports dagster.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1..12, got {self.month}")

    @classmethod
    def parse(cls, key: str) -> Month:
        """Accept ``YYYY-MM`` (the partition key) or ``YYYY-MM-DD`` (any day in it)."""
        try:
            parts = key.split("-")
            return cls(int(parts[0]), int(parts[1]))
        except (IndexError, ValueError):
            raise ValueError(f"not a month: {key!r}; expected YYYY-MM") from None

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @property
    def key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def start(self) -> datetime:
        """Inclusive start, naive UTC."""
        return datetime(self.year, self.month, 1)

    @property
    def end(self) -> datetime:
        """Exclusive end (first instant of the next month), naive UTC."""
        return datetime.combine(self.last_day + timedelta(days=1), datetime.min.time())

    def next(self) -> Month:
        return Month.of(self.last_day + timedelta(days=1))

    def previous(self) -> Month:
        return Month.of(self.first_day - timedelta(days=1))

    def __str__(self) -> str:
        return self.key


def month_range(first: Month, last: Month) -> list[Month]:
    """Every month from ``first`` to ``last``, inclusive."""
    months, m = [], first
    while m <= last:
        months.append(m)
        m = m.next()
    return months
