"""An unattended week: the real daemon, the sensor on, the clock moving day by day across a month
end, and the API misbehaving on chosen days. Nobody re-runs anything by hand.

Days are shrunk to seconds: the sandbox's clock and the package's (APERIODIC_NOW, a file the
test rewrites) move together; the sensor looks every few seconds; the client's retry waits are
short and a run waits at most 2 s in-line (APERIODIC_RUN_WAIT_MAX_S), so a 6 s Retry-After is
"long": the run fails that partition at once and the sensor must come back after the wait. The
daemon's backfill loop runs every 1 s instead of Dagster's fixed 30 s (patched in the daemon
process only). At the end the warehouse must hold every instrument through yesterday, the
downstream assets must have followed, each file set must have been materialized once, no run may
have waited longer than its cap and no tick longer than its budget.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, OUTCOME, RETRY_AFTER
from aperiodic_assets.defs.automation import REQUEST_TAG, TRIGGER_TAG
from aperiodic_assets.defs.partitions import partition_key

from .deployed import month_partitions
from .week import Week, running_week

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=240)

BTC = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "4h", "exchange")
ETH = Instrument("okx-perps", "perpetual-ETH-USDT:USDT", "4h", "exchange")
INSTRUMENTS = (BTC, ETH)
SENSOR_INTERVAL_S = 3
BUDGET_S = 5.0
RUN_WAIT_MAX_S = 2.0
#: The month that ends during the week: the last completed one of Dagster's partitions, so the
#: month after it (reached on the week's 5th day) is a partition whatever the real date.
ENDING = Month.parse(month_partitions.get_last_partition_key()).previous()
FIRST_DAY = ENDING.last_day - timedelta(days=3)
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(8)]


@pytest.fixture
def week(tmp_path: Path) -> Iterator[Week]:
    env = {
        "APERIODIC_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
        "APERIODIC_SENSOR_BUDGET_S": str(BUDGET_S),
        "APERIODIC_RUN_WAIT_MAX_S": str(RUN_WAIT_MAX_S),
    }
    with running_week(tmp_path, DAYS[0], INSTRUMENTS, env) as week:
        yield week


def test_an_unattended_week_heals_itself(week: Week):
    sandbox, started = week.sandbox, time.monotonic()
    week.wait("the first day's partitions", lambda: week.up_to_date(DAYS[0]), timeout=240)
    week.landed_per_day[DAYS[0]] = len(week.materializations(L1_IMBALANCE))

    for n, day in enumerate(DAYS[1:], start=1):
        before = len(week.materializations(L1_IMBALANCE))
        week.set_day(day)
        if n == 1:
            week.faults[day] = "429 Retry-After 6 s (over the 2 s run cap) on a run's listing"
            # On the run's own listing of the month (the sensor lists from an older month).
            month = Month.of(day - timedelta(days=1))
            sandbox.inject("rate_limit", 1, exchange=BTC.exchange, month=month, seconds=6)
        elif n == 2:
            week.faults[day] = "API down (503 on every list and download) for 3 sensor intervals"
            sandbox.inject("status", -1, status=503)
            sandbox.inject("status_download", -1, status=503)
            time.sleep(3 * SENSOR_INTERVAL_S)
            sandbox.clear_faults()
        elif n == 3:
            week.faults[day] = "a stalled download (30 s of silence; read timeout 2 s)"
            sandbox.inject("stall", 1, target="download", seconds=30)
        elif n == 4:
            week.faults[day] = "a file rejected by validation, republished corrected later"
            month = Month.of(day - timedelta(days=1))
            sandbox.corrupt("broken_identity", ETH.exchange, ETH.symbol, month)
            bad = str(partition_key(ETH, month))
            week.wait("the corrupted month's rejection", lambda k=bad: week.rejected(k))
            seen = len(week.sensor_ticks())
            week.wait("two more sensor ticks", lambda n=seen: len(week.sensor_ticks()) >= n + 2)
            assert week.rejected(bad), "not requested again while its files are unchanged"
            sandbox.clear_corruption()
            sandbox.republish(ETH.exchange, ETH.symbol, month, revision=1)
        week.wait(f"day {n} ({day}) through yesterday", lambda d=day: week.up_to_date(d))
        week.landed_per_day[day] = len(week.materializations(L1_IMBALANCE)) - before
        print(f"{day}: settled after {time.monotonic() - started:.0f}s", flush=True)

    # What the week did.
    records = week.materializations(L1_IMBALANCE)
    identities = Counter(
        (r.asset_materialization.partition, r.asset_materialization.metadata[k].value)
        for r in records
        for k in ["source_files_identity"]
    )
    observations = week.observations()
    failed = [o for o in observations if o.metadata[OUTCOME].value == "failed"]
    rejected = [o for o in observations if o.metadata[OUTCOME].value == "rejected"]
    waits = _run_waits(week.instance)
    ticks = week.sensor_ticks()
    tick_seconds = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
    requests = _sensor_requests(week.instance)
    failures = week.instance.fetch_observations(L1_IMBALANCE, limit=1000).records
    # Re-requests: a failed or rejected partition asked for again after its failure.
    again = {
        r.asset_observation.partition
        for r in failures
        if any(r.asset_observation.partition in keys and at > r.timestamp for at, keys in requests)
    }
    throttled = [
        r
        for r in week.instance.fetch_observations(L1_IMBALANCE, limit=1000).records
        if RETRY_AFTER in r.asset_observation.metadata
    ]
    (first_throttled,) = throttled
    asked_again = _asked_again_after(
        week.instance, first_throttled.asset_observation.partition, first_throttled.timestamp
    )

    elapsed = time.monotonic() - started
    print(f"\nunattended week: {len(DAYS)} days {DAYS[0]}..{DAYS[-1]} in {elapsed:.0f}s")
    for day in DAYS:
        fault = week.faults.get(day, "-")
        print(f"  {day}: {week.landed_per_day[day]} partitions landed; fault: {fault}")
    print(
        f"  failed attempts {len(failed)} (with Retry-After:"
        f" {sorted({o.metadata[RETRY_AFTER].value for o in failed if RETRY_AFTER in o.metadata})}),"
        f" rejections {len(rejected)}; backfills requested by the sensor {len(requests)},"
        f" partition requests {sum(len(k) for _, k in requests)}, of which re-requests after a"
        f" failure {len(again)}"
    )
    print(
        f"  the throttled partition was asked again {asked_again:.1f}s after its failure"
        f" (Retry-After 6 s, sensor interval {SENSOR_INTERVAL_S} s)"
    )
    print(f"  longest in-run wait {max(waits, default=0.0):.1f}s (cap {RUN_WAIT_MAX_S:g}s)")
    print(f"  sensor ticks {len(ticks)}, longest {max(tick_seconds):.1f}s (budget {BUDGET_S:g}s)")

    assert week.up_to_date(DAYS[-1])
    twice = {k: n for k, n in identities.items() if n > 1}
    assert not twice, f"file sets materialized more than once: {twice}; requests: {again}"
    assert any(RETRY_AFTER in o.metadata and o.metadata[RETRY_AFTER].value == 6 for o in failed)
    assert len(rejected) >= 1
    assert max(waits, default=0.0) <= RUN_WAIT_MAX_S
    assert max(tick_seconds) < BUDGET_S + 5.0, "a tick outlived its budget"
    assert again, "failed partitions were requested again by the sensor"
    # Not sooner than the API asked, and on the first tick after that (ticks can start a
    # little late on a loaded machine).
    assert 6.0 <= asked_again <= 6.0 + SENSOR_INTERVAL_S + 4.0


def _run_waits(instance: dg.DagsterInstance) -> list[float]:
    """Every in-run wait the asset logged ("Trying this partition again in Xs")."""
    waits = []
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            message = entry.user_message or ""
            if "Trying this partition again in " in message:
                waits.append(float(message.split("again in ")[1].split("s")[0]))
            if "Retrying this partition in " in message:
                waits.append(float(message.split("partition in ")[1].split("s")[0]))
    return waits


def _sensor_requests(instance: dg.DagsterInstance) -> list[tuple[float, set[str]]]:
    """The sensor's backfills: when each was requested (its tick) and which partitions."""
    out = []
    for backfill in instance.get_backfills():
        if backfill.tags.get(TRIGGER_TAG) != "new_month_sensor":
            continue
        subset = backfill.asset_backfill_data.target_subset
        keys = {
            str(p.partition_key)
            for p in subset.iterate_asset_partitions()
            if p.asset_key == L1_IMBALANCE
        }
        out.append((float(backfill.tags[REQUEST_TAG]), keys))
    return sorted(out, key=lambda r: r[0])


def _asked_again_after(instance: dg.DagsterInstance, key: str, failed_at: float) -> float:
    """Seconds from a failure to the sensor's next request of that partition."""
    later = [at for at, keys in _sensor_requests(instance) if key in keys and at > failed_at]
    assert later, f"{key} was not requested again after its failure"
    return later[0] - failed_at
