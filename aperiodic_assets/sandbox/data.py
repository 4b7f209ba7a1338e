"""Synthetic ``l1_imbalance`` data: simulated top-of-book amounts and the metrics derived from them.

Owns :func:`generate` (a pure, deterministic function used by the sandbox server and by tests and
benchmarks elsewhere) and :func:`encode_parquet` (the sandbox's one way of turning a table into
file bytes). Never imports dagster.

Why it is built this way:

* Every day is generated from its own seed (a SHA-256 of exchange, symbol, interval, day and
  revision), so a day's rows never depend on the range requested: a monthly file is exactly the
  concatenation of that month's daily files, whichever way the catalog cuts the month.
* The metric columns are computed from the simulated bid/ask amounts by their definitions, so the
  identities a validator checks hold to floating-point precision on clean data.
* Rarely (a handful of times per month) a sample has an ask amount of exactly 0, making the ratio
  +inf: that is legitimate data the rest of the pipeline must carry, not reject.
"""

from __future__ import annotations

import hashlib
import io
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.schema import INTERVALS, METRIC_COLUMNS, SCHEMA, TIME, TIMESTAMP_MODES

#: Book snapshots taken per interval; point columns use the last, ``*_avg`` columns the mean.
SAMPLES_PER_INTERVAL = 6
#: Expected zero-ask events per day (so about six a month per instrument and interval).
ZERO_ASK_RATE_PER_DAY = 0.2
#: Log-standard deviation of the ``timestamp="true"`` perturbation relative to ``"exchange"``.
TRUE_TIMESTAMP_NOISE = 0.02

PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": False,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
}


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` that is the same in every process (unlike ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _check(interval: str, timestamp: str) -> int:
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(INTERVALS)}")
    if timestamp not in TIMESTAMP_MODES:
        raise ValueError(
            f"unknown timestamp {timestamp!r}; expected one of {list(TIMESTAMP_MODES)}"
        )
    return INTERVALS[interval]


def _day_amounts(
    exchange: str, symbol: str, interval: str, timestamp: str, day: date, revision: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask amounts for one UTC day, shape ``(rows, SAMPLES_PER_INTERVAL)``.

    Depth and tilt follow Brownian bridges pinned to the instrument's level at midnight, so
    consecutive days join without jumps even though each day has its own seed.
    """
    rows = 86400 // INTERVALS[interval]
    n = rows * SAMPLES_PER_INTERVAL
    level = 10 ** (1 + 2 * (stable_seed("level", exchange, symbol) % 1000) / 1000)
    rng = np.random.default_rng(
        stable_seed("l1_imbalance", exchange, symbol, interval, day.isoformat(), revision)
    )
    steps = rng.normal(0.0, 1.0 / np.sqrt(n), size=(2, n)) * np.array([[0.8], [0.6]])
    walk = np.cumsum(steps, axis=1)
    frac = np.arange(1, n + 1) / n
    depth, tilt = walk - frac * walk[:, -1:]
    jitter = rng.normal(0.0, 0.3, size=(2, n))
    bid = level * np.exp(depth + tilt + jitter[0])
    ask = level * np.exp(depth - tilt + jitter[1])

    events = rng.poisson(ZERO_ASK_RATE_PER_DAY)
    where = rng.integers(0, n, size=events)
    at_last = rng.random(events) < 0.5
    where = np.where(at_last, (where // SAMPLES_PER_INTERVAL + 1) * SAMPLES_PER_INTERVAL - 1, where)
    ask[where] = 0.0

    if timestamp == "true":
        # Same market, stamped by a different clock: a small, separately seeded perturbation.
        noise_rng = np.random.default_rng(
            stable_seed("true-ts", exchange, symbol, interval, day.isoformat(), revision)
        )
        bid = bid * np.exp(noise_rng.normal(0.0, TRUE_TIMESTAMP_NOISE, size=n))
        ask = ask * np.exp(noise_rng.normal(0.0, TRUE_TIMESTAMP_NOISE, size=n))
    return bid.reshape(rows, -1), ask.reshape(rows, -1)


def sample_amounts(
    exchange: str,
    symbol: str,
    interval: str,
    timestamp: str,
    start: date,
    end: date,
    revision: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The simulated samples behind :func:`generate`: ``(times, bid, ask)``, days in [start, end).

    ``times`` are interval starts (``datetime64[us]``); ``bid``/``ask`` have one row per interval
    and ``SAMPLES_PER_INTERVAL`` columns. Exposed so tests can check the metrics against them.
    """
    step = _check(interval, timestamp)
    days = [start + timedelta(days=i) for i in range(max((end - start).days, 0))]
    if not days:
        empty = np.empty((0, SAMPLES_PER_INTERVAL))
        return np.empty(0, dtype="datetime64[us]"), empty, empty.copy()
    pairs = [_day_amounts(exchange, symbol, interval, timestamp, d, revision) for d in days]
    bid = np.concatenate([p[0] for p in pairs])
    ask = np.concatenate([p[1] for p in pairs])
    origin = np.datetime64(start.isoformat(), "us")
    times = origin + np.arange(bid.shape[0], dtype=np.int64) * np.timedelta64(step, "s")
    return times, bid, ask


def metrics_from_amounts(bid: np.ndarray, ask: np.ndarray) -> dict[str, np.ndarray]:
    """The ten metric columns, each computed by its definition from ``(rows, samples)`` amounts."""
    with np.errstate(divide="ignore", invalid="ignore"):
        total = bid + ask
        per_sample = {
            "imbalance": bid - ask,
            "imbalance_ratio": (bid - ask) / total,
            "bid_ask_ratio": bid / ask,
            "bid_percentage": bid / total,
            "ask_percentage": ask / total,
        }
        columns = {name: values[:, -1] for name, values in per_sample.items()}
        columns.update({f"{name}_avg": values.mean(axis=1) for name, values in per_sample.items()})
    return {name: columns[name] for name in METRIC_COLUMNS}


def generate(
    exchange: str,
    symbol: str,
    interval: str,
    timestamp: str,
    start: date,
    end: date,
    revision: int = 0,
) -> pa.Table:
    """Deterministic ``l1_imbalance`` rows for the days ``start <= day < end`` (``end`` exclusive).

    The table has exactly :data:`aperiodic_assets.core.schema.SCHEMA`; ``time`` is the interval
    start, naive UTC. ``revision`` > 0 simulates a republished (corrected) file: different values,
    same shape. Any day's rows are the same whichever range it was requested in.
    """
    times, bid, ask = sample_amounts(exchange, symbol, interval, timestamp, start, end, revision)
    columns = metrics_from_amounts(bid, ask)
    arrays = [pa.array(times, type=SCHEMA.field(TIME).type)]
    arrays += [pa.array(columns[name], type=pa.float64()) for name in METRIC_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes with fixed writer options: the same table always gives the same bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **PARQUET_OPTIONS)  # type: ignore[arg-type]
    return buffer.getvalue()
