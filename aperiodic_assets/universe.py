"""Instruments: which exchange/symbol/interval/timestamp-mode series the warehouse keeps.

The universe is data (``universe.yaml``), so adding an instrument needs no code change.
Never imports dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .months import Month
from .schema import EXCHANGES, INTERVALS, TIMESTAMP_MODES

DEFAULT_UNIVERSE = Path(__file__).with_name("universe.yaml")
#: Characters Dagster reserves in multi-partition keys.
_RESERVED = set("|,[]")


@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    interval: str
    timestamp: str = "exchange"

    def __post_init__(self) -> None:
        problems = []
        if self.exchange not in EXCHANGES:
            problems.append(f"exchange {self.exchange!r} not in {list(EXCHANGES)}")
        if self.interval not in INTERVALS:
            problems.append(f"interval {self.interval!r} not in {list(INTERVALS)}")
        if self.timestamp not in TIMESTAMP_MODES:
            problems.append(f"timestamp {self.timestamp!r} not in {list(TIMESTAMP_MODES)}")
        if _RESERVED & set(self.symbol) or "." in self.symbol:
            problems.append(f"symbol {self.symbol!r} contains one of | , [ ] .")
        if problems:
            raise ValueError("invalid instrument: " + "; ".join(problems))

    @property
    def key(self) -> str:
        """Readable partition key: ``binance-futures.perpetual-BTC-USDT:USDT.1h.exchange``."""
        return f"{self.exchange}.{self.symbol}.{self.interval}.{self.timestamp}"

    @classmethod
    def from_key(cls, key: str) -> Instrument:
        try:
            exchange, symbol, interval, timestamp = key.split(".")
        except ValueError:
            raise ValueError(
                f"not an instrument key: {key!r}; expected exchange.symbol.interval.timestamp"
            ) from None
        return cls(exchange, symbol, interval, timestamp)

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
