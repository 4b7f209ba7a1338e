"""The new-month sensor and the monthly schedule, against the sandbox and a real instance."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest

from aperiodic_assets.assets.l1_imbalance import l1_imbalance
from aperiodic_assets.automation import monthly_schedule, new_month_sensor
from aperiodic_assets.months import Month
from aperiodic_assets.partitions import UNIVERSE, month_partitions, partition_key

from .conftest import BTC_1H

LAST = Month.parse(month_partitions.get_last_partition_key())
PREVIOUS = LAST.previous()
INSTRUMENTS = len(UNIVERSE.instruments)


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor like the daemon does."""

    def __init__(self, instance: dg.DagsterInstance, resources: dict) -> None:
        self.instance, self.resources, self.cursor = instance, resources, None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        )
        result = new_month_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result


def months_requested(result: dg.SensorResult) -> list[str]:
    return sorted(r.partition_key.keys_by_dimension["month"] for r in result.run_requests or [])


@pytest.fixture
def ticker(instance, resources) -> Ticker:
    return Ticker(instance, {"aperiodic": resources["aperiodic"]})


def day_after(month: Month) -> date:
    """The sandbox serves a month's last day from the next day on; one more day to be sure."""
    return date(month.next().year, month.next().month, 2)


def test_new_months_republished_files_and_outages(sandbox, ticker: Ticker):
    sandbox.set_today(LAST.first_day)  # the last completed month is not published yet
    first = ticker.tick()
    assert months_requested(first) == [PREVIOUS.key] * INSTRUMENTS

    nothing_new = ticker.tick()
    assert not nothing_new.run_requests
    assert nothing_new.skip_reason is not None
    assert "nothing new" in nothing_new.skip_reason.skip_message
    assert f"{INSTRUMENTS} are not published yet" in nothing_new.skip_reason.skip_message

    sandbox.set_today(day_after(LAST))  # month rollover: the last month's files appear
    rollover = ticker.tick()
    assert months_requested(rollover) == [LAST.key] * INSTRUMENTS
    instruments = {r.partition_key.keys_by_dimension["instrument"] for r in rollover.run_requests}
    assert instruments == set(UNIVERSE.keys)
    assert not ticker.tick().run_requests, "the same files never run twice"

    before = {r.partition_key: r.run_key for r in rollover.run_requests}
    sandbox.republish(BTC_1H.exchange, BTC_1H.symbol, LAST.key, revision=1)
    republished = ticker.tick().run_requests
    btc = [r for r in republished if r.partition_key.keys_by_dimension["instrument"] == BTC_1H.key]
    assert len(btc) == 1 and btc[0].partition_key.keys_by_dimension["month"] == LAST.key
    assert btc[0].run_key != before[btc[0].partition_key]

    sandbox.inject("status", count=-1, status=503)
    with pytest.raises(Exception, match="probes failed.*HTTP 503"):
        ticker.tick()
    sandbox.clear_faults()
    assert not ticker.tick().run_requests, "recovered: nothing new since the outage"


def test_partitions_already_materialized_from_the_same_files_are_not_requested(
    sandbox, ticker: Ticker, resources, instance
):
    result = dg.materialize(
        [l1_imbalance],
        partition_key=partition_key(BTC_1H, LAST),
        resources=resources,
        instance=instance,
    )
    assert result.success
    requested = ticker.tick().run_requests
    keys = {str(r.partition_key) for r in requested}
    assert str(partition_key(BTC_1H, LAST)) not in keys
    assert len(keys) == 2 * INSTRUMENTS - 1


def test_the_schedule_targets_the_previous_month_of_every_instrument():
    tick = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    requests = list(monthly_schedule(context))
    assert [r.partition_key.keys_by_dimension["month"] for r in requests] == ["2026-10"] * len(
        UNIVERSE.instruments
    )
    assert {r.partition_key.keys_by_dimension["instrument"] for r in requests} == set(UNIVERSE.keys)
    assert monthly_schedule.cron_schedule == "0 6 1 * *"
    assert monthly_schedule.execution_timezone == "UTC"
    assert monthly_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
