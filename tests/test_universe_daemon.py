"""A discovered universe through the real webserver and daemon: 300 symbols on two exchanges
selected by one rule at 1h; the universe sensor's first tick adds them all and the new-month
sensor lands each one's month; a listing joins and lands with no restart; a delisting in the
middle of the month closes the instrument, its month lands to the last day with the warning,
and the next month is never requested for it while every other instrument gets it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE
from aperiodic_assets.defs.partitions import partition_key

from .deployed import month_partitions
from .week import Week, running_week

pytestmark = pytest.mark.slow(seconds=110)

PER_EXCHANGE = 150
EXCHANGES = ["binance-futures", "okx-perps"]
SENSOR_INTERVAL_S = 4
#: A month Dagster's partitions hold whatever the real date: the one before the current.
MONTH = Month.parse(month_partitions.get_last_partition_key()).previous()
#: Files for the month's first 5 days (daily files: the layout since 2026-08); the delisting
#: leaves 3 of them. Few days keep 300 instruments' downloads a suite-sized load.
DAY = MONTH.first_day + timedelta(days=5)
DELISTED_ON = MONTH.first_day + timedelta(days=3)
NEW = Instrument("okx-perps", "perpetual-NEWLISTING-USDT:USDT", "1h")
DIMENSION = "aperiodic_instruments"


@pytest.fixture
def week(tmp_path: Path) -> Iterator[Week]:
    env = {
        "APERIODIC_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
        "APERIODIC_SENSOR_LOOKBACK_MONTHS": "0",
        "APERIODIC_UNIVERSE_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
    }
    universe = {
        "start_month": MONTH.key,
        "discover": [{"exchanges": EXCHANGES, "intervals": ["1h"]}],
    }
    with running_week(
        tmp_path,
        DAY,
        [],
        env,
        universe_file=universe,
        sandbox_config={"symbols_per_exchange": PER_EXCHANGE},
        module="tests.universe_location",
    ) as week:
        yield week


def instruments(week: Week) -> list[str]:
    return list(week.instance.get_dynamic_partitions(DIMENSION))


def landed_through(week: Week, instrument: str, month: Month) -> str | None:
    record = week.latest(L1_IMBALANCE, str(partition_key(Instrument.from_key(instrument), month)))
    return None if record is None else record.asset_materialization.metadata["through"].value


def test_a_discovered_universe_lands_follows_listings_and_closes_delistings(week):
    started = time.monotonic()
    week.wait("the first universe tick", lambda: len(instruments(week)) >= 2 * PER_EXCHANGE, 120)
    ticks = week.sensor_ticks("universe_sensor")
    first = min(
        (t for t in ticks if t.tick_data.dynamic_partitions_request_results),
        key=lambda t: t.timestamp,
    )
    (added,) = first.tick_data.dynamic_partitions_request_results
    assert len(added.added_partitions) == 2 * PER_EXCHANGE, "the first tick found them all"
    print(f"universe: {len(instruments(week))} instruments after {time.monotonic() - started:.0f}s")

    yesterday = (DAY - timedelta(days=1)).isoformat()
    keys = instruments(week)

    def all_landed() -> bool:
        # One cheap query while runs work; each partition's "through" only at the end.
        count = len(week.instance.get_materialized_partitions(L1_IMBALANCE))
        print(f"  {time.monotonic() - started:.0f}s: {count} of {len(keys)} partitions")
        return count >= len(keys) and all(landed_through(week, k, MONTH) == yesterday for k in keys)

    week.services.wait_for("every instrument's month", all_landed, 420, poll_s=5.0)
    print(f"landed {len(keys)} months after {time.monotonic() - started:.0f}s")

    listed_at = time.monotonic()
    week.sandbox.list_symbol(NEW.exchange, NEW.symbol, MONTH.first_day + timedelta(days=2))
    week.wait("the new listing joins", lambda: NEW.key in instruments(week), 60)
    joined_s = time.monotonic() - listed_at
    week.wait(
        "the new listing lands", lambda: landed_through(week, NEW.key, MONTH) == yesterday, 240
    )
    landed_s = time.monotonic() - listed_at
    print(
        f"new listing: joined {joined_s:.0f}s and landed {landed_s:.0f}s after it was listed"
        f" (sensor intervals {SENSOR_INTERVAL_S}s)"
    )
    assert joined_s <= 2 * SENSOR_INTERVAL_S + 10, "joined on the universe sensor's next tick"

    gone = Instrument.from_key(sorted(k for k in keys if "binance-futures" in k)[0])
    gone_key = str(partition_key(gone, MONTH))
    week.sandbox.delist_symbol(gone.exchange, gone.symbol, DELISTED_ON)

    def closed_month() -> bool:
        record = week.latest(L1_IMBALANCE, gone_key)
        return record is not None and "closed_since" in record.asset_materialization.metadata

    delisted_at = time.monotonic()
    week.wait("the delisted month lands again, closed", closed_month, 240)
    print(f"delisting: its month landed closed {time.monotonic() - delisted_at:.0f}s later")
    metadata = week.latest(L1_IMBALANCE, gone_key).asset_materialization.metadata
    assert metadata["closed_since"].value == DELISTED_ON.isoformat()
    warning = metadata["warnings"].value
    last = (DELISTED_ON - timedelta(days=1)).isoformat()
    assert warning.startswith(f"instrument closed since {DELISTED_ON}, last data {last};")
    assert f"largest [{DELISTED_ON}T00:00:00" in warning

    # The next month: every open instrument is requested, the closed one never (the requests
    # are what the sensor decides; landing them is the same work as above).
    following = MONTH.next()
    week.set_day(following.first_day + timedelta(days=2))
    others = {str(partition_key(Instrument.from_key(k), following)) for k in instruments(week)}
    others.discard(str(partition_key(gone, following)))

    def requested() -> set[str]:
        return {
            str(p.partition_key)
            for backfill in week.instance.get_backfills()
            for p in backfill.asset_backfill_data.target_subset.iterate_asset_partitions()
            if following.key in str(p.partition_key)
        }

    week.wait("every open instrument's next month requested", lambda: others <= requested(), 120)
    time.sleep(3 * SENSOR_INTERVAL_S)  # a few more ticks
    assert str(partition_key(gone, following)) not in requested(), "never requested"
    print(f"next month: {len(requested())} partitions requested, the closed instrument's not")
