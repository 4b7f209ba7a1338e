"""The l1_imbalance file contract: column names, types and interval lengths.

Shared by the sandbox (which writes files), validation (which checks them) and the warehouse
(which stores them), so there is one definition of what a valid file looks like.
Never imports dagster.
"""

from __future__ import annotations

import pyarrow as pa

METRIC = "l1_imbalance"
TIME = "time"

#: Last value in each interval; the ``*_avg`` twins are averaged over the interval.
POINT_COLUMNS: tuple[str, ...] = (
    "imbalance",
    "imbalance_ratio",
    "bid_ask_ratio",
    "bid_percentage",
    "ask_percentage",
)
AVG_COLUMNS: tuple[str, ...] = tuple(f"{c}_avg" for c in POINT_COLUMNS)
METRIC_COLUMNS: tuple[str, ...] = POINT_COLUMNS + AVG_COLUMNS

#: Columns a source file may carry that restate the partition (the instrument, its month, a
#: daily file's day): checked against it and dropped. Some are the hive partition columns DuckDB
#: synthesized into stored objects; there ``timestamp`` is the timestamp mode, not a time.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "exchange",
    "symbol",
    "interval",
    "timestamp",
    "timestamp_type",
    "year",
    "month",
    "day",
)

TIME_TYPE = pa.timestamp("us")
#: Time zone names that mean UTC; ``time`` in any other zone holds UTC instants all the same.
UTC_ZONES = frozenset({"UTC", "ETC/UTC", "+00:00", "Z"})
SCHEMA = pa.schema([(TIME, TIME_TYPE)] + [(c, pa.float64()) for c in METRIC_COLUMNS])

INTERVALS: dict[str, int] = {
    "1m": 60,
    "5m": 5 * 60,
    "15m": 15 * 60,
    "30m": 30 * 60,
    "1h": 3600,
    "4h": 4 * 3600,
    "1d": 86400,
}
TIMESTAMP_MODES: tuple[str, ...] = ("exchange", "true")


def interval_seconds(interval: str) -> int:
    """Seconds in one interval; raises ValueError naming the valid choices."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(
            f"unknown interval {interval!r}; expected one of {list(INTERVALS)}"
        ) from None
