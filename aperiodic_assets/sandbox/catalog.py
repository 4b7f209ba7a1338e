"""What the sandbox publishes: exchanges, symbols with listing spans, and which files exist.

Owns the file layout rules (monthly files before ``daily_from``, daily files from it on, a mixed
month made of both when ``daily_from`` is not a 1st, nothing outside a symbol's listed days or
on/after "today") and the object paths that file URLs point at. Pure and clock-free: the caller
passes ``today``. :data:`LISTINGS` holds the small universe's realistic instruments;
:func:`realistic_listings` the realistic universe (hundreds per exchange, some delisted, see
:mod:`.atlas`); :func:`build_listings` either one plus synthetic symbols, served like the real
ones, for scale tests. A symbol's listing is a :class:`Tenure`. Never imports dagster.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import quote, unquote

from ..core.months import Month, month_range
from ..core.schema import INTERVALS, METRIC, TIMESTAMP_MODES
from .atlas import ATLAS, ATLAS_SIZES, Dates, generated

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
#: ``SandboxConfig.universe``: Atlas-sized lists (the default, as the real service answers) or
#: just :data:`LISTINGS`.
UNIVERSES = ("realistic", "small")

FILES_PREFIX = "/files"
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Tenure:
    """The days a symbol has data: half-open ``[listed, delisted)`` spans, in order and apart;
    only the last may be open (``delisted`` ``None``: still listed).

    A delisting cuts every span at its day; a listing joins ``[listed, ...)`` to the spans, so a
    symbol relisted after its delisting has two spans and no data in the gap, and one relisted
    on or before its delisting day is listed without a break again.
    """

    spans: tuple[tuple[date, date | None], ...]

    @classmethod
    def since(cls, listed: date, delisted: date | None = None) -> Tenure:
        if delisted is not None and delisted <= listed:
            raise ValueError(f"delisted {delisted} is not after listed {listed}")
        return cls(((listed, delisted),))

    @property
    def listed(self) -> date:
        """The first day with data."""
        return self.spans[0][0]

    @property
    def delisted(self) -> date | None:
        """The first day without data after the last span; ``None`` while listed."""
        return self.spans[-1][1]

    def covers(self, day: date) -> bool:
        """Whether ``day`` is a listed day (the symbol list shows the symbol on it)."""
        return any(a <= day and (b is None or day < b) for a, b in self.spans)

    def hull(self, first: date, last: date) -> tuple[date, date] | None:
        """The first and the last listed day within ``first..last`` (inclusive), if any."""
        inside = [
            (max(a, first), last if b is None else min(last, b - ONE_DAY)) for a, b in self.spans
        ]
        inside = [(a, b) for a, b in inside if a <= b]
        return (inside[0][0], inside[-1][1]) if inside else None

    def relisted(self, listed: date) -> Tenure:
        """Listed again from ``listed`` on: spans ending before it stay, the rest join it."""
        apart = tuple((a, b) for a, b in self.spans if b is not None and b < listed)
        joined = min([listed] + [a for a, b in self.spans if b is None or b >= listed])
        return Tenure((*apart, (joined, None)))

    def delisted_on(self, day: date) -> Tenure:
        """No data from ``day`` on; ``ValueError`` if that leaves no listed day at all."""
        if day <= self.listed:
            raise ValueError(f"delisted {day} is not after the listing day {self.listed}")
        return Tenure(
            tuple((a, day if b is None or b > day else b) for a, b in self.spans if a < day)
        )


Listings = Mapping[str, Mapping[str, Tenure]]


def synthetic_symbol(n: int) -> str:
    """The ``n``-th synthetic symbol (from 1): ``perpetual-SYN0001-USDT:USDT``.

    The same on every exchange and independent of how many are listed, so a benchmark can name
    its instruments without asking the sandbox. Free of ``| , [ ] .``: a valid instrument.
    """
    return f"perpetual-SYN{n:04d}-USDT:USDT"


@functools.cache
def _realistic(exchange: str, count: int, trading_only: bool) -> tuple[tuple[str, Dates], ...]:
    """The first ``count`` symbols of ``exchange`` (only never-delisted ones if
    ``trading_only``): :data:`LISTINGS`, then :data:`.atlas.ATLAS`, then generated ones."""
    real = [(s, (d, None)) for s, d in LISTINGS[exchange].items()] + list(ATLAS[exchange].items())
    out: dict[str, Dates] = {}
    for symbol, dates in itertools.chain(real, generated(exchange, {s for s, _ in real})):
        if len(out) == count:
            break
        if not trading_only or dates[1] is None:
            out[symbol] = dates
    return tuple(out.items())


def realistic_listings(per_exchange: int | None = None) -> dict[str, dict[str, Dates]]:
    """Exchange -> symbol -> ``(listed, delisted)`` of the realistic universe, a fresh copy.

    By default Atlas's sizes (``atlas.ATLAS_SIZES``: 901, 664 and 434), a fifth to a third of
    them delisted. With ``per_exchange``, exactly that many symbols per exchange, none delisted
    and all listed by ``atlas.LAST_LISTED``: :data:`LISTINGS` first, then the other real ones,
    then generated ones, for scale tests.
    """
    if per_exchange is not None and per_exchange < 0:
        raise ValueError(f"symbols_per_exchange must be >= 0, got {per_exchange}")
    scale = per_exchange is not None
    return {
        exchange: dict(_realistic(exchange, per_exchange if scale else size, scale))
        for exchange, size in ATLAS_SIZES.items()
    }


def build_listings(
    universe: str = "realistic", synthetic: int = 0, per_exchange: int | None = None
) -> dict[str, dict[str, Tenure]]:
    """A sandbox's own listings: ``universe`` (``per_exchange`` symbols of the realistic one when
    given) plus ``synthetic`` synthetic symbols on every exchange.

    Each sandbox keeps its own copy, so sandboxes in one process can list different symbols
    and list or delist them at run time.
    """
    if universe not in UNIVERSES:
        raise ValueError(f"universe must be one of {UNIVERSES}, got {universe!r}")
    if synthetic < 0:
        raise ValueError(f"synthetic_symbols must be >= 0, got {synthetic}")
    if universe == "small" and per_exchange is not None:
        raise ValueError("symbols_per_exchange takes its symbols from the realistic universe")
    if universe == "small":
        base = {e: {s: (d, None) for s, d in listed.items()} for e, listed in LISTINGS.items()}
    else:
        base = realistic_listings(per_exchange)
    extra = {synthetic_symbol(n): (SYNTHETIC_LISTED, None) for n in range(1, synthetic + 1)}
    return {
        exchange: {s: Tenure.since(*dates) for s, dates in {**listed, **extra}.items()}
        for exchange, listed in base.items()
    }


def symbols(exchange: str, listings: Listings, day: date) -> list[str]:
    """Symbols listed on ``exchange`` on ``day``; ``KeyError`` for an unknown exchange."""
    return sorted(s for s, tenure in listings[exchange].items() if tenure.covers(day))


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

    def month_files(self, tenure: Tenure, month: Month) -> list[FileSpan]:
        """Every file published for ``month`` of a symbol listed over ``tenure``, in order.

        A monthly file runs from the month's first to its last listed day (a partial month at a
        listing or a delisting); a gap inside one monthly month (delisted and relisted within
        it) is not modelled: its rows run through the gap.
        """
        hi = min(month.last_day, self.today - ONE_DAY)
        files = []
        monthly = tenure.hull(month.first_day, min(hi, self.daily_from - ONE_DAY))
        if monthly is not None:
            first, last = monthly
            files.append(FileSpan(month.year, month.month, None, first, last + ONE_DAY))
        day = max(month.first_day, self.daily_from)
        while day <= hi:
            if tenure.covers(day):
                files.append(FileSpan(day.year, day.month, day.day, day, day + ONE_DAY))
            day += ONE_DAY
        return files

    def files(self, tenure: Tenure, start: date, end: date) -> list[FileSpan]:
        """Files overlapping ``start..end`` (both inclusive), chronologically."""
        last_day = self.today - ONE_DAY
        if tenure.delisted is not None:
            last_day = min(last_day, tenure.delisted - ONE_DAY)
        first = Month.of(max(start, tenure.listed))
        last = Month.of(min(end, last_day))
        out: list[FileSpan] = []
        for month in month_range(first, last):
            out += [
                f
                for f in self.month_files(tenure, month)
                if f.first <= end and f.end - ONE_DAY >= start
            ]
        return out

    def find(self, tenure: Tenure, year: int, month: int, day: int | None) -> FileSpan | None:
        """The published file with this identity, or ``None`` if there is no such object."""
        for span in self.month_files(tenure, Month(year, month)):
            if span.day == day:
                return span
        return None
