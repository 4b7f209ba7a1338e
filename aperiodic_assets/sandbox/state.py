"""What a sandbox is started with and what it remembers while it runs.

Owns :class:`SandboxConfig`, :class:`SandboxState` (the clock, republished months, corruption
rules, injected faults, the request log, the URL signer) and :class:`CorruptionRule`. Every
steering action is a :class:`SandboxState` method; ``steering.py`` exposes them over HTTP and on
the handles. Knows nothing of HTTP; never imports dagster.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from ..months import Month
from . import faults as fx
from .catalog import Calendar, Listings, build_listings
from .corruption import MODES
from .signing import Signer

#: Corruption modes (see corruption.py), each caught by one validation check.
CORRUPTION_MODES: tuple[str, ...] = tuple(MODES)
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
    """Files matching every given filter are served corrupted by ``mode``."""

    mode: str
    exchange: str | None = None
    symbol: str | None = None
    month: str | None = None

    def matches(self, exchange: str, symbol: str, month: str) -> bool:
        return (
            (self.exchange is None or self.exchange == exchange)
            and (self.symbol is None or self.symbol == symbol)
            and (self.month is None or self.month == month)
        )


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
    ) -> None:
        """Serve matching files through ``apply_corruption(table, mode, interval)``.

        Rules accumulate; for a file, the most recent matching rule wins.
        """
        if mode not in CORRUPTION_MODES:
            raise ValueError(
                f"unknown corruption mode {mode!r}; expected one of {CORRUPTION_MODES}"
            )
        if exchange is not None and exchange not in self.listings:
            raise ValueError(f"unknown exchange {exchange!r}")
        rule = CorruptionRule(mode, exchange, symbol, _month_key(month))
        with self._lock:
            self._corruptions.append(rule)

    def clear_corruption(self) -> None:
        with self._lock:
            self._corruptions.clear()

    def corruption(self, exchange: str, symbol: str, month: str) -> str | None:
        with self._lock:
            for rule in reversed(self._corruptions):
                if rule.matches(exchange, symbol, month):
                    return rule.mode
        return None

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
                "corruptions": [asdict(rule) for rule in self._corruptions],
                "faults": self.faults.active(),
            }


def _require_instrument(listings: Listings, exchange: str, symbol: str) -> None:
    if exchange not in listings:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {sorted(listings)}")
    if symbol not in listings[exchange]:
        raise ValueError(f"unknown symbol {symbol!r} on {exchange}")
