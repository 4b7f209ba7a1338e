"""What a sandbox is started with and what it remembers while it runs.

Owns :class:`SandboxConfig`, :class:`SandboxState` (the clock, the listings and their changes,
republished months, corruption and shape rules, injected faults, the network, the request log,
the URL signer) and :class:`CorruptionRule`.
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
from ..core.universe import field_problem
from . import faults as fx
from .catalog import Calendar, Tenure, build_listings, symbols
from .corruption import MODES
from .network import Network
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
    #: What ``/metadata/symbols`` lists (``catalog.UNIVERSES``): ``realistic``, hundreds of
    #: symbols per exchange in Atlas's shapes, some delisted, as the real service answers; or
    #: ``small``, just ``catalog.LISTINGS`` (three per exchange).
    universe: str = "realistic"
    #: Exactly this many symbols per exchange, none delisted, from the realistic universe (its
    #: real names first): for scale tests. ``None``: the whole universe.
    symbols_per_exchange: int | None = None
    #: Round-trip time every response waits, milliseconds; a new connection's first response
    #: waits two more (TCP and TLS handshakes). 0: loopback, no wait (see ``network.py``).
    latency_ms: float = 0.0
    #: Bandwidth of each response body, megabits per second; ``None``: unpaced.
    mbps: float | None = None


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


class UnknownSymbol(ValueError):
    """A steering action names a symbol the exchange never listed (the admin endpoint's 404)."""


class SandboxState:
    """The mutable state of one sandbox; every method is thread-safe."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._listings = build_listings(
            config.universe, config.synthetic_symbols, config.symbols_per_exchange
        )
        #: The exchanges; fixed for the sandbox's life (their symbols are not, see list_symbol).
        self.exchanges: tuple[str, ...] = tuple(self._listings)
        #: (exchange, symbol) -> its tenure, for the symbols steering listed or delisted.
        self._steered: dict[tuple[str, str], Tenure] = {}
        self._lock = threading.RLock()
        self._today = config.today
        self._daily_from = config.daily_from
        self._revisions: dict[tuple[str, str, str], int] = {}
        self._corruptions: list[CorruptionRule] = []
        self._log: list[dict[str, Any]] = []
        self.faults = fx.FaultBook()
        self._network = Network(config.latency_ms, config.mbps)
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

    # --- listings
    def tenure(self, exchange: str, symbol: str) -> Tenure | None:
        """When ``symbol`` has data on ``exchange``; ``None`` if the exchange never listed it."""
        with self._lock:
            return self._listings.get(exchange, {}).get(symbol)

    def listed_symbols(self, exchange: str) -> list[str]:
        """The symbols ``exchange`` lists today (``KeyError`` for an unknown exchange)."""
        with self._lock:
            return symbols(exchange, self._listings, self.today)

    def list_symbol(self, exchange: str, symbol: str, listed: date | str) -> None:
        """List ``symbol``: files from ``listed`` on, in the symbol list from that day.

        A symbol delisted before ``listed`` keeps its older files (a gap in between); one
        delisted on or after it is listed again without a break (see ``catalog.Tenure``).
        """
        _require_exchange(self.exchanges, exchange)
        _require_symbol(symbol)
        day = _field_date("listed", listed)
        with self._lock:
            known = self._listings[exchange].get(symbol)
            tenure = Tenure.since(day) if known is None else known.relisted(day)
            self._set_tenure(exchange, symbol, tenure)

    def delist_symbol(self, exchange: str, symbol: str, delisted: date | str) -> None:
        """Delist ``symbol``: no file from ``delisted`` on, out of the symbol list from that day.

        Its older files stay listed and served. ``UnknownSymbol`` if the exchange never listed
        it; ``ValueError`` if ``delisted`` is not after its first listing day.
        """
        _require_exchange(self.exchanges, exchange)
        _require_symbol(symbol)
        day = _field_date("delisted", delisted)
        with self._lock:
            known = self._listings[exchange].get(symbol)
            if known is None:
                raise UnknownSymbol(f"unknown symbol {symbol!r} on {exchange}")
            self._set_tenure(exchange, symbol, known.delisted_on(day))

    def _set_tenure(self, exchange: str, symbol: str, tenure: Tenure) -> None:
        self._listings[exchange][symbol] = tenure
        self._steered[(exchange, symbol)] = tenure

    # --- content changes
    def republish(self, exchange: str, symbol: str, month: str | Month, revision: int = 1) -> None:
        """Serve ``month``'s files (monthly and daily, every interval and mode) at ``revision``."""
        _require_exchange(self.exchanges, exchange)
        if self.tenure(exchange, symbol) is None:
            raise ValueError(f"unknown symbol {symbol!r} on {exchange}")
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
        if exchange is not None and exchange not in self.exchanges:
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

    # --- network
    def network(self, latency_ms: float = 0.0, mbps: float | None = None) -> None:
        """Put every later exchange behind this network (the defaults: loopback, no cost).

        Sets the whole network: a value left out takes its default, so ``network()`` turns it
        off. Round trips and bandwidth as ``network.Network`` charges them; ``ValueError`` for a
        negative or non-numeric latency or a bandwidth that is not > 0. Steering stays instant.
        """
        network = Network(latency_ms, mbps)
        with self._lock:
            self._network = network

    @property
    def current_network(self) -> Network:
        with self._lock:
            return self._network

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
                "listings": [
                    {"exchange": e, "symbol": s, "spans": _spans(t)}
                    for (e, s), t in sorted(self._steered.items())
                ],
                "faults": self.faults.active(),
                "network": self._network.as_dict(),
            }


def _require_exchange(exchanges: tuple[str, ...], exchange: str) -> None:
    if exchange not in exchanges:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {sorted(exchanges)}")


def _require_symbol(symbol: object) -> None:
    """A symbol a partition key can carry, as the package's instruments need."""
    if not isinstance(symbol, str):
        raise ValueError(f"symbol {symbol!r} is not text")
    problem = field_problem("symbol", symbol)
    if problem:
        raise ValueError(problem)


def _field_date(name: str, value: date | str) -> date:
    try:
        return as_date(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a YYYY-MM-DD date") from None


def _spans(tenure: Tenure) -> list[dict[str, str | None]]:
    """A tenure as JSON: ``[{"listed": "2024-01-01", "delisted": None}, ...]``."""
    return [
        {"listed": a.isoformat(), "delisted": None if b is None else b.isoformat()}
        for a, b in tenure.spans
    ]
