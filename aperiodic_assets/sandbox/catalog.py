"""What the sandbox publishes: exchanges, symbols with listing dates, and which files exist.

Owns the file layout rules (monthly files before ``daily_from``, daily files from it on, a mixed
month made of both when ``daily_from`` is not a 1st, nothing before a symbol's listing day or
on/after "today") and the
object paths that file URLs point at. Pure and clock-free: the caller passes ``today``.
:data:`LISTINGS` holds realistic instruments; :func:`build_listings` adds synthetic ones, served
like the real ones, for scale tests that need many instruments. Never imports dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import quote, unquote

from ..core.months import Month, month_range
from ..core.schema import INTERVALS, METRIC, TIMESTAMP_MODES

#: exchange -> Atlas symbol -> first day with data (realistic listing dates).
LISTINGS: dict[str, dict[str, date]] = {
    "binance-futures": {
        "perpetual-BTC-USDT:USDT": date(2019, 9, 8),
        "perpetual-ETH-USDT:USDT": date(2019, 11, 27),
        "perpetual-SOL-USDT:USDT": date(2020, 9, 14),
    },
    "okx-perps": {
        "perpetual-BTC-USDT:USDT": date(2020, 1, 2),
        "perpetual-ETH-USDT:USDT": date(2020, 1, 2),
        "perpetual-SOL-USDT:USDT": date(2021, 4, 23),
    },
    "hyperliquid-perps": {
        "perpetual-BTC-USDC:USDC": date(2023, 6, 1),
        "perpetual-ETH-USDC:USDC": date(2023, 6, 1),
        "perpetual-HYPE-USDC:USDC": date(2024, 11, 29),
    },
}

#: Listing day of every synthetic symbol: the universe's first month, so backfills find data.
SYNTHETIC_LISTED = date(2024, 1, 1)

FILES_PREFIX = "/files"
ONE_DAY = timedelta(days=1)

Listings = Mapping[str, Mapping[str, date]]


def synthetic_symbol(n: int) -> str:
    """The ``n``-th synthetic symbol (from 1): ``perpetual-SYN0001-USDT:USDT``.

    The same on every exchange and independent of how many are listed, so a benchmark can name
    its instruments without asking the sandbox. Free of ``| , [ ] .``: a valid instrument.
    """
    return f"perpetual-SYN{n:04d}-USDT:USDT"


def build_listings(synthetic: int = 0) -> dict[str, dict[str, date]]:
    """A fresh copy of :data:`LISTINGS` plus ``synthetic`` synthetic symbols on every exchange.

    Each sandbox keeps its own copy, so sandboxes in one process can list different symbols.
    """
    if synthetic < 0:
        raise ValueError(f"synthetic_symbols must be >= 0, got {synthetic}")
    extra = {synthetic_symbol(n): SYNTHETIC_LISTED for n in range(1, synthetic + 1)}
    return {exchange: {**listed, **extra} for exchange, listed in LISTINGS.items()}


def symbols(exchange: str, listings: Listings = LISTINGS) -> list[str]:
    """Symbols listed on ``exchange``; ``KeyError`` for an unknown exchange."""
    return sorted(listings[exchange])


def listing_date(exchange: str, symbol: str) -> date:
    """First day with data of a real symbol; ``KeyError`` for an unknown exchange or symbol."""
    return LISTINGS[exchange][symbol]


@dataclass(frozen=True)
class FileSpan:
    """One published file: a whole/partial month (``day is None``) or a single day."""

    year: int
    month: int
    day: int | None
    first: date
    end: date  # exclusive

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """Chronological order; a month's monthly file sorts before its daily files."""
        return (self.year, self.month, self.day or 0)

    @property
    def month_key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def label(self) -> str:
        """``2026-07`` for a monthly file, ``2026-08-05`` for a daily one."""
        return self.month_key if self.day is None else f"{self.month_key}-{self.day:02d}"

    def entry(self) -> dict[str, int]:
        """The list-response fields, without the URL."""
        out = {"year": self.year, "month": self.month}
        if self.day is not None:
            out["day"] = self.day
        return out


@dataclass(frozen=True)
class FileId:
    """Which object a file URL names; the inverse of :func:`object_path`."""

    exchange: str
    symbol: str
    interval: str
    timestamp: str
    year: int
    month: int
    day: int | None

    @property
    def month_key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def object_path(
    exchange: str, symbol: str, interval: str, timestamp: str, span: FileSpan | FileId
) -> str:
    """The URL path of a file.

    ``/files/l1_imbalance/<exchange>/<symbol>/<interval>/<ts>/<YYYY>/<MM>[/<DD>].parquet``;
    every segment is percent-quoted (the symbol's ``:`` becomes ``%3A``).
    """
    parts = [METRIC, exchange, symbol, interval, timestamp, f"{span.year:04d}", f"{span.month:02d}"]
    if span.day is not None:
        parts.append(f"{span.day:02d}")
    return FILES_PREFIX + "/" + "/".join(quote(p, safe="") for p in parts) + ".parquet"


def parse_object_path(path: str) -> FileId | None:
    """The :class:`FileId` a ``/files/...`` path names, or ``None`` if it names no possible object.

    Only the shape is checked here (known metric, exchange, interval, mode, numeric date parts);
    whether the object exists is the catalog's business.
    """
    if not path.startswith(FILES_PREFIX + "/") or not path.endswith(".parquet"):
        return None
    segments = [unquote(s) for s in path[len(FILES_PREFIX) + 1 : -len(".parquet")].split("/")]
    if len(segments) not in (7, 8) or segments[0] != METRIC:
        return None
    _, exchange, symbol, interval, timestamp, *ymd = segments
    if exchange not in LISTINGS or interval not in INTERVALS or timestamp not in TIMESTAMP_MODES:
        return None
    if not all(s.isdigit() for s in ymd):
        return None
    year, month, *day = (int(s) for s in ymd)
    if not 1 <= month <= 12:
        return None
    return FileId(exchange, symbol, interval, timestamp, year, month, day[0] if day else None)


@dataclass(frozen=True)
class Calendar:
    """The publication rules at one moment: files exist for days before ``today``.

    Months before ``daily_from`` are published as one monthly file, days from ``daily_from`` on as
    daily files. Aperiodic switches on a 1st (2026-08-01), so no month mixes the two; when
    ``daily_from`` is not a 1st, its month is a mixed month: a monthly file for the days before
    it plus daily files for the rest (what an older record of the service described, and an order
    the official client still pins).
    """

    today: date
    daily_from: date

    def month_files(self, listing: date, month: Month) -> list[FileSpan]:
        """Every file published for ``month`` of a symbol listed on ``listing``, in order."""
        lo = max(month.first_day, listing)
        hi = min(month.last_day, self.today - ONE_DAY)
        if lo > hi:
            return []
        files = []
        monthly_hi = min(hi, self.daily_from - ONE_DAY)
        if lo <= monthly_hi:
            files.append(FileSpan(month.year, month.month, None, lo, monthly_hi + ONE_DAY))
        day = max(lo, self.daily_from)
        while day <= hi:
            files.append(FileSpan(day.year, day.month, day.day, day, day + ONE_DAY))
            day += ONE_DAY
        return files

    def files(self, listing: date, start: date, end: date) -> list[FileSpan]:
        """Files overlapping ``start..end`` (both inclusive), chronologically."""
        first = Month.of(max(start, listing))
        last = Month.of(min(end, self.today - ONE_DAY))
        out: list[FileSpan] = []
        for month in month_range(first, last):
            out += [
                f
                for f in self.month_files(listing, month)
                if f.first <= end and f.end - ONE_DAY >= start
            ]
        return out

    def find(self, listing: date, year: int, month: int, day: int | None) -> FileSpan | None:
        """The published file with this identity, or ``None`` if there is no such object."""
        for span in self.month_files(listing, Month(year, month)):
            if span.day == day:
                return span
        return None
