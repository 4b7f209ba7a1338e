"""A server that says "come back later" is not asked again sooner, by the client or by Dagster.

The client waits in-line only up to ``retry_after_max_s`` (0.2 s in tests); a longer
``Retry-After`` fails the call at once, and the asset retries the partition after exactly that
wait (Dagster's step retry in a single-partition run, its own loop per partition in a ranged
run), or, beyond ``retry_after_wait_max_s``, not at all: the partition fails at once and its
observation tells the sensor when to ask again.
"""

from __future__ import annotations

import time

import dagster as dg

from aperiodic_assets.core.months import Month
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, OUTCOME, RETRY_AFTER
from aperiodic_assets.defs.partitions import partition_key

from .conftest import BTC_1H, materialize_partition
from .deployed import l1_imbalance

MONTH = Month(2026, 7)


def listing_times(sandbox) -> list[tuple[float, int]]:
    return [(r["t"], r["status"]) for r in sandbox.requests() if r["kind"] == "list"]


def run(resources, instance, wait_max_s: float) -> dg.ExecuteInProcessResult:
    config = {"ops": {"l1_imbalance": {"config": {"retry_after_wait_max_s": wait_max_s}}}}
    return materialize_partition(resources, instance, BTC_1H, MONTH, run_config=config)


def test_the_run_is_retried_after_the_wait_the_server_asked_for(sandbox, resources, instance):
    sandbox.inject("rate_limit", count=1, seconds=2)
    started = time.monotonic()
    result = run(resources, instance, wait_max_s=60)
    elapsed = time.monotonic() - started
    assert result.success
    (first, first_status), (second, second_status) = listing_times(sandbox)
    assert (first_status, second_status) == (429, 200)
    assert second - first >= 2.0, "asked again before the 2 s the server asked for"
    assert elapsed >= 2.0
    retries = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert len(retries) == 1


def test_a_wait_beyond_the_limit_fails_at_once_with_one_request(sandbox, resources, instance):
    sandbox.inject("rate_limit", count=-1, seconds=3600)
    started = time.monotonic()
    result = run(resources, instance, wait_max_s=60)
    assert not result.success
    assert time.monotonic() - started < 30
    assert [status for _, status in listing_times(sandbox)] == [429], "one request, no more"
    failure = result.failure_data_for_node("l1_imbalance")
    assert failure is not None and "3600" in str(failure.error.message)
    assert "sensor requests the partition again once the wait is over" in str(failure.error.message)
    (attempt,) = observations(instance)
    assert attempt.metadata[OUTCOME].value == "failed"
    assert attempt.metadata[RETRY_AFTER].value == 3600.0


def observations(instance: dg.DagsterInstance) -> list[dg.AssetObservation]:
    """What the asset recorded for the sensor about partitions that failed for good."""
    records = instance.fetch_observations(L1_IMBALANCE, limit=100).records
    return [r.asset_observation for r in records if r.asset_observation is not None]


def ranged(resources, instance, keys: list[str], **config) -> dg.ExecuteInProcessResult:
    """The run a single-run backfill (or the sensor's backfill) makes of ``keys``."""
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    return dg.materialize(
        [l1_imbalance],
        resources=resources,
        instance=instance,
        tags=tags,
        run_config={"ops": {"l1_imbalance": {"config": config}}},
        raise_on_error=False,
    )


def test_a_ranged_run_retries_a_throttled_partition_after_the_wait_and_redoes_nothing(
    sandbox, resources, instance
):
    keys = [str(partition_key(BTC_1H, m)) for m in (Month(2026, 5), Month(2026, 6), MONTH)]
    sandbox.inject("rate_limit", count=1, month=MONTH, seconds=2)
    started = time.monotonic()
    result = ranged(resources, instance, keys, retry_after_wait_max_s=60, partition_concurrency=1)
    assert result.success
    assert time.monotonic() - started >= 2.0
    landed = [str(e.partition) for e in result.get_asset_materialization_events()]
    assert sorted(landed) == sorted(keys), "each partition materialized exactly once"
    downloads = [r for r in sandbox.requests() if r["kind"] == "download"]
    assert len(downloads) == len(keys), "no landed partition was fetched again"
    (first, first_status), (second, second_status) = listing_times(sandbox)[-2:]
    assert (first_status, second_status) == (429, 200) and second - first >= 2.0


def test_a_ranged_run_does_not_sleep_past_its_cap_and_records_the_wait(
    sandbox, resources, instance
):
    keys = [str(partition_key(BTC_1H, m)) for m in (Month(2026, 6), MONTH)]
    sandbox.inject("rate_limit", count=-1, month=MONTH, seconds=3600)
    started = time.monotonic()
    result = ranged(resources, instance, keys, retry_after_wait_max_s=60)
    assert not result.success and time.monotonic() - started < 30
    assert [str(e.partition) for e in result.get_asset_materialization_events()] == [keys[0]]
    (attempt,) = observations(instance)
    assert attempt.partition == keys[1]
    assert attempt.metadata[RETRY_AFTER].value == 3600.0
    assert "3600s" in attempt.metadata["error"].value
