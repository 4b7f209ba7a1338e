"""The fault matrix: every way the API and its file host misbehave, and what the client does.

Each test injects one deterministic fault into the sandbox, runs one partition through the pure
pipeline (client → validation → warehouse), and asserts the outcome, the number of requests the
sandbox saw, and that a failure leaves no file in the warehouse.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from aperiodic_assets.api import (
    AperiodicClient,
    DisallowedHostError,
    DownloadRejectedError,
    RetryConfig,
    TransientError,
    UrlExpiredError,
    _parse_retry_after,
)
from aperiodic_assets.months import Month
from aperiodic_assets.pipeline import run_partition
from aperiodic_assets.sandbox import Sandbox
from aperiodic_assets.warehouse import Warehouse

from .conftest import BTC_1H, FAST_RETRY, KEY

JULY = Month(2026, 7)  # one monthly file
SEPTEMBER = Month(2026, 9)  # thirty daily files


class RecordingSleep:
    """Stands in for time.sleep: records the waits the retry policy asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(sandbox: Sandbox, retry: RetryConfig = FAST_RETRY, **kwargs) -> AperiodicClient:
    return AperiodicClient(sandbox.base_url, KEY, retry=retry, **kwargs)


def count(sandbox: Sandbox, kind: str) -> int:
    return sum(1 for r in sandbox.requests() if r["kind"] == kind)


def assert_nothing_written(warehouse: Warehouse, month: Month = JULY) -> None:
    assert not warehouse.exists(BTC_1H, month)
    assert warehouse.partitions() == []


@pytest.mark.parametrize("status", [503, 502, 504])
def test_transient_5xx_on_listing_is_retried_until_it_clears(sandbox, warehouse, status):
    sandbox.inject("status", count=2, status=status)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert outcome.written is not None and warehouse.exists(BTC_1H, JULY)
    assert count(sandbox, "list") == 3


def test_5xx_that_never_clears_gives_up_after_max_attempts(sandbox, warehouse):
    sandbox.inject("status", count=-1, status=503)
    with pytest.raises(TransientError, match=r"gave up after 4 attempt\(s\).*HTTP 503") as err:
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert err.value.transient
    assert count(sandbox, "list") == FAST_RETRY.max_attempts
    assert_nothing_written(warehouse)


def test_5xx_on_a_download_is_retried(sandbox, warehouse):
    sandbox.inject("status_download", count=1, status=502)
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert warehouse.exists(BTC_1H, JULY)


def test_rate_limit_waits_for_retry_after_seconds(sandbox, warehouse):
    sandbox.inject("rate_limit", count=2, seconds=7)
    sleep = RecordingSleep()
    retry = replace(FAST_RETRY, retry_after_max_s=60.0)
    run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert sleep.waits == [7.0, 7.0]
    assert count(sandbox, "list") == 3


def test_rate_limit_retry_after_is_capped(sandbox, warehouse):
    sandbox.inject("rate_limit", count=1, seconds=3600)
    sleep = RecordingSleep()
    run_partition(make_client(sandbox, sleep=sleep), warehouse, BTC_1H, JULY)
    assert sleep.waits == [FAST_RETRY.retry_after_max_s]


def test_rate_limit_retry_after_as_http_date_is_honoured(sandbox, warehouse):
    sandbox.inject("rate_limit", count=1, seconds=30, http_date=True)
    sleep = RecordingSleep()
    retry = replace(FAST_RETRY, retry_after_max_s=60.0, budget_s=120.0)
    run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert len(sleep.waits) == 1 and 25 <= sleep.waits[0] <= 31


def test_retry_after_parsing_accepts_both_forms():
    assert _parse_retry_after("12") == 12.0
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= _parse_retry_after(in_a_minute) <= 61
    assert _parse_retry_after("soon") is None


def test_backoff_grows_exponentially_with_jitter_under_the_cap(sandbox, warehouse):
    sandbox.inject("status", count=3, status=503)
    sleep = RecordingSleep()
    retry = replace(FAST_RETRY, backoff_initial_s=1.0, backoff_max_s=3.0, jitter_s=0.5)
    run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert len(sleep.waits) == 3
    assert 1.0 <= sleep.waits[0] <= 1.5 and 2.0 <= sleep.waits[1] <= 2.5
    assert sleep.waits[2] == 3.0


def test_the_time_budget_stops_retrying_before_a_wait_would_exceed_it(sandbox, warehouse):
    sandbox.inject("rate_limit", count=-1, seconds=5)
    retry = replace(FAST_RETRY, max_attempts=10, retry_after_max_s=5.0, budget_s=1.0)
    sleep = RecordingSleep()
    with pytest.raises(TransientError, match="429"):
        run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert sleep.waits == [] and count(sandbox, "list") == 1
    assert_nothing_written(warehouse)


def test_connection_reset_is_retried(sandbox, warehouse):
    sandbox.inject("reset", count=2)
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert warehouse.exists(BTC_1H, JULY)
    resets = [r for r in sandbox.requests() if r.get("fault") == "reset"]
    assert len(resets) == 2


def test_truncated_body_is_detected_and_downloaded_again(sandbox, warehouse):
    sandbox.inject("truncate", count=1)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert outcome.written is not None and outcome.written.rows == 31 * 24


def test_truncated_body_every_time_fails_without_writing(sandbox, warehouse):
    sandbox.inject("truncate", count=-1)
    with pytest.raises(TransientError, match="incomplete body"):
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == FAST_RETRY.max_attempts
    assert_nothing_written(warehouse)


def test_a_stalled_body_times_out_and_is_retried(sandbox, warehouse):
    sandbox.inject("stall", count=1, seconds=5)
    retry = replace(FAST_RETRY, read_timeout_s=0.5)
    run_partition(make_client(sandbox, retry), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert warehouse.exists(BTC_1H, JULY)


def test_expired_url_is_relisted_once(sandbox, warehouse):
    sandbox.inject("expire_urls", count=1)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert outcome.written is not None
    assert count(sandbox, "list") == 2 and count(sandbox, "download") == 2


def test_expired_urls_in_a_month_of_daily_files_relist_only_once(sandbox, warehouse):
    sandbox.inject("expire_urls", count=1)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, SEPTEMBER)
    assert outcome.written is not None and len(outcome.sources) == 30
    assert count(sandbox, "list") == 2 and count(sandbox, "download") == 60


def test_urls_that_stay_expired_fail_clearly_after_one_relisting(sandbox, warehouse):
    sandbox.inject("expire_urls", count=-1)
    with pytest.raises(UrlExpiredError, match=r"refused \(HTTP 403\) twice"):
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "list") == 2 and count(sandbox, "download") == 2
    assert_nothing_written(warehouse)


def test_a_url_on_a_foreign_host_is_refused_without_a_request(sandbox, warehouse):
    sandbox.inject("foreign_host", count=-1)
    with pytest.raises(DisallowedHostError, match="files.example.com") as err:
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert not err.value.transient
    assert count(sandbox, "download") == 0
    assert "X-Amz" not in str(err.value)
    assert_nothing_written(warehouse)


def test_a_configured_extra_host_is_allowed(sandbox):
    client = make_client(sandbox, allowed_hosts=["files.example.com"])
    assert "files.example.com" in client.allowed_hosts and "127.0.0.1" in client.allowed_hosts


def test_corrupt_parquet_is_downloaded_once_more(sandbox, warehouse):
    sandbox.inject("corrupt_parquet", count=1)
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert warehouse.exists(BTC_1H, JULY)


def test_corrupt_parquet_twice_is_rejected(sandbox, warehouse):
    sandbox.inject("corrupt_parquet", count=-1)
    with pytest.raises(DownloadRejectedError, match="not readable Parquet on two downloads"):
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert_nothing_written(warehouse)


def test_an_oversize_file_is_refused_before_its_body_is_read(sandbox, warehouse):
    sandbox.inject("oversize", count=-1, bytes=8 * 1024 * 1024)
    client = make_client(sandbox, max_file_bytes=1024 * 1024)
    with pytest.raises(DownloadRejectedError, match="over the limit of 1048576"):
        run_partition(client, warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 1
    assert_nothing_written(warehouse)


def test_debug_logging_of_the_http_library_shows_no_signature(sandbox, warehouse, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    request_lines = [r.getMessage() for r in caplog.records if "/files/" in r.getMessage()]
    assert request_lines, "urllib3 logged the download"
    assert all("X-Amz" not in line and "?<redacted>" in line for line in request_lines)
