"""Benchmark: ``validation.validate`` against an equivalent pandera schema on 1,000,000 rows.

Why: validation runs on every partition before it is written, so it must stay cheap next to the
download; pandera is the obvious off-the-shelf alternative, so it is the yardstick.

The data is sandbox data (``sandbox.data.generate``), 1m interval, 1,000,000 rows from
2024-01-01, about 23 months, validated as production does: one call per monthly partition, the
last one partial (its expected window ends after the last row). The pandera schema expresses the
same hard checks with vectorized series/dataframe checks (no row-wise lambdas): schema and
dtypes (strict, identity columns optional), non-empty, unique/increasing/on-grid/in-window time,
the six identities with the same tolerance and NaN rules, ranges, unexplained inf and NaN share;
one schema per partition (its window), built beforehand. Pandera gets pandas DataFrames
converted beforehand (conversion time is printed, not counted) and validates in place. Best of 5
each, same process, same data.

Run: ``.venv/bin/python benchmarks/validation.py`` (needs the ``bench`` extra: pandera).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pandera.pandas as pdr
import pyarrow as pa
import pyarrow.compute as pc

from aperiodic_assets.core.months import Month, month_range
from aperiodic_assets.core.schema import IDENTITY_COLUMNS, METRIC_COLUMNS, TIME
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.validation import ValidationConfig, validate
from aperiodic_assets.sandbox.corruption import apply_corruption
from aperiodic_assets.sandbox.data import generate

ROWS = 1_000_000
REPEATS = 5
START = datetime(2024, 1, 1)
END = START + timedelta(minutes=ROWS)
INSTRUMENT = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "1m", "exchange")
CONFIG = ValidationConfig()


@dataclass(frozen=True)
class Partition:
    """One month of the data, its expected window and its pandera schema."""

    month: Month
    window: tuple[datetime, datetime]
    table: pa.Table
    schema: pdr.DataFrameSchema


def pandera_schema(
    config: ValidationConfig, window: tuple[datetime, datetime]
) -> pdr.DataFrameSchema:
    """The hard checks of ``validate`` as a pandera schema, vectorized throughout."""
    abs_tol, rel_tol = config.abs_tol, config.rel_tol
    origin = np.datetime64(window[0], "us").astype(np.int64)
    step = 60 * 1_000_000  # 1m in microseconds, the unit of the time column

    def close(x: pd.Series, y: pd.Series) -> pd.Series:
        """Within tolerance, or NaN (NaN is judged by the NaN-share checks)."""
        return ~((x - y).abs() > abs_tol + rel_tol * y.abs())

    def bid_ask_ratio_matches(df: pd.DataFrame) -> pd.Series:
        ratio, bid, ask = df["bid_ask_ratio"], df["bid_percentage"], df["ask_percentage"]
        where_positive = ~(
            (ask > 0) & ((ratio - bid / ask).abs() > abs_tol + rel_tol * (bid / ask).abs())
        )
        where_zero = ~((ask == 0) & ratio.notna() & (ratio != np.inf))
        return where_positive & where_zero

    def sign_matches(df: pd.DataFrame) -> pd.Series:
        imbalance, ratio = df["imbalance"], df["imbalance_ratio"]
        differ = (
            (np.sign(imbalance) != np.sign(ratio)) & imbalance.notna() & (ratio.abs() > abs_tol)
        )
        return ~differ

    def bounded(low: float, high: float) -> pdr.Check:
        return pdr.Check.in_range(
            low - (abs_tol + rel_tol * abs(low)), high + (abs_tol + rel_tol * abs(high))
        )

    at_least_zero = pdr.Check.ge(-abs_tol)
    ranges = {
        "imbalance_ratio": bounded(-1, 1),
        "bid_ask_ratio": at_least_zero,
        "bid_percentage": bounded(0, 1),
        "ask_percentage": bounded(0, 1),
        "imbalance_ratio_avg": bounded(-1, 1),
        "bid_ask_ratio_avg": at_least_zero,
        "bid_percentage_avg": bounded(0, 1),
        "ask_percentage_avg": bounded(0, 1),
    }
    nan_share = pdr.Check(
        lambda s: s.isna().mean() <= config.nan_share_max, ignore_na=False, name="nan_share"
    )
    finite = pdr.Check(lambda s: ~np.isinf(s), name="unexplained_inf")

    def metric(name: str) -> pdr.Column:
        checks = [nan_share]
        if name in ranges:
            checks.append(ranges[name])
        if not name.startswith("bid_ask_ratio"):
            checks.append(finite)
        return pdr.Column("float64", checks=checks, nullable=True)

    time_checks = [
        pdr.Check(lambda s: s.is_monotonic_increasing, name="time_increasing"),
        pdr.Check(lambda s: (s.astype("int64") - origin) % step == 0, name="time_on_grid"),
        pdr.Check.in_range(
            pd.Timestamp(window[0]), pd.Timestamp(window[1]), include_max=False, name="in_window"
        ),
    ]
    columns = {TIME: pdr.Column("datetime64[us]", checks=time_checks, unique=True)}
    columns |= {name: metric(name) for name in METRIC_COLUMNS}
    columns |= {name: pdr.Column(required=False) for name in IDENTITY_COLUMNS}
    return pdr.DataFrameSchema(
        columns,
        checks=[
            pdr.Check(lambda df: len(df) > 0, name="non_empty"),
            pdr.Check(
                lambda df: close(
                    df["bid_percentage"] + df["ask_percentage"], pd.Series(1.0, df.index)
                ),
                name="pct_sum_to_one",
            ),
            pdr.Check(
                lambda df: close(
                    df["imbalance_ratio"], df["bid_percentage"] - df["ask_percentage"]
                ),
                name="ratio_equals_pct_difference",
            ),
            pdr.Check(bid_ask_ratio_matches, name="bid_ask_ratio_matches_pcts"),
            pdr.Check(sign_matches, name="imbalance_sign_matches_ratio"),
            pdr.Check(
                lambda df: close(
                    df["bid_percentage_avg"] + df["ask_percentage_avg"], pd.Series(1.0, df.index)
                ),
                name="avg_pct_sum_to_one",
            ),
            pdr.Check(
                lambda df: close(
                    df["imbalance_ratio_avg"], df["bid_percentage_avg"] - df["ask_percentage_avg"]
                ),
                name="avg_ratio_equals_pct_difference",
            ),
        ],
        strict=True,
    )


def best_of(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def pandera_accepts(schema: pdr.DataFrameSchema, frame: pd.DataFrame) -> bool:
    try:
        schema.validate(frame, lazy=True, inplace=True)
    except pdr.errors.SchemaErrors:
        return False
    return True


def partitions(table: pa.Table) -> list[Partition]:
    """The monthly partitions the rows fall into; the last one's window ends at ``END``."""
    result = []
    for month in month_range(Month.of(START), Month.of(END - timedelta(microseconds=1))):
        window = (month.start, min(month.end, END))
        times = table.column(TIME)
        inside = pc.and_(
            pc.greater_equal(times, pa.scalar(window[0], times.type)),
            pc.less(times, pa.scalar(window[1], times.type)),
        )
        part = table.filter(inside)
        result.append(Partition(month, window, part, pandera_schema(CONFIG, window)))
    return result


def main() -> None:
    days = -(-ROWS // 1440)
    table = generate(
        INSTRUMENT.exchange,
        INSTRUMENT.symbol,
        INSTRUMENT.interval,
        INSTRUMENT.timestamp,
        date(2024, 1, 1),
        date(2024, 1, 1) + timedelta(days=days),
    ).slice(0, ROWS)
    parts = partitions(table)
    started = time.perf_counter()
    frames = [p.table.to_pandas() for p in parts]
    conversion = time.perf_counter() - started

    def ours() -> list[bool]:
        return [validate(p.table, INSTRUMENT, p.month, CONFIG, window=p.window).ok for p in parts]

    def theirs() -> list[bool]:
        return [pandera_accepts(p.schema, frame) for p, frame in zip(parts, frames, strict=True)]

    # Same verdicts before timing: both accept the clean data, both reject a broken identity.
    first = parts[0]
    broken = apply_corruption(first.table, "broken_identity", INSTRUMENT.interval)
    verdicts = (
        all(ours()),
        all(theirs()),
        validate(broken, INSTRUMENT, first.month, CONFIG, window=first.window).ok,
        pandera_accepts(first.schema, broken.to_pandas()),
    )
    if verdicts != (True, True, False, False):
        raise SystemExit(f"validators disagree (clean, clean, broken, broken): {verdicts}")

    ours_time = best_of(REPEATS, ours)
    theirs_time = best_of(REPEATS, theirs)

    ours_rate, theirs_rate = ROWS / ours_time, ROWS / theirs_time
    print(
        f"{table.num_rows:,} rows, interval 1m, {len(parts)} monthly partitions, best of {REPEATS}"
    )
    print(f"{'validator':<34}{'seconds':>10}{'rows/s':>14}")
    print(f"{'validation.validate (pyarrow)':<34}{ours_time:>10.3f}{ours_rate:>14,.0f}")
    print(f"{'pandera DataFrameSchema (pandas)':<34}{theirs_time:>10.3f}{theirs_rate:>14,.0f}")
    print(f"{'  + to_pandas() not counted':<34}{conversion:>10.3f}")
    print(
        f"RESULT validation_rows_per_s={ours_rate:.0f} pandera_rows_per_s={theirs_rate:.0f} "
        f"speedup={theirs_time / ours_time:.2f}"
    )


if __name__ == "__main__":
    main()
