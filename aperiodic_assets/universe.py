"""Instruments: which exchange/symbol/interval/timestamp-mode series the warehouse keeps.

The universe is data (``universe.yaml``), so adding an instrument needs no code change.
Never imports dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from .months import Month
from .schema import INTERVALS, TIMESTAMP_MODES

DEFAULT_UNIVERSE = Path(__file__).with_name("universe.yaml")
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
#: Characters Dagster reserves in multi-partition keys.
_RESERVED = set("|,[]")


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    interval: str
    timestamp: str = "exchange"
    #: First day with data, if known: the instrument's first month is partial by design.
    listed: date | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if not _SLUG.fullmatch(self.exchange):
            # Which exchanges exist is the API's business (it answers 400 for an unknown one).
            problems.append(f"exchange {self.exchange!r} is not a lowercase slug like okx-perps")
        if self.interval not in INTERVALS:
            problems.append(f"interval {self.interval!r} not in {list(INTERVALS)}")
        if self.timestamp not in TIMESTAMP_MODES:
            problems.append(f"timestamp {self.timestamp!r} not in {list(TIMESTAMP_MODES)}")
        if _RESERVED & set(self.symbol) or "." in self.symbol:
            problems.append(f"symbol {self.symbol!r} contains one of | , [ ] .")
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
    instruments: tuple[Instrument, ...]
    start_month: Month

    @property
    def keys(self) -> list[str]:
        return [i.key for i in self.instruments]


def load_universe(path: Path | str = DEFAULT_UNIVERSE) -> Universe:
    """Read and check ``universe.yaml``; duplicate instruments are an error, not a silent merge."""
    raw = yaml.safe_load(Path(path).read_text())
    instruments = tuple(Instrument(**entry) for entry in raw["instruments"])
    keys = [i.key for i in instruments]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate instruments {duplicates}")
    return Universe(instruments=instruments, start_month=Month.parse(str(raw["start_month"])))
