"""The new-month sensor and the monthly schedule, against the strict sandbox and a real instance.

The sandbox's presigned URLs are signed for GET (HEAD is refused, as on S3), so the sensor sees
exactly what it would see in production. Its clock moves day by day: new days of the current
month, a month end, a republished file. Every requested backfill is then materialized, as the
backfill daemon would, and the next tick must not ask again.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from aperiodic_assets.core import watch
from aperiodic_assets.core.api import AperiodicClient, FileInfo, FileStamp
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import INTERVALS
from aperiodic_assets.defs._dagster_internals import backfill_subset_keys
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, SOURCE_STAMPS
from aperiodic_assets.defs.automation import (
    SensorSettings,
    evaluate,
    schedule_requests,
    watched_months,
)
from aperiodic_assets.defs.partitions import partition_key

from .conftest import BTC_1H, KEY, TODAY
from .deployed import (
    DEPLOYMENT,
    UNIVERSE,
    l1_imbalance,
    l1_partitions,
    month_partitions,
    monthly_schedule,
    new_month_sensor,
    parse_partition_key,
)

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=50)

CURRENT = Month.parse(month_partitions.get_last_partition_key())
LAST = CURRENT.previous()
INSTRUMENTS = len(UNIVERSE.instruments)


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor as the daemon does."""

    def __init__(self, instance: dg.DagsterInstance, resources: dict) -> None:
        self.instance, self.resources, self.cursor = instance, resources, None

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            result = new_month_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result

    def requested(self) -> list[str]:
        """The partition keys of this tick's backfill (at most one request per tick)."""
        result = self.tick()
        requests = result.run_requests or []
        assert len(requests) <= 1, "a tick requests one backfill, not a run per partition"
        if not requests:
            return []
        assert requests[0].requires_backfill_daemon()
        return backfill_subset_keys(requests[0])


def months_of(keys: list[str]) -> list[str]:
    return sorted(parse_partition_key(k)[1].key for k in keys)


def materialize(keys: list[str], resources: dict, instance: dg.DagsterInstance) -> None:
    """What the backfill daemon would do with the request, one partition at a time."""
    for key in keys:
        result = dg.materialize(
            [l1_imbalance], partition_key=key, resources=resources, instance=instance
        )
        assert result.success, key


@pytest.fixture
def ticker(instance, resources) -> Ticker:
    return Ticker(instance, resources)


def test_sensor_fires_on_method_bound_urls_and_never_uses_head(sandbox, ticker, resources):
    sandbox.set_today(CURRENT.first_day + timedelta(days=3))
    sandbox.reset_log()
    keys = ticker.requested()
    # Every instrument: the two completed months it watches and the current month's first days.
    assert months_of(keys) == sorted([m.key for m in watched_months(CURRENT, 2)] * INSTRUMENTS)
    methods = {(r["kind"], r["method"]) for r in sandbox.requests()}
    assert ("download", "HEAD") not in methods
    assert {r["status"] for r in sandbox.requests() if r["kind"] == "download"} <= {206}


def test_new_days_a_month_end_and_nothing_twice(sandbox, ticker, resources, instance):
    # Day 1: the last completed month is still in progress for the sandbox (days 1..28 out).
    month, day = LAST, LAST.last_day - timedelta(days=2)
    sandbox.set_today(day)
    first = ticker.requested()
    assert months_of(first) == sorted([month.previous().key, month.key] * INSTRUMENTS)
    materialize(first, resources, instance)
    assert ticker.requested() == [], "the same files never run twice"

    sandbox.set_today(day + timedelta(days=1))  # one more daily file
    new_day = ticker.requested()
    assert months_of(new_day) == [month.key] * INSTRUMENTS
    materialize(new_day, resources, instance)
    assert max(latest_metadata(instance, new_day[0])[SOURCE_STAMPS].value) == day.isoformat()

    sandbox.set_today(CURRENT.first_day)  # month end: the last day of the month is out
    final = ticker.requested()
    assert months_of(final) == [month.key] * INSTRUMENTS
    materialize(final, resources, instance)
    assert latest_metadata(instance, final[0])["through"].value == str(month.last_day)

    sandbox.set_today(CURRENT.first_day + timedelta(days=1))  # the new month's first day
    opening = ticker.requested()
    assert months_of(opening) == [CURRENT.key] * INSTRUMENTS
    materialize(opening, resources, instance)
    assert ticker.requested() == []


def test_the_current_month_is_materialized_through_yesterday_and_refreshed_daily(
    sandbox, ticker, resources, instance
):
    today = CURRENT.first_day + timedelta(days=10)
    sandbox.set_today(today)
    current = [k for k in ticker.requested() if parse_partition_key(k)[1] == CURRENT]
    assert len(current) == INSTRUMENTS
    materialize(current, resources, instance)
    meta = latest_metadata(instance, current[0])
    assert meta["through"].value == str(today - timedelta(days=1))
    instrument = parse_partition_key(current[0])[0]
    assert meta["rows"].value == 10 * 86400 // INTERVALS[instrument.interval]
    version = meta["sha256"].value

    sandbox.set_today(today + timedelta(days=1))
    refreshed = ticker.requested()
    assert sorted(refreshed) == sorted(current), "only the current month has a new file"
    materialize(refreshed, resources, instance)
    meta = latest_metadata(instance, current[0])
    assert meta["through"].value == str(today)
    assert meta["sha256"].value != version, "a longer month is a new data version"


def test_a_request_in_flight_is_not_repeated_until_it_expires(sandbox, ticker, monkeypatch):
    sandbox.set_today(CURRENT.first_day + timedelta(days=2))
    assert ticker.requested()
    assert ticker.requested() == [], "the backfill has not landed yet: no second request"
    monkeypatch.setattr(watch, "REQUEST_EXPIRY_S", 0.0)
    assert ticker.requested(), "a request not heard of for too long is settled and made again"


def test_a_republished_file_runs_again(sandbox, ticker, resources, instance):
    sandbox.set_today(CURRENT.first_day + timedelta(days=2))
    materialize(ticker.requested(), resources, instance)
    assert ticker.requested() == []
    sandbox.republish(BTC_1H.exchange, BTC_1H.symbol, LAST.key, revision=1)
    keys = ticker.requested()
    same_symbol = {
        i
        for i in UNIVERSE.instruments
        if (i.exchange, i.symbol) == (BTC_1H.exchange, BTC_1H.symbol)
    }
    # Every interval and timestamp mode of the republished symbol, that month only.
    assert {parse_partition_key(k) for k in keys} == {(i, LAST) for i in same_symbol}
    materialize(keys, resources, instance)
    assert ticker.requested() == []


def test_older_files_are_probed_in_rotation_and_a_changed_one_is_requested():
    """Each tick checks the newest file of every partition, then older files from where the
    last tick stopped; a changed older file is found when its turn comes."""
    files = [info(f"2026-11-{d:02d}") for d in (1, 2, 3)]
    built = watch.Materialized({f.label: "e:1" for f in files}, at=0.0)
    partition = watch.Watched("p", files, built)
    cursor = watch.WatchCursor(next_file=1)
    plan = watch.plan([partition], cursor, now=10.0)
    assert [f.label for _, f in plan.probes] == ["2026-11-03", "2026-11-02", "2026-11-01"]
    changed = [(partition, FileStamp("2026-11-01", "other", 1, ""))]
    (request,), waiting = watch.republished(changed, cursor, now=10.0)
    assert request.key == "p" and "2026-11-01" in request.reason and waiting == {}
    unchanged = [(partition, FileStamp("2026-11-02", "e", 1, ""))]
    assert watch.republished(unchanged, cursor, now=10.0) == ([], {})


def test_a_budget_that_ends_before_every_newest_file_was_probed_goes_on_from_there():
    """When a tick can probe only some partitions' newest files (a slow network, a big
    universe), the next tick starts with those it did not reach, then goes round: every
    partition's newest file is checked every few ticks, not the same ones every tick."""
    files = [info("2026-11-01"), info("2026-11-02")]
    partitions = [
        watch.Watched(f"p{n}", files, watch.Materialized({f.label: "e:1" for f in files}, 0.0))
        for n in range(5)
    ]
    cursor, probed = watch.WatchCursor(), []
    for _ in range(3):
        plan = watch.plan(partitions, cursor, now=10.0)
        probed.append([w.key for w, _ in plan.probes[:2]])  # the budget ends after 2 probes
        watch.probed(cursor, plan, 2)
    assert probed == [["p0", "p1"], ["p2", "p3"], ["p4", "p0"]]
    assert cursor.next_file == 0, "no older file was reached"
    # A tick that reaches every newest file moves on in the older files.
    plan = watch.plan(partitions, cursor, now=10.0)
    watch.probed(cursor, plan, 5 + 3)
    assert cursor.next_file == 3


def test_a_month_built_before_its_instruments_closing_was_recorded_is_built_again_once():
    """The new-month sensor may rebuild a delisted instrument's last month from its shortened
    listing before the universe sensor records the closing: once it is recorded, the month is
    requested again, so it carries the closing; then it is up to date."""
    files = [info("2026-11-01"), info("2026-11-02")]
    stamps = {f.label: "e:1" for f in files}
    before = watch.Watched("p", files, watch.Materialized(stamps, 0.0), closing="2026-11-03")
    cursor = watch.WatchCursor()
    (request,) = watch.plan([before], cursor, now=10.0).requests
    assert (
        request.reason == "instrument closed since 2026-11-03, recorded after this month was built"
    )
    marked = watch.Materialized(stamps, 20.0, closed_since="2026-11-03")
    after = watch.Watched("p", files, marked, closing="2026-11-03")
    plan = watch.plan([after], watch.WatchCursor(), now=30.0)
    assert plan.requests == [] and plan.up_to_date == 1


def info(label: str) -> FileInfo:
    year, month, day = (int(p) for p in label.split("-"))
    return FileInfo(year, month, day, f"http://127.0.0.1/{label}.parquet")


def test_a_tick_stays_within_its_budget_and_continues_where_it_stopped(
    sandbox, instance, resources
):
    sandbox.set_today(CURRENT.first_day + timedelta(days=2))
    sandbox.inject("stall", count=-1, target="list", seconds=0.3)
    settings = SensorSettings(lookback_months=1, budget_s=0.8, concurrency=1)
    client = resources["aperiodic"].get_client()
    cursor, seen = None, set()
    try:
        for _ in range(4):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            result = evaluate(context, client, replace(DEPLOYMENT, sensor=settings), CURRENT)
            cursor = result.cursor
            for request in result.run_requests or []:
                seen |= {parse_partition_key(k)[0] for k in backfill_subset_keys(request)}
    finally:
        client.close()
    assert seen == set(UNIVERSE.instruments), "the rotation reached every instrument"
    assert len(cursor) < 2000, "the cursor keeps only rotation positions and requests in flight"


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": "rate_limit", "target": "list", "seconds": 20},
        {"fault": "stall", "target": "list", "seconds": 30.0},
    ],
    ids=["retry-after-20s", "stalled-listing"],
)
def test_a_tick_ends_within_its_budget_whatever_the_api_does(sandbox, instance, fault):
    """With the production retry settings (waits up to 60 s, 300 s per call), a throttled or
    stalled API still cannot hold the tick past its budget."""
    sandbox.set_today(CURRENT.first_day + timedelta(days=2))
    sandbox.inject(count=-1, **fault)
    settings = SensorSettings(lookback_months=1, budget_s=3.0)
    client = AperiodicClient(sandbox.base_url, KEY)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="listing"):
            evaluate(
                dg.build_sensor_context(instance=instance),
                client,
                replace(DEPLOYMENT, sensor=settings),
                CURRENT,
            )
    finally:
        client.close()
    elapsed = time.monotonic() - started
    assert elapsed < settings.budget_s + 2.0, f"the tick took {elapsed:.1f}s"


def test_the_sensor_budget_is_bounded_below_dagsters_timeout():
    with pytest.raises(ValueError, match="APERIODIC_SENSOR_BUDGET_S=50.*at most 45"):
        SensorSettings(budget_s=50)


def test_an_outage_fails_the_tick_and_recovery_resumes(sandbox, ticker):
    sandbox.set_today(CURRENT.first_day + timedelta(days=2))
    sandbox.inject("status", count=-1, status=503)
    with pytest.raises(Exception, match="listing.*failed.*HTTP 503"):
        ticker.tick()
    sandbox.clear_faults()
    assert ticker.requested()


def test_partitions_already_materialized_from_the_same_files_are_not_requested(
    sandbox, ticker, resources, instance
):
    sandbox.set_today(CURRENT.first_day + timedelta(days=2))
    key = str(dg.MultiPartitionKey({"instrument": BTC_1H.key, "month": LAST.key}))
    materialize([key], resources, instance)
    keys = ticker.requested()
    assert key not in keys
    assert len(keys) == 3 * INSTRUMENTS - 1


def test_the_schedule_is_one_ranged_run_for_every_instrument_of_the_previous_month(
    instance, resources
):
    tick = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=tick, resources=resources
    ) as context:
        requests = list(monthly_schedule(context))
    assert len(requests) == 1
    tags = requests[0].tags
    start = parse_partition_key(tags["dagster/asset_partition_range_start"])
    end = parse_partition_key(tags["dagster/asset_partition_range_end"])
    assert start[1] == end[1] == Month(2026, 10)
    assert requests[0].run_key and requests[0].partition_key is None
    assert monthly_schedule.cron_schedule == "0 6 1 * *"
    assert monthly_schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_the_schedule_leaves_alone_what_the_sensor_landed_whole(sandbox, resources, instance):
    """A backstop: instruments whose month reaches its last day are not run again."""
    month = Month.of(TODAY).previous()
    materialize([str(partition_key(BTC_1H, month))], resources, instance)
    tick = datetime.combine(month.next().first_day, datetime.min.time(), UTC) + timedelta(hours=6)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=tick, resources=resources
    ) as context:
        requests = list(monthly_schedule(context))
    start = requests[0].tags["dagster/asset_partition_range_start"]
    end = requests[-1].tags["dagster/asset_partition_range_end"]
    keys = l1_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    covered = {parse_partition_key(k)[0] for k in keys if parse_partition_key(k)[1] == month}
    assert BTC_1H not in covered and len(covered) == INSTRUMENTS - 1


def test_the_scheduled_ranged_run_materializes_every_instrument(sandbox, resources, instance):
    (request,) = schedule_requests(DEPLOYMENT, LAST, UNIVERSE.instruments)
    result = dg.materialize(
        [l1_imbalance], resources=resources, instance=instance, tags=request.tags
    )
    assert result.success
    landed = {str(e.partition) for e in result.get_asset_materialization_events()}
    assert len(landed) == INSTRUMENTS
    assert {parse_partition_key(k)[1] for k in landed} == {LAST}


def latest_metadata(instance: dg.DagsterInstance, key: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=L1_IMBALANCE, asset_partitions=[key]), limit=1
    ).records
    assert records, key
    return dict(records[0].asset_materialization.metadata)


def test_watched_months_are_the_current_one_and_the_lookback():
    assert watched_months(Month(2026, 1), 2) == [Month(2025, 11), Month(2025, 12), Month(2026, 1)]
    assert watched_months(Month(2026, 1), 0) == [Month(2026, 1)]
