"""What a sandbox is started with and what it remembers while it runs.

Owns :class:`SandboxConfig`, :class:`SandboxState` (the clock, republished months, corruption
and shape rules, injected faults, the request log, the URL signer) and :class:`CorruptionRule`.
Every steering action is a :class:`SandboxState` method; ``steering.py`` exposes them over HTTP
and on the handles. Knows nothing of HTTP; never imports dagster.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from ..core.months import Month
from . import faults as fx
from .catalog import Calendar, Listings, build_listings
from .corruption import MODES
from .shapes import SHAPES
from .signing import Signer

#: Corruption modes (see corruption.py), each caught by one validation check.
CORRUPTION_MODES: tuple[str, ...] = tuple(MODES)
#: Shape modes (see shapes.py): the same data stored another way.
SHAPE_MODES: tuple[str, ...] = tuple(SHAPES)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class SandboxConfig:
    """Everything a sandbox is started with; every field is also a CLI flag."""

    api_key: str = "sandbox"
    #: The sandbox clock: files exist for days before it. ``None`` = the real UTC date, always.
    today: date | None = None
    #: Aperiodic serves monthly files up to 2026-07-31 and one file per day from 2026-08-01 on,
    #: never both in one month. A day other than the 1st makes its month a mixed month (a monthly
    #: file for the days before it, then daily files), which the official client still handles.
    daily_from: date = date(2026, 8, 1)
    url_ttl_s: int = 300
    host: str = "127.0.0.1"
    port: int = 0
    #: Print one line per request (method, path, status; never the query string) to stderr.
    verbose: bool = False
    #: URL-signing secret; random per instance when ``None`` (URLs die with the process).
    secret: str | None = None
    #: Extra symbols per exchange (``catalog.synthetic_symbol``), for scale tests.
    synthetic_symbols: int = 0


@dataclass(frozen=True)
class CorruptionRule:
    """Files matching every given filter are served corrupted or shaped by ``mode``.

    ``days`` limits the rule to the daily files of those days of the month (never a monthly
    file); ``None`` matches every file.
    """

    mode: str
    exchange: str | None = None
    symbol: str | None = None
    month: str | None = None
    days: tuple[int, ...] | None = None

    def matches(self, exchange: str, symbol: str, month: str, day: int | None) -> bool:
        return (
            (self.exchange is None or self.exchange == exchange)
            and (self.symbol is None or self.symbol == symbol)
            and (self.month is None or self.month == month)
            and (self.days is None or day in self.days)
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["days"] = None if self.days is None else list(self.days)
        return out


def as_date(value: date | str) -> date:
    """A date from a date, a datetime or strict ``YYYY-MM-DD`` text (as the API accepts it)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"not a date: {text!r}; expected YYYY-MM-DD")
    return date.fromisoformat(text)


def _days(days: list[int] | None) -> tuple[int, ...] | None:
    """Validated days of a month, sorted and unique; ``None`` stays ``None`` (every file)."""
    if days is None:
        return None
    if isinstance(days, (str, int)) or not days:
        raise ValueError(f"days must be a non-empty list of days of the month, got {days!r}")
    out = sorted({int(d) for d in days})
    if out[0] < 1 or out[-1] > 31:
        raise ValueError(f"days must lie in 1..31, got {list(days)}")
    return tuple(out)


def _month_key(month: str | Month | None) -> str | None:
    if month is None:
        return None
    return month.key if isinstance(month, Month) else Month.parse(str(month)).key


class SandboxState:
    """The mutable state of one sandbox; every method is thread-safe."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        #: This sandbox's exchange -> symbol -> listing day; never changes after start.
        self.listings: Listings = build_listings(config.synthetic_symbols)
        self._lock = threading.RLock()
        self._today = config.today
        self._daily_from = config.daily_from
        self._revisions: dict[tuple[str, str, str], int] = {}
        self._corruptions: list[CorruptionRule] = []
        self._log: list[dict[str, Any]] = []
        self.faults = fx.FaultBook()
        secret = config.secret.encode() if config.secret else secrets.token_bytes(32)
        self.signer = Signer(secret)
        #: Set on shutdown so stalled responses stop sleeping.
        self.stopping = threading.Event()

    # --- clock and publication rules
    @property
    def today(self) -> date:
        with self._lock:
            return self._today or datetime.now(UTC).date()

    def calendar(self) -> Calendar:
        with self._lock:
            return Calendar(self.today, self._daily_from)

    def set_today(self, today: date | str | None = None) -> None:
        """Move the sandbox clock (``None``: follow the real UTC date again)."""
        with self._lock:
            self._today = None if today is None else as_date(today)

    def set_daily_from(self, daily_from: date | str) -> None:
        with self._lock:
            self._daily_from = as_date(daily_from)

    # --- content changes
    def republish(self, exchange: str, symbol: str, month: str | Month, revision: int = 1) -> None:
        """Serve ``month``'s files (monthly and daily, every interval and mode) at ``revision``."""
        _require_instrument(self.listings, exchange, symbol)
        key = (exchange, symbol, _month_key(month) or "")
        with self._lock:
            if int(revision) == 0:
                self._revisions.pop(key, None)
            else:
                self._revisions[key] = int(revision)

    def revision(self, exchange: str, symbol: str, month: str) -> int:
        with self._lock:
            return self._revisions.get((exchange, symbol, month), 0)

    def corrupt(
        self,
        mode: str,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        days: list[int] | None = None,
    ) -> None:
        """Serve matching files corrupted (a ``MODES`` mode) or reshaped (a ``SHAPES`` mode).

        ``days`` limits the rule to the daily files of those days (``None``: every file).
        Rules accumulate. For a file, the most recent matching corruption applies, then every
        matching shape in the order given (each mode once): shapes stack, and stack on a
        corruption, as a real object can be both unsorted and hive-partitioned.
        """
        if mode not in CORRUPTION_MODES and mode not in SHAPE_MODES:
            raise ValueError(
                f"unknown corruption mode {mode!r}; expected one of"
                f" {CORRUPTION_MODES + SHAPE_MODES}"
            )
        if exchange is not None and exchange not in self.listings:
            raise ValueError(f"unknown exchange {exchange!r}")
        rule = CorruptionRule(mode, exchange, symbol, _month_key(month), _days(days))
        with self._lock:
            self._corruptions.append(rule)

    def clear_corruption(self) -> None:
        with self._lock:
            self._corruptions.clear()

    def treatment(
        self, exchange: str, symbol: str, month: str, day: int | None
    ) -> tuple[str | None, tuple[str, ...]]:
        """How a file is served: its corruption mode (or ``None``) and its shapes, in order."""
        with self._lock:
            rules = list(self._corruptions)
        matching = [r.mode for r in rules if r.matches(exchange, symbol, month, day)]
        corruption = next((m for m in reversed(matching) if m in MODES), None)
        shapes = tuple(dict.fromkeys(m for m in matching if m in SHAPES))
        return corruption, shapes

    # --- faults
    def inject(
        self,
        fault: str,
        count: int = 1,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        **params: Any,
    ) -> None:
        """Add a fault (see ``faults.FAULTS``) for the next ``count`` matching requests."""
        self.faults.add(fx.make_fault(fault, count, exchange, symbol, _month_key(month), **params))

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- request log
    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._log]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "today": self.today.isoformat(),
                "clock": "fixed" if self._today else "real",
                "daily_from": self._daily_from.isoformat(),
                "url_ttl_s": self.config.url_ttl_s,
                "revisions": [
                    {"exchange": e, "symbol": s, "month": m, "revision": r}
                    for (e, s, m), r in sorted(self._revisions.items())
                ],
                "corruptions": [rule.as_dict() for rule in self._corruptions],
                "faults": self.faults.active(),
            }


def _require_instrument(listings: Listings, exchange: str, symbol: str) -> None:
    if exchange not in listings:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {sorted(listings)}")
    if symbol not in listings[exchange]:
        raise ValueError(f"unknown symbol {symbol!r} on {exchange}")
