"""Instruments: which exchange/symbol/interval/timestamp-mode series the warehouse keeps.

The universe is data (``universe.yaml``, or the file ``APERIODIC_UNIVERSE`` names), so adding an
instrument needs no code change. A mistake in that file stops the code location with every
problem listed by place: the file, the entry (``instruments[2]`` and its exchange and symbol)
and the key. Never imports dagster.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import clock
from .months import Month
from .schema import INTERVALS, TIMESTAMP_MODES

if TYPE_CHECKING:
    from .discovery import Rule

DEFAULT_UNIVERSE = Path(__file__).parent.parent / "universe.yaml"
#: The variable naming another universe file.
UNIVERSE_ENV = "APERIODIC_UNIVERSE"
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
#: Characters Dagster reserves in multi-partition keys.
_RESERVED = set("|,[]")
#: Keys of an instrument entry in the universe file: the required ones, then the optional ones.
ENTRY_KEYS = ("exchange", "symbol", "interval", "timestamp", "listed")
_REQUIRED_KEYS = ENTRY_KEYS[:3]
#: The fields that make an instrument's identity (its partition key).
_IDENTITY_KEYS = ENTRY_KEYS[:4]
_FILE_KEYS = ("start_month", "instruments", "discover")
#: Bitcoin's first block: no crypto market traded before it, so an earlier listing is a typo.
EARLIEST_LISTING = date(2009, 1, 3)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def field_problem(key: str, value: str) -> str | None:
    """What is wrong with the value of one identity field of an instrument, or None."""
    if key == "exchange" and not _SLUG.fullmatch(value):
        # Which exchanges exist is the API's business (it answers 400 for an unknown one).
        return f"exchange {value!r} is not a lowercase slug like okx-perps"
    if key == "symbol" and (not value or _RESERVED & set(value) or "." in value):
        return f"symbol {value!r} is empty or contains one of | , [ ] ."
    if key == "interval" and value not in INTERVALS:
        return f"interval {value!r} is not one of {list(INTERVALS)}"
    if key == "timestamp" and value not in TIMESTAMP_MODES:
        return f"timestamp {value!r} is not one of {list(TIMESTAMP_MODES)}"
    return None


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    interval: str
    timestamp: str = "exchange"
    #: First day with data, if known: the instrument's first month is partial by design.
    listed: date | None = field(default=None, compare=False, repr=False)
    #: First day without data of an instrument that stopped trading: its last month is expected
    #: whole (the days after it are a completeness warning) and no later month is requested.
    closed_since: date | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems = [
            problem
            for key in _IDENTITY_KEYS
            if (problem := field_problem(key, getattr(self, key))) is not None
        ]
        if problems:
            raise ValueError("invalid instrument: " + "; ".join(problems))

    @property
    def base(self) -> str:
        """The base asset of an Atlas symbol (``BTC`` in ``perpetual-BTC-USDT:USDT``)."""
        parts = self.symbol.split("-")
        return parts[1] if len(parts) > 1 else self.symbol

    @property
    def key(self) -> str:
        """Partition key: ``BTC.1h.binance-futures.perpetual-BTC-USDT:USDT.exchange``.

        The UI truncates long keys in the middle, keeping as few as 9 characters at each end
        (a check's partition list); the base asset, interval and exchange lead and the timestamp
        mode closes, so two instruments stay apart however they are cut. The full identity is
        in the middle.
        """
        return f"{self.base}.{self.interval}.{self.exchange}.{self.symbol}.{self.timestamp}"

    @property
    def query(self) -> dict[str, str]:
        """The instrument as the data endpoint's query parameters (the official client's
        arguments of the same names)."""
        return {
            "timestamp": self.timestamp,
            "interval": self.interval,
            "exchange": self.exchange,
            "symbol": self.symbol,
        }

    @classmethod
    def from_key(cls, key: str) -> Instrument:
        try:
            base, interval, exchange, symbol, timestamp = key.split(".")
        except ValueError:
            raise ValueError(
                f"not an instrument key: {key!r}; expected base.interval.exchange.symbol.timestamp"
            ) from None
        instrument = cls(exchange, symbol, interval, timestamp)
        if instrument.base != base:
            raise ValueError(f"not an instrument key: {key!r}; {base!r} is not {symbol}'s base")
        return instrument

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Universe:
    """The explicit instruments and the ``discover`` rules; with rules, the instruments of a
    deployment are found at run time (:mod:`.discovery`, :mod:`.lifecycle`)."""

    instruments: tuple[Instrument, ...]
    start_month: Month
    rules: tuple[Rule, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [i.key for i in self.instruments]

    @property
    def discovers(self) -> bool:
        """Whether the instrument set changes at run time (there are rules)."""
        return bool(self.rules)

    @property
    def exchanges(self) -> list[str]:
        """The exchanges whose symbol lists the rules read."""
        return sorted({e for rule in self.rules for e in rule.exchanges})


class UniverseError(ValueError):
    """The universe file is wrong; the message lists every problem with its place."""


class _PlainScalars(yaml.SafeLoader):
    """YAML without implicit dates and booleans: ``listed: 2024-03-15`` is read as text, exactly
    like the quoted ``"2024-03-15"``, and ``timestamp: true`` is the mode ``"true"``."""


_PlainScalars.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":timestamp", ":bool"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def universe_path(environ: Mapping[str, str] | None = None) -> Path:
    """The file ``APERIODIC_UNIVERSE`` names, else the packaged ``universe.yaml``."""
    return Path((os.environ if environ is None else environ).get(UNIVERSE_ENV) or DEFAULT_UNIVERSE)


def load_configured_universe(
    environ: Mapping[str, str] | None = None, today: date | None = None
) -> Universe:
    """The universe the code location partitions by (see :func:`universe_path`)."""
    path = universe_path(environ)
    if path != DEFAULT_UNIVERSE and not path.is_file():
        raise UniverseError(f"{UNIVERSE_ENV}={str(path)!r}: no such file")
    return load_universe(path, today)


def load_universe(path: Path | str = DEFAULT_UNIVERSE, today: date | None = None) -> Universe:
    """Read and check a universe file; raises UniverseError listing every problem by place."""
    try:
        raw = yaml.load(Path(path).read_text(), Loader=_PlainScalars)
    except OSError as exc:
        raise UniverseError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise UniverseError(f"{path}: not valid YAML: {exc}") from None
    return parse_universe(raw, str(path), today)


def parse_universe(raw: Any, source: str, today: date | None = None) -> Universe:
    """Check a universe given as data (a file's contents, or a component's inline attribute);
    raises UniverseError listing every problem by place, ``source`` first.

    ``listed`` is a ``YYYY-MM-DD`` date, quoted or not, between :data:`EARLIEST_LISTING` and
    ``today`` (default: the package's clock). Duplicate instruments are an error, not a silent
    merge. ``discover`` rules (:func:`.discovery.parse_rules`) may stand beside or instead of
    ``instruments``.
    """
    from .discovery import parse_rules

    today = today or clock.today()
    if not isinstance(raw, dict):
        raise UniverseError(f"{source}: expected a mapping with the keys {list(_FILE_KEYS)}")
    problems = unknown_keys(raw, _FILE_KEYS)
    start_month = _start_month(raw.get("start_month"), today, problems)
    rules = parse_rules(raw.get("discover"), problems)
    entries = raw.get("instruments")
    if "discover" in raw and entries in (None, []):
        entries = []
    elif not isinstance(entries, list) or not entries:
        problems.append(
            "instruments: expected a non-empty list of entries like {exchange: okx-perps,"
            f" symbol: 'perpetual-BTC-USDT:USDT', interval: 1h}} (or discover: rules),"
            f" got {shown(entries)}"
        )
        entries = []
    instruments = [_instrument(i, entry, today, problems) for i, entry in enumerate(entries)]
    first: dict[str, int] = {}
    for i, instrument in enumerate(instruments):
        if instrument is not None and first.setdefault(instrument.key, i) != i:
            problems.append(
                f"instruments[{i}]: duplicate of instruments[{first[instrument.key]}]"
                f" ({instrument.key})"
            )
    if problems or start_month is None:
        raise UniverseError(f"{source} is not a valid universe:\n  " + "\n  ".join(problems))
    return Universe(tuple(i for i in instruments if i is not None), start_month, rules)


def _start_month(value: Any, today: date, problems: list[str]) -> Month | None:
    try:
        month = Month.parse(value) if isinstance(value, str) else None
    except ValueError:
        month = None
    if month is None:
        problems.append(f'start_month: expected a month like "2024-01", got {shown(value)}')
    elif month > Month.of(today):
        problems.append(f"start_month: {month} is after the current month, {Month.of(today)}")
        month = None
    return month


def _instrument(index: int, entry: Any, today: date, problems: list[str]) -> Instrument | None:
    """The instrument of one entry, or None after adding its problems to ``problems``."""
    where = f"instruments[{index}]"
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping of {list(ENTRY_KEYS)}, got {shown(entry)}")
        return None
    named = [str(entry[k]) for k in ("exchange", "symbol", "interval") if k in entry]
    where += f" ({' '.join(named)})" if named else ""
    found = unknown_keys(entry, ENTRY_KEYS)
    found += [f"missing key {k!r}" for k in _REQUIRED_KEYS if k not in entry]
    fields = {"timestamp": TIMESTAMP_MODES[0], "listed": None, **entry}
    for key in (k for k in _IDENTITY_KEYS if k in fields):
        value = fields[key]
        problem = (
            field_problem(key, value)
            if isinstance(value, str)
            else f"{key} must be text, got {shown(value)}"
        )
        if problem:
            found.append(problem)
    try:
        listed = _listed(fields["listed"], today)
    except ValueError as exc:
        found.append(str(exc))
    problems += [f"{where}: {problem}" for problem in found]
    if found:
        return None
    return Instrument(*(fields[k] for k in _IDENTITY_KEYS), listed=listed)


def _listed(value: Any, today: date) -> date | None:
    """The listing day of an entry (None when not given); ValueError says what is wrong."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError(f"listed: expected a date like 2024-03-15, got {shown(value)}")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"listed: {value} is not a calendar date ({exc})") from None
    if day > today:
        raise ValueError(f"listed: {day} is in the future (today is {today})")
    if day < EARLIEST_LISTING:
        raise ValueError(f"listed: {day} is before any crypto market existed ({EARLIEST_LISTING})")
    return day


def unknown_keys(mapping: dict, known: tuple[str, ...]) -> list[str]:
    """A problem per key not in ``known``, with the closest known key when one is close."""
    problems = []
    for key in mapping:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"unknown key {key!r}{hint} (known keys: {', '.join(known)})")
    return problems


def shown(value: Any) -> str:
    """A value and its YAML type, for a message: ``int 123``, ``nothing``."""
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
