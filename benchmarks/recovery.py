"""Benchmark: how soon unattended automation recovers from an outage of Aperiodic's file host.

Why: a new day appears, the sensor requests it, and the file host answers 503 for a while; the
runs fail. Nobody is watching. What matters is how long after the host recovers the warehouse
holds the day, counted in sensor intervals (the goal: 1, the first tick after recovery).

Setup (tests/week.py): the real webserver and daemon (its backfill loop at 1 s instead of 30 s),
the package's code location with short client retries, the sandbox and the package clock moved
together, 4 instruments, the sensor every SENSOR_INTERVAL_S seconds. One day lands; then the
next day appears with every download answered 503 for OUTAGE_INTERVALS sensor intervals.

Printed: the wall time from recovery to the last partition landing, the sensor ticks from
recovery up to the one whose request landed it (``recovery_ticks``), and the failed attempts
recorded during the outage.

Run: ``.venv/bin/python benchmarks/recovery.py`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aperiodic_assets.core.months import Month  # noqa: E402
from aperiodic_assets.core.universe import Instrument  # noqa: E402
from aperiodic_assets.definitions import deployment  # noqa: E402
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, OUTCOME  # noqa: E402
from aperiodic_assets.defs.automation import REQUEST_TAG, TRIGGER_TAG  # noqa: E402
from tests.week import running_week  # noqa: E402

SENSOR_INTERVAL_S = 6
OUTAGE_INTERVALS = 4
INSTRUMENTS = [
    Instrument(exchange, symbol, "4h", "exchange")
    for exchange in ("binance-futures", "okx-perps")
    for symbol in ("perpetual-BTC-USDT:USDT", "perpetual-ETH-USDT:USDT")
]
DAY = Month.parse(
    deployment.partitions.months.get_last_partition_key()
).previous().first_day + timedelta(10)


def main() -> None:
    env = {
        "APERIODIC_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
        "APERIODIC_RUN_WAIT_MAX_S": "2",
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_week(Path(tmp), DAY, INSTRUMENTS, env) as week,
    ):
        week.wait("the first day", lambda: week.up_to_date(DAY), timeout=300)
        next_day = DAY + timedelta(days=1)
        week.sandbox.inject("status_download", -1, status=503)
        week.set_day(next_day)
        outage_start = time.time()
        week.wait(
            "a run failing in the outage",
            lambda: any(o.metadata[OUTCOME].value == "failed" for o in week.observations()),
        )
        time.sleep(max(0.0, outage_start + OUTAGE_INTERVALS * SENSOR_INTERVAL_S - time.time()))
        week.sandbox.clear_faults()
        recovered = time.time()
        week.wait("the day after the outage", lambda: week.up_to_date(next_day), timeout=300)

        landed = max(week.latest(L1_IMBALANCE, key).timestamp for key in week.expected(next_day))
        requests = sorted(
            float(b.tags[REQUEST_TAG])
            for b in week.instance.get_backfills()
            if b.tags.get(TRIGGER_TAG) == "new_month_sensor"
            and float(b.tags[REQUEST_TAG]) >= recovered
        )
        ticks = sorted(t.timestamp for t in week.sensor_ticks() if t.timestamp >= recovered)
        recovery_ticks = sum(1 for t in ticks if t <= requests[-1] + 0.5) if requests else 0
        failed = [o for o in week.observations() if o.metadata[OUTCOME].value == "failed"]
        print(
            f"outage {recovered - outage_start:.0f}s ({OUTAGE_INTERVALS} sensor intervals of"
            f" {SENSOR_INTERVAL_S}s); {len(failed)} failed attempts recorded during it;"
            f" {len(requests)} request(s) after recovery"
        )
        print(
            f"RESULT recovery_ticks={recovery_ticks} recovery_s={landed - recovered:.1f}"
            f" recovery_intervals={(landed - recovered) / SENSOR_INTERVAL_S:.1f}"
            f" interval_s={SENSOR_INTERVAL_S} failed_attempts={len(failed)}"
        )


if __name__ == "__main__":
    main()
