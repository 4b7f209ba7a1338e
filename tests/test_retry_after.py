"""A server that says "come back later" is not asked again sooner, by the client or by Dagster.

The client waits in-line only up to ``retry_after_max_s`` (0.2 s in tests); a longer
``Retry-After`` fails the call at once, and the asset has Dagster retry the run after exactly
that wait, or, beyond ``retry_after_wait_max_s``, not at all (the sensor comes back later).
"""

from __future__ import annotations

import time

import dagster as dg

from aperiodic_assets.months import Month

from .conftest import BTC_1H, materialize_partition

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
    assert "sensor requests the partition again later" in str(failure.error.message)
